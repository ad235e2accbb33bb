"""The paired comparison's statistics on synthetic data with known truth: Student's t, Holm, the
seed interval (n = 1, no spread, coverage with datasets as strata) and the image-level paired
bootstrap (same resample for both arms, coverage)."""
import math

import numpy as np
import pandas as pd
import pytest

from bmip.metrics import harmonic_mean
from bmip.report.statistics import (
    ImageBootstrap, holm, mean_and_std, percentile_interval, resampled_accuracies, seed_interval, t_quantile,
    t_within,
)

# The designs the configs compare on: (datasets, seeds) of config/config.yaml's ablations and
# paired table and of config/paper.yaml's; test images per part of miniworld (160 at the least)
# and of a paper dataset (DTD's 864 base test images, say).
SEED_DESIGNS = [(3, 3), (6, 3), (11, 3)]
IMAGE_DESIGNS = [160, 864]


def test_student_t_matches_its_tables():
    # Two-sided 95% critical values (any statistics table) and a p-value.
    for df, value in ((1, 12.706205), (2, 4.302653), (3, 3.182446), (4, 2.776445), (10, 2.228139), (30, 2.042272)):
        assert t_quantile(0.95, df) == pytest.approx(value, abs=1e-5)
    assert 1 - t_within(2.0, 5) == pytest.approx(0.101939, abs=1e-6)
    assert t_within(0.0, 7) == 0.0 and t_within(math.inf, 3) == 1.0
    with pytest.raises(ValueError, match="positive integer"):
        t_within(1.0, 0)


def test_the_seed_interval_is_student_t_centred_on_the_shown_difference():
    low, high, p = seed_interval([1.0, 2.0, 3.0], centre=2.1)
    half = 4.302653 * 1.0 / math.sqrt(3)
    assert (low, high) == pytest.approx((2.1 - half, 2.1 + half), abs=1e-5)
    assert p == pytest.approx(1 - t_within(2.1 / (1 / math.sqrt(3)), 2))
    assert all(math.isnan(v) for v in seed_interval([0.7], centre=0.7))  # n = 1: no interval
    assert seed_interval([0.0, 0.0, 0.0], centre=0.0)[:2] == (0.0, 0.0)  # every seed the same: no spread
    assert math.isnan(seed_interval([0.0, 0.0, 0.0], centre=0.0)[2])


def test_holm_adjusts_step_down_and_keeps_nan():
    assert holm([0.01, float("nan"), 0.04, 0.03]) == pytest.approx([0.03, float("nan"), 0.06, 0.06], nan_ok=True)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("datasets,seeds", SEED_DESIGNS)
def test_the_seed_interval_covers_95_percent_with_datasets_as_strata(datasets, seeds):
    """Simulated tables: per dataset a level of its own (fixed strata), per seed an effect shared by
    every dataset (seed s starts every dataset from the same prompts) and by both arms in part,
    per run a noise; the variant is better by a known amount. The interval covers the true Δ (HM
    of the true averaged base and novel accuracies) at least 93% of the time."""
    rng = np.random.default_rng(11)
    sims = 4000
    level = rng.uniform(55, 85, size=(1, datasets, 1))
    gain_base, gain_novel = 0.5, 1.5
    shared = rng.normal(0, 1.0, size=(sims, 1, seeds))  # seed effect, same on every dataset and both arms
    own = rng.normal(0, 0.8, size=(sims, 1, seeds))  # the variant's own seed effect, on every dataset
    runs = {}
    for arm, gains in (("ref", (0, 0)), ("var", (gain_base, gain_novel))):
        extra = own if arm == "var" else 0
        runs[arm] = [level + g + shared + extra + rng.normal(0, 1.2, size=(sims, datasets, seeds)) for g in gains]
    truth = harmonic_mean(level.mean() + gain_base, level.mean() + gain_novel) - harmonic_mean(level.mean(), level.mean())

    def shown(base, novel, axis):  # HM of the means over the given axes
        return harmonic_mean(base.mean(axis=axis), novel.mean(axis=axis))

    delta = shown(*runs["var"], (1, 2)) - shown(*runs["ref"], (1, 2))
    per_seed = shown(*runs["var"], 1) - shown(*runs["ref"], 1)  # (sims, seeds)
    half = t_quantile(0.95, seeds - 1) * per_seed.std(axis=1, ddof=1) / math.sqrt(seeds)
    coverage = float(np.mean(np.abs(delta - truth) <= half))
    assert coverage >= 0.93, coverage
    # The function the tables call gives the same interval as this vectorised one.
    low, high, _ = seed_interval(per_seed[0], delta[0])
    assert (low, high) == pytest.approx((delta[0] - half[0], delta[0] + half[0]))


