"""Accuracy arithmetic shared by the evaluation and the report (no torch, no pandas)."""
from __future__ import annotations

from typing import Any


def harmonic_mean(base: Any, novel: Any) -> Any:
    """HM of base and novel accuracy, 2·base·novel / (base + novel): numbers, NumPy arrays or pandas
    Series alike (element-wise; 0/0 gives NaN there). For numbers: None where either is None or
    both are 0."""
    if base is None or novel is None:
        return None
    total = base + novel
    if not hasattr(total, "__len__") and total == 0:
        return None
    return 2 * base * novel / total
