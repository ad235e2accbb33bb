"""OpenworldAUC (Hua et al., ICML 2025) as the official code computes it: a (base, novel) pair of
test images counts when both are classified correctly within their own domain and the base image's
detection score (its largest base-class softmax probability) is above the novel one's, a tie ½."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from bmip.audit.recompute import openworld_auc_problems
from bmip.audit.findings import Findings
from bmip.engine import evaluate as evaluate_module
from bmip.engine import paths
from bmip.engine.evaluate import evaluate
from bmip.engine.scoring import openworld_scores
from bmip.engine.train import train
from bmip.metrics import misclassified_pairs_won, openworld_auc, openworld_pairs


def _official_pairs(base, ok_b, novel, ok_n) -> float:
    """The official code pair by pair (GMoP.eval_time_compute_opt_auc, whose roc_auc_score is the
    Mann-Whitney statistic): a misclassified base image at min(novel) - 1e-5, a misclassified novel
    one at max(base) + 1e-5, then every (base, novel) pair compared, a tie ½. O(N_b·N_n)."""
    low, high = min(novel) - 1e-5, max(base) + 1e-5
    b = [r if ok else low for r, ok in zip(base, ok_b)]
    n = [r if ok else high for r, ok in zip(novel, ok_n)]
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in itertools.product(b, n))


def test_a_case_worked_out_by_hand_with_a_tie():
    # base: r 0.9 0.6 0.5 0.8, correct T T T F; novel: r 0.5 0.7 0.3, correct T T F. Of the 4·3 = 12
    # pairs only the 3·2 both-correct ones can score: (0.9, 0.5) 1, (0.9, 0.7) 1, (0.6, 0.5) 1,
    # (0.6, 0.7) 0, (0.5, 0.5) a tie ½, (0.5, 0.7) 0: 3.5 of 12 = 7/24 (3/12 if ties counted 0).
    base, ok_b = [0.9, 0.6, 0.5, 0.8], [True, True, True, False]
    novel, ok_n = [0.5, 0.7, 0.3], [True, True, False]
    assert openworld_pairs(base, ok_b, novel, ok_n) == 3.5
    assert openworld_auc(base, ok_b, novel, ok_n) == pytest.approx(7 / 24, abs=1e-15)
    assert misclassified_pairs_won(base, ok_b, novel, ok_n) == 0
    # Beside it, HM of within-domain accuracy 3/4 and 2/3 is 12/17: OpenworldAUC also asks the detector.
    assert openworld_auc(base, [True] * 4, novel, [True] * 3) == pytest.approx((3 + 3 + 2 + 1.5) / 12)


def test_all_wrong_scores_nothing_and_a_perfect_model_scores_one():
    base, novel = [0.9, 0.8, 0.7], [0.2, 0.1]
    assert openworld_auc(base, [False] * 3, novel, [False] * 2) == 0.0
    assert openworld_auc(base, [True] * 3, novel, [False] * 2) == 0.0  # every novel image wrong
    assert openworld_auc(base, [True] * 3, novel, [True] * 2) == 1.0
    assert openworld_auc([0.4, 0.4], [True, True], [0.4], [True]) == 0.5  # all tied: ½ each
    assert openworld_auc([], [], novel, [True, True]) is None and openworld_auc(base, [True] * 3, [], []) is None


def test_the_official_codes_quirk_for_a_fully_inverted_detector():
    # Every novel score above every base one: the official code places the misclassified base image
    # at 0.8 - 1e-5, above the misclassified novel one at 0.2 + 1e-5, and counts that pair (the
    # definition would give 0, the only both-correct pair having 0.1 < 0.8).
    base, ok_b, novel, ok_n = [0.1, 0.2], [True, False], [0.8, 0.9], [True, False]
    assert misclassified_pairs_won(base, ok_b, novel, ok_n) == 1
    assert openworld_auc(base, ok_b, novel, ok_n) == 0.25 == _official_pairs(base, ok_b, novel, ok_n) / 4
    assert openworld_auc([0.1], [False], [0.9], [False]) == 1.0  # all wrong, inverted


@pytest.mark.parametrize("seed", range(6))
def test_equals_the_pair_loop_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n_b, n_n = rng.integers(1, 40, size=2)
    # Scores rounded to a coarse grid give many ties; some seeds invert the detector.
    shift = 0.6 if seed % 3 == 2 else 0.0
    base = np.round(rng.uniform(0, 0.4, n_b) if shift else rng.uniform(0, 1, n_b), 1)
    novel = np.round(rng.uniform(0, 0.4, n_n) + shift, 1)
    ok_b, ok_n = rng.random(n_b) < 0.6, rng.random(n_n) < 0.6
    expected = _official_pairs(base.tolist(), ok_b, novel.tolist(), ok_n)
    assert openworld_pairs(base, ok_b, novel, ok_n) == expected
    assert openworld_auc(base, ok_b, novel, ok_n) == pytest.approx(expected / (n_b * n_n), abs=1e-15)


def test_detection_score_and_within_domain_correctness_from_joint_logits():
    # Columns 0, 1 base, 2, 3 novel. Image 0 (base, class 1): wrong in the joint space (column 2 is
    # larger) but correct among the base columns. Image 1 (novel, class 3): correct in its domain.
    # Image 2 (novel, class 2): its novel columns tie and the first (class 2) wins, as argmax does.
    logits = torch.tensor([[1.0, 3.0, 4.0, 0.0], [2.0, 0.0, 1.0, 5.0], [0.0, 0.0, 2.0, 2.0]])
    labels = torch.tensor([1, 3, 2])
    scores = openworld_scores(logits, labels, base=[0, 1], novel=[2, 3])
    assert scores.is_base.tolist() == [True, False, False]
    assert scores.correct.tolist() == [True, True, True]
    expected = torch.softmax(logits, dim=-1)[:, :2].amax(dim=-1)
    assert scores.detection.dtype == torch.float32 and torch.equal(scores.detection, expected)
    with pytest.raises(ValueError, match="neither a base nor a novel class"):
        openworld_scores(logits, labels, base=[0, 1], novel=[3])


def test_open_world_evaluation_records_it_from_its_own_logits(toy_setup):
    config, _ = toy_setup
    train(config, "base2novel", "zsclip", "toy", 1)
    evaluate_module._LAST.clear()
    metrics = json.loads((evaluate(config, "open_world", "zsclip", "toy", 1) / paths.METRICS).read_text())
    record, results = metrics["results"]["openworld_auc"], metrics["results"]
    assert metrics["summary"]["openworld_auc"] == record["value"]
    assert record["base"]["images"] == results["base_part"]["total"] == 12
    assert record["novel"]["images"] == results["novel_part"]["total"] == 8
    assert (record["detector"], record["precision"], record["ties"]) == ("max_base_softmax", "float32", 0.5)
    # The same number from the evaluation's score matrix, pair by pair.
    (matrix,) = evaluate_module._LAST.values()
    probs = matrix.logits.softmax(dim=-1)
    base_cols, novel_cols = [0, 1, 2], [3, 4]  # the toy's base and novel classes
    r = probs[:, base_cols].amax(dim=-1).tolist()
    is_base = [y in base_cols for y in matrix.labels.tolist()]
    ok = [(row[base_cols].argmax().item() == y) if b else (row[novel_cols].argmax().item() == y - 3)
          for row, y, b in zip(matrix.logits, matrix.labels.tolist(), is_base)]
    pick = lambda values, want: [v for v, b in zip(values, is_base) if b == want]  # noqa: E731
    won = _official_pairs(pick(r, True), pick(ok, True), pick(r, False), pick(ok, False))
    assert record["pairs_won"] == won and record["pairs"] == 96
    assert record["value"] == pytest.approx(100 * won / 96, abs=1e-12)
    assert record["base"]["correct_in_domain"] == sum(pick(ok, True))
    assert openworld_auc_problems(metrics["summary"], results, Findings()) == []
