"""Paired comparisons: is a method's difference to a reference larger than the noise of seeds and
test images?

One estimand per table. A table shows per (method, dataset) the seed mean of base and novel
accuracy and the HM of those two means (the paper's convention), and averaged over datasets the
HM of the averaged base and novel accuracy. Δ is the difference of the HM columns shown: Δ of a
method to the reference = HM(method's shown base, novel) − HM(reference's). For the transfer
protocols it is the difference of mean accuracy.

Two sources of noise, two intervals, each with its n:

* **Seeds** (training noise, the test set held fixed). A per-dataset row has the seeds of one
  dataset, 3 in the paper: it shows each seed's paired difference, not an interval (a bootstrap
  over 3 values is [min, max], which covers 75%). The averaged row treats datasets as fixed
  strata and seeds as the replicates: seed s gives Δ_s, the table's estimand on seed s alone
  (every dataset's run of seed s, both arms; seed s starts every dataset from the same prompts,
  so the Δ_s carry any correlation across datasets with them). The interval is Student's t on the
  n values Δ_s, centred on the shown Δ: Δ ± t_{n−1} · sd(Δ_s) / √n, with the t-test's p-value for
  Δ = 0. Exact under normal Δ_s whatever the correlation across datasets; n = 1 gives none.
* **Test images** (sampling noise of the fixed test set, the models held fixed). Every run keeps
  each test image's prediction (bmip.engine.predictions), and every run of a dataset scores the
  same images: a paired bootstrap resamples each dataset's test images of each part (base, novel;
  all), the same resample for every run of both arms, recomputes every run's accuracy and from
  them the estimand, IMAGE_RESAMPLES times. The percentile interval covers Δ of these models on
  the population the test images are drawn from. Datasets are resampled independently (strata).

p-values are Holm-adjusted within a table (over its averaged rows: the comparisons one reads
together). Where every paired difference is 0 the row says "identical in all n runs". The
coverage of both intervals on simulated data of the configs' designs is checked in
tests/report/test_statistics.py (docs/tables_and_figures.md gives the numbers).

Seeded (numpy's PCG64, BOOTSTRAP_SEED and the dataset and part): reruns give the same bytes,
whatever else the table holds. Pure functions on arrays and frames; the tables that show them are
bmip.report.ablations'. No scipy: Student's t for the integer degrees of freedom used here is
in closed form (Abramowitz & Stegun 26.7.3-4).
"""
from __future__ import annotations

import math
import zlib
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from bmip.metrics import harmonic_mean

BOOTSTRAP_SEED = 0
IMAGE_RESAMPLES = 2000
LEVEL = 0.95
_CELLS = 1 << 25  # (run, resampled image) cells read at once: 32 MiB of booleans


def mean_and_std(values: pd.Series) -> tuple[float, float]:
    """The mean over seeds and the population standard deviation (ddof=0), as the main tables."""
    return values.mean(), values.std(ddof=0)


