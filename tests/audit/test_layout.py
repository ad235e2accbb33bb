"""The results layout read back: which rule wrote a file, and where a workflow ran from."""
from __future__ import annotations

import pytest
import yaml

from bmip.audit.layout import Experiment, Run, rule_of


@pytest.mark.parametrize("path, rule, wildcards", [
    ("train/base2novel/bmip/eurosat/seed3/prompts.safetensors", "train",
     {"training": "base2novel", "method": "bmip", "dataset": "eurosat", "seed": "3"}),
    ("open_world/bmip+promptsrc/dtd/seed1/metrics.json", "evaluate_open_world",
     {"protocol": "open_world", "method": "bmip+promptsrc", "dataset": "dtd", "seed": "1"}),
    ("splits/dtd/shot_16-seed_1.json", "fewshot_splits", {"dataset": "dtd"}),
    ("figures/miniworld_samples.png", "miniworld_figure", {}),
    ("figures/hm_per_dataset.pdf", "figures", {}),
    ("logs/evaluate_cross_dataset/coop.log", "evaluate_cross_dataset", {}),
    ("logs/evaluate/coop.log", "evaluate", {}),
    ("logs/miniworld_pretrain.log", "miniworld_pretrain", {}),
    ("notes/readme.txt", None, {}),
])
def test_rule_of_a_path(path, rule, wildcards):
    assert rule_of(path) == (rule, wildcards)


def test_an_evaluation_rule_follows_the_config(tmp_path):
    """One rule per protocol, or the single `evaluate` rule when datasets are batched."""
    metrics = "open_world/bmip/dtd/seed1/metrics.json"
    run = Run("evaluate", "base2novel", "coop", "dtd", 1)
    for batched, ow_rule, b2n_rule in ((False, "evaluate_open_world", "evaluate_base2novel"),
                                       (True, "evaluate", "evaluate")):
        exp = tmp_path / str(batched)
        exp.mkdir()
        config = {"results_dir": str(tmp_path), "experiment": str(batched), "workflow": {"batch_datasets": batched}}
        (exp / "config.yaml").write_text(yaml.safe_dump(config))
        opened = Experiment.open(exp)
        assert opened.rule_of(metrics)[0] == ow_rule
        assert opened.rule_for(run) == b2n_rule
    assert Experiment.open(exp).rule_for(Run("train", "base2novel", "coop", "dtd", 1)) == "train"
    # base2novel and open_world of the same datasets: one rule, whose job scores a test set once.
    exp = tmp_path / "shared"
    exp.mkdir()
    same = {"datasets": ["dtd"]}
    config = {"results_dir": str(tmp_path), "experiment": "shared", "workflow": {"batch_datasets": False},
              "protocols": {"base2novel": same, "open_world": same, "cross_dataset": {"source": "imagenet"}}}
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    opened = Experiment.open(exp)
    assert opened.rule_of(metrics)[0] == opened.rule_for(run) == "evaluate_base_trained"
    assert opened.rule_for(Run("evaluate", "cross_dataset", "coop", "dtd", 1)) == "evaluate_cross_dataset"
    assert rule_of("logs/evaluate_base_trained/coop/dtd.log") == ("evaluate_base_trained", {})


def test_run_folders():
    assert Run("train", "cross_dataset", "coop", "imagenet", 2).relpath == "train/cross_dataset/coop/imagenet/seed2"


def test_workflow_root_from_results_dir(tmp_path):
    exp = tmp_path / "out" / "runs" / "exp1"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump({"results_dir": "out/runs", "experiment": "exp1"}))
    assert Experiment.open(exp).root == tmp_path.resolve()
