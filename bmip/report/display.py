"""What the tables show besides this experiment's numbers: display names and the published numbers.

Shared by the Markdown tables (`bmip.report.tables`) and the LaTeX ones (`bmip.report.latex`), which
therefore need not import each other.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bmip.report.style import label

PUBLISHED = Path(__file__).parent / "published"
AVERAGE_PREFIX = "Average over "


def average_label(datasets: int) -> str:
    """The dataset cell of a table's row averaged over `datasets` datasets."""
    return f"{AVERAGE_PREFIX}{datasets} datasets"


def is_average(names):
    """Whether a dataset cell (a string, or a pandas Series of them) is an average row's."""
    if isinstance(names, pd.Series):
        return names.astype(str).str.startswith(AVERAGE_PREFIX)
    return str(names).startswith(AVERAGE_PREFIX)


def display_dataset(name: str) -> str:
    from bmip.data import DATASETS

    spec = DATASETS.get(name)
    return spec.display_name if spec is not None else name


def published(table_name: str) -> pd.DataFrame | None:
    """Published numbers for a table, keyed by display names (None if there are none)."""
    files = {"base2novel": "base2novel.csv", "cross_dataset": "cross_dataset.csv",
             "domain_generalization": "domain_generalization.csv"}
    if table_name not in files:
        return None
    return pd.read_csv(PUBLISHED / files[table_name])


def with_published(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """Display names, plus the published numbers where a method/dataset pair has them."""
    from bmip.data import DATASETS

    shown = table.copy()
    if shown.empty:
        return shown
    paper_datasets = all(d in DATASETS or is_average(d) for d in shown["dataset"])
    shown.insert(0, "Method", shown.pop("method").map(label))
    shown.insert(1, "Dataset", shown.pop("dataset").map(display_dataset))
    ref = published(name)
    if ref is None or not paper_datasets:  # published numbers only beside the paper's own datasets
        return shown
    key = "dataset" if "dataset" in ref.columns else "target"
    ref = ref.rename(columns={"method": "Method", key: "Dataset"})
    ref["Dataset"] = ref["Dataset"].where(~ref["Dataset"].eq("Average"), None)
    cols = [c for c in ("base", "novel", "hm", "accuracy") if c in ref.columns]
    ref = ref.dropna(subset=["Dataset"])[["Method", "Dataset", *cols]].rename(columns={c: f"published {c}" for c in cols})
    merged = shown.merge(ref, on=["Method", "Dataset"], how="left")
    averages = published(name)
    averages = averages[averages[key] == "Average"].set_index("method")
    for col in cols:
        is_avg = is_average(merged["Dataset"])
        merged.loc[is_avg, f"published {col}"] = merged.loc[is_avg, "Method"].map(averages[col])
    return merged