# ---------------------------------------------------------------- Student's t (integer df)
def t_within(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` (a positive integer) degrees of freedom."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, not {df}")
    t = abs(float(t))
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:  # odd: 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2·4/(3·5) cos^4 + ...))
        if df == 1:
            return 2 * theta / math.pi
        term, total = 1.0, 1.0
        for k in range(1, (df - 1) // 2):
            term *= (2 * k) / (2 * k + 1) * c2
            total += term
        return 2 / math.pi * (theta + s * math.cos(theta) * total)
    term, total = 1.0, 1.0  # even: sin (1 + 1/2 cos^2 + 1·3/(2·4) cos^4 + ...)
    for k in range(1, df // 2):
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return s * total


def t_quantile(level: float, df: int) -> float:
    """The t with P(|T| <= t) = `level` (the two-sided critical value), by bisection."""
    low, high = 0.0, 1.0
    while t_within(high, df) < level:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_within(mid, df) < level else (low, mid)
    return (low + high) / 2


def seed_interval(deltas: Sequence[float], centre: float, level: float = LEVEL) -> tuple[float, float, float]:
    """(low, high, p): Student's t interval over the per-seed differences `deltas`, centred on the
    table's Δ (`centre`), and the two-sided p-value of Δ = 0. NaN for fewer than 2 seeds; an
    interval of width 0 and p NaN where every seed gives the same difference (no spread to scale)."""
    d = np.asarray(list(deltas), dtype=np.float64)
    if d.size < 2 or not np.isfinite(centre):
        return float("nan"), float("nan"), float("nan")
    sd = float(d.std(ddof=1))
    if sd == 0:
        return float(centre), float(centre), float("nan")
    se = sd / math.sqrt(d.size)
    half = t_quantile(level, d.size - 1) * se
    return float(centre - half), float(centre + half), 1.0 - t_within(centre / se, d.size - 1)


def holm(pvalues: Iterable[float]) -> list[float]:
    """Holm's step-down adjustment of the finite p-values (NaN stays NaN), in the given order."""
    p = np.asarray(list(pvalues), dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(p))
    out = np.full(p.shape, np.nan)
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


# ---------------------------------------------------------------- the image-level bootstrap
def _rng(dataset: str, part: str, seed: int) -> np.random.Generator:
    """The resampling stream of one dataset's part: the same whatever else a table holds."""
    return np.random.default_rng([seed, zlib.crc32(f"{dataset}\0{part}".encode("utf-8"))])


def resampled_accuracies(correct: np.ndarray, dataset: str, part: str, resamples: int = IMAGE_RESAMPLES,
                         seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Accuracy (%) of each run (rows of `correct`, runs × images, bool) on `resamples` resamples
    of the images, the same resamples for every run: (runs, resamples). Each resample draws the
    images' indices with replacement; drawn and read in chunks of about _CELLS (run, image) cells."""
    correct = np.asarray(correct, dtype=bool)
    runs, n = correct.shape
    if n == 0:
        raise ValueError(f"{dataset} {part}: no test images to resample")
    rng, out = _rng(dataset, part, seed), np.empty((runs, resamples))
    chunk = max(1, _CELLS // (runs * n))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        picked = rng.integers(0, n, size=(size, n))
        out[:, start:start + size] = correct[:, picked].sum(axis=2) * (100.0 / n)
    return out


Images = Callable[[str, str, int, str], tuple[np.ndarray, np.ndarray]]  # (method, dataset, seed, part) -> rows, correct


def _paired_columns(runs: list[tuple[str, int]], dataset: str, part: str, images: Images) -> np.ndarray:
    """The correctness of `runs` ((method, seed) of one dataset) on the part's test images, one row
    per run, columns aligned by test row; every run must score the same images."""
    got = [images(m, dataset, s, part) for m, s in runs]
    rows0 = np.sort(got[0][0])
    matrix = np.empty((len(runs), rows0.size), dtype=bool)
    for i, ((method, seed), (rows, correct)) in enumerate(zip(runs, got)):
        order = np.argsort(rows, kind="stable")
        if not np.array_equal(rows[order], rows0):
            raise ValueError(f"{dataset} {part}: {method} seed {seed} scored other test images than "
                             f"{runs[0][0]} seed {runs[0][1]}; a paired image-level comparison needs the same "
                             "images (rerun the evaluations with the same data)")
        matrix[i] = correct[order]
    return matrix


class ImageBootstrap:
    """Every run's accuracy on the image resamples of its dataset's parts, computed once per
    (dataset, part) for all the runs a table holds, read by (method, dataset, seed, part)."""

    def __init__(self, images: Images, parts: Sequence[str], resamples: int = IMAGE_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> None:
        self.images, self.parts, self.resamples, self.seed = images, tuple(parts), resamples, seed
        self.values: dict[tuple[str, str, int, str], np.ndarray] = {}
        self.sizes: dict[tuple[str, str], int] = {}

    def add(self, dataset: str, runs: list[tuple[str, int]]) -> None:
        """Resample the images of `dataset` for `runs` ((method, seed)) in every part."""
        for part in self.parts:
            correct = _paired_columns(runs, dataset, part, self.images)
            self.sizes[(dataset, part)] = correct.shape[1]
            for (method, seed), values in zip(runs, resampled_accuracies(correct, dataset, part, self.resamples,
                                                                           self.seed)):
                self.values[(method, dataset, seed, part)] = values

    def arm(self, method: str, dataset: str, seeds: Sequence[int]) -> dict[str, np.ndarray]:
        """Per part, the seed mean of the method's resampled accuracies on `dataset`: (resamples,)."""
        return {part: np.mean([self.values[(method, dataset, s, part)] for s in seeds], axis=0)
                for part in self.parts}

    def images_in(self, datasets: Sequence[str]) -> int:
        """How many test images the resamples draw from, over `datasets` and every part."""
        return sum(self.sizes[(d, p)] for d in datasets for p in self.parts)


def estimand(parts: Mapping[str, float | np.ndarray]) -> float | np.ndarray:
    """The table's primary number from its part accuracies: HM of base and novel, or accuracy."""
    if "base" in parts:
        return harmonic_mean(parts["base"], parts["novel"])
    return parts["accuracy"]


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
