"""Accuracy arithmetic shared by the evaluation, the report and the audit (no torch, no pandas):
the harmonic mean of base and novel accuracy, and OpenworldAUC."""
from __future__ import annotations

from typing import Any

import numpy as np


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


# OpenworldAUC (Hua et al., ICML 2025, arXiv 2505.05180) as its official code computes it
# (huacong/OpenworldAUC, models/GMoP.py, eval_time_compute_opt_auc): docs/tables_and_figures.md.
OPENWORLD_AUC_OFFSET = 1e-5  # the official code's margin below/above the scores for misclassified images


def openworld_pairs(base_scores: Any, base_correct: Any, novel_scores: Any, novel_correct: Any) -> float:
    """How many (base image, novel image) pairs OpenworldAUC counts as won, ties ½: both images
    classified correctly within their own domain and the base image's detection score above the
    novel one's. Sort-based, O(n log n). As the official code, which places a misclassified base
    image at min(novel scores) − 1e-5 and a misclassified novel one at max(base scores) + 1e-5, the
    (misclassified, misclassified) pairs also win when that places the first above the second: only
    for a fully inverted detector (every novel score above every base one by more than 2e-5)."""
    b, n = np.asarray(base_scores, dtype=np.float64), np.asarray(novel_scores, dtype=np.float64)
    ok_b, ok_n = np.asarray(base_correct, dtype=bool), np.asarray(novel_correct, dtype=bool)
    if not (b.size and n.size):
        return 0.0
    wins = np.sort(n[ok_n])
    below = np.searchsorted(wins, b[ok_b], side="left")
    at_or_below = np.searchsorted(wins, b[ok_b], side="right")
    twice = 2 * int(below.sum()) + int((at_or_below - below).sum())  # twice the pairs: ties are exact halves
    return twice / 2 + misclassified_pairs_won(b, ok_b, n, ok_n)


def misclassified_pairs_won(base_scores: Any, base_correct: Any, novel_scores: Any, novel_correct: Any) -> float:
    """The (misclassified base, misclassified novel) pairs the official code counts as won: all of
    them when min(novel scores) − 1e-5 > max(base scores) + 1e-5 (a fully inverted detector), half
    when the two are equal, else none; the definition counts none (a quirk bmip keeps, to give the
    published code's numbers)."""
    b, n = np.asarray(base_scores, dtype=np.float64), np.asarray(novel_scores, dtype=np.float64)
    if not (b.size and n.size):
        return 0.0
    low, high = n.min() - OPENWORLD_AUC_OFFSET, b.max() + OPENWORLD_AUC_OFFSET
    wrong = int((~np.asarray(base_correct, dtype=bool)).sum()) * int((~np.asarray(novel_correct, dtype=bool)).sum())
    return wrong * (1.0 if low > high else 0.5 if low == high else 0.0)


def openworld_auc(base_scores: Any, base_correct: Any, novel_scores: Any, novel_correct: Any) -> float | None:
    """OpenworldAUC as a fraction in [0, 1]: `openworld_pairs` over all N_b·N_n pairs; None where
    there are no base or no novel images (the official code raises there)."""
    pairs = len(base_scores) * len(novel_scores)
    if not pairs:
        return None
    return openworld_pairs(base_scores, base_correct, novel_scores, novel_correct) / pairs
