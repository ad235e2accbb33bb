"""Constants shared by the model tests."""

CLASSNAMES = ["cat", "golden_retriever", "airplane", "big red fire truck", "sea or lake"]
