"""The paired comparison's statistics: which runs pair, and the numbers a table shows for them."""
import math

import numpy as np
import pandas as pd
import pytest

from bmip.report.statistics import mean_and_std, paired_bootstrap, paired_difference, paired_differences


def _runs(rows):
    return pd.DataFrame(rows, columns=["method", "dataset", "seed", "hm"])


RUNS = _runs([
    ("a", "x", 1, 70.0), ("a", "x", 2, 72.0), ("a", "y", 1, 50.0), ("a", "y", 3, 99.0),  # y/3: no partner
    ("ref", "x", 1, 69.0), ("ref", "x", 2, 73.0), ("ref", "y", 1, 47.0), ("ref", "z", 1, 10.0),
])


def test_runs_pair_by_dataset_and_seed_and_unpaired_runs_are_left_out():
    differences = paired_differences(RUNS, "a", "ref", "hm")
    assert differences.to_dict() == {("x", 1): 1.0, ("x", 2): -1.0, ("y", 1): 3.0}
    assert paired_differences(RUNS, "a", "ref", "hm", ["y"]).to_dict() == {("y", 1): 3.0}


def test_the_paired_difference_is_the_mean_over_pairs_with_a_seeded_interval():
    result = paired_difference(RUNS, "a", "ref", "hm")
    assert result["delta"] == pytest.approx(1.0) and result["pairs"] == 3
    assert result["delta_low"] <= 1.0 <= result["delta_high"]
    assert (result["delta"], result["delta_low"], result["delta_high"]) == paired_bootstrap([1.0, -1.0, 3.0])
    one = paired_difference(RUNS, "a", "ref", "hm", ["y"])
    assert one["delta"] == 3.0 and one["pairs"] == 1 and math.isnan(one["delta_low"]) and math.isnan(one["delta_high"])
    none = paired_difference(RUNS, "a", "ref", "hm", ["w"])
    assert none["pairs"] == 0 and math.isnan(none["delta"])


def test_a_golden_interval_stays_the_same():
    """The bootstrap's draw is part of the tables' bytes: numpy's PCG64 seeded with 0, 10 000
    resamples, percentiles 2.5 and 97.5."""
    mean, low, high = paired_bootstrap(np.arange(10, dtype=float))
    assert (mean, round(low, 6), round(high, 6)) == (4.5, 2.7, 6.3)  # as bmip.report.ablations computed it


def test_the_spread_over_seeds_is_the_population_std():
    mean, std = mean_and_std(pd.Series([1.0, 3.0]))
    assert (mean, std) == (2.0, 1.0)
