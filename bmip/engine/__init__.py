"""Training and evaluation of one run, with a provenance record beside every result."""
