"""The paired comparison: is a method's difference to a reference larger than seed noise?

Runs are paired by (dataset, seed) — same few-shot split, same data seed — and the difference of a
per-run metric is averaged over the pairs, with a 95% percentile bootstrap interval over the pairs
(RESAMPLES resamples, numpy's PCG64 seeded with BOOTSTRAP_SEED: reruns give the same bytes). A
single pair has no interval (every resample is that pair): its bounds are NaN.

Interval, not a test: an interval that excludes 0 says the gap exceeds what these seeds and
datasets vary by, nothing about other seeds of torch's initialisation unless they are swept.

Pure functions on arrays and frames; the tables that show them are bmip.report.ablations'.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

BOOTSTRAP_SEED = 0
RESAMPLES = 10_000
LEVEL = 0.95


def mean_and_std(values: pd.Series) -> tuple[float, float]:
    """The mean over seeds and the population standard deviation (ddof=0), as the main tables."""
    return values.mean(), values.std(ddof=0)


def paired_bootstrap(differences: Iterable[float], resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the mean of paired differences and its percentile bootstrap interval.
    Resamples the pairs with replacement in one (resamples × pairs) draw, seeded: deterministic.
    Fewer than 2 pairs give no interval (NaN bounds): resampling one pair only repeats it."""
    d = np.asarray(list(differences), dtype=np.float64)
    if d.size < 2:
        return (float(d.mean()) if d.size else float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(low), float(high)


def paired_differences(runs: pd.DataFrame, method: str, reference: str, metric: str,
                       datasets: list[str] | None = None) -> pd.Series:
    """`method`'s `metric` minus `reference`'s, per (dataset, seed) that both have run, sorted by
    (dataset, seed); only `datasets`' pairs when given. `runs`: one row per (method, dataset, seed)."""
    mine = runs[runs["method"] == method].set_index(["dataset", "seed"])[metric]
    ref = runs[runs["method"] == reference].set_index(["dataset", "seed"])[metric]
    joined = pd.concat([mine, ref], axis=1, keys=["a", "b"], join="inner").sort_index()
    if datasets is not None:
        joined = joined[joined.index.get_level_values(0).isin(datasets)]
    return joined["a"] - joined["b"]


def paired_difference(runs: pd.DataFrame, method: str, reference: str, metric: str,
                      datasets: list[str] | None = None) -> dict[str, float]:
    """The mean paired difference of `metric` to `reference` (`delta`), its bootstrap interval
    (`delta_low`, `delta_high`) and the number of pairs (`pairs`)."""
    differences = paired_differences(runs, method, reference, metric, datasets)
    mean, low, high = paired_bootstrap(differences.to_numpy())
    return {"delta": mean, "delta_low": low, "delta_high": high, "pairs": len(differences)}
