"""Aggregation of per-run metrics into the paper's tables, figures, and provenance summaries."""