@pytest.mark.parametrize("images", IMAGE_DESIGNS)
def test_the_image_bootstrap_covers_95_percent_of_the_test_set_noise(images):
    """Fixed models scored on a test set drawn from an image population: each image is easy or
    hard for both arms together (the pairing), and the variant gets a known share more right. The
    paired bootstrap's interval covers the true population Δ at least 93% of the time."""
    rng = np.random.default_rng(5)
    sims, resamples = 1000, 1000
    p_ref, p_var = {"base": 0.72, "novel": 0.64}, {"base": 0.74, "novel": 0.69}
    truth = harmonic_mean(100 * p_var["base"], 100 * p_var["novel"]) - harmonic_mean(100 * p_ref["base"],
                                                                                     100 * p_ref["novel"])
    acc = {}
    for part in ("base", "novel"):
        u = rng.uniform(size=(sims, 1, images))  # each image's ease, shared by both arms
        p = np.array([p_ref[part], p_var[part]]).reshape(1, 2, 1)
        correct = u < p
        flip = rng.uniform(size=(sims, 2, images)) < 0.1  # and some arm-specific luck
        correct = np.where(flip, rng.uniform(size=(sims, 2, images)) < p, correct)
        # Every simulated test set as two rows (reference, variant) of one call: the simulations
        # share the resampled indices, each is its own test set.
        acc[part] = resampled_accuracies(correct.reshape(2 * sims, images), "sim", part, resamples).reshape(
            sims, 2, resamples)
    hm = harmonic_mean(acc["base"], acc["novel"])
    intervals = np.array([percentile_interval(h[1] - h[0]) for h in hm])
    coverage = float(np.mean((intervals[:, 0] <= truth) & (truth <= intervals[:, 1])))
    assert coverage >= 0.93, coverage


def test_the_image_bootstrap_resamples_both_arms_together_and_is_seeded():
    correct = np.array([[True, False, True, True], [True, False, True, True]])
    same = resampled_accuracies(correct, "toys", "base", 300)
    assert np.array_equal(same[0], same[1])  # identical arms: every resampled difference is 0
    again = resampled_accuracies(correct, "toys", "base", 300)
    assert np.array_equal(same, again)
    other = resampled_accuracies(correct, "toys", "novel", 300)  # another part draws another stream
    assert not np.array_equal(same, other)
    assert set(np.unique(same)) <= {0.0, 25.0, 50.0, 75.0, 100.0}
    # Each run's images are aligned by test row before resampling, whatever order they came in.
    rows = {("a", 1): (np.array([3, 1, 0, 2]), np.array([True, False, True, True])),
            ("b", 1): (np.array([0, 1, 2, 3]), np.array([True, False, True, True]))}
    boot = ImageBootstrap(lambda m, d, s, p: rows[(m, s)], ("accuracy",), resamples=200)
    boot.add("toys", [("a", 1), ("b", 1)])
    assert np.array_equal(boot.values[("a", "toys", 1, "accuracy")], boot.values[("b", "toys", 1, "accuracy")])
    assert boot.images_in(["toys"]) == 4
    other_images = {("a", 1): (np.array([0, 1, 2, 4]), np.ones(4, bool)), ("b", 1): rows[("b", 1)]}
    with pytest.raises(ValueError, match="scored other test images"):
        ImageBootstrap(lambda m, d, s, p: other_images[(m, s)], ("accuracy",)).add("toys", [("a", 1), ("b", 1)])


def test_the_spread_over_seeds_is_the_population_std():
    mean, std = mean_and_std(pd.Series([1.0, 3.0]))
    assert (mean, std) == (2.0, 1.0)
