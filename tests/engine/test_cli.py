"""`bmip train`/`bmip evaluate` without --seed: zero-shot CLIP (nothing trained) runs the config's
seeds, as the workflow does; a method that trains asks for the seed, naming the config's."""
from __future__ import annotations

import logging

import yaml

from bmip.cli import main
from bmip.engine import evaluate as evaluate_module
from bmip.engine import paths


def test_zsclip_needs_no_seed_and_runs_the_config_s(toy_setup, tmp_path):
    raw, _ = toy_setup
    config = {**raw, "seeds": [1, 2]}
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump(config))
    evaluate_module._LAST.clear()
    assert main(["train", str(path), "--method", "zsclip", "--dataset", "toy"]) == 0
    assert main(["evaluate", str(path), "--method", "zsclip", "--protocol", "base2novel", "--dataset", "toy"]) == 0
    for seed in (1, 2):
        assert (paths.train_dir(config, "base2novel", "zsclip", "toy", seed) / paths.PROVENANCE).is_file()
        assert (paths.eval_dir(config, "base2novel", "zsclip", "toy", seed) / paths.METRICS).is_file()
    assert not paths.train_dir(config, "base2novel", "zsclip", "toy", 3).exists()


def test_a_trained_method_asks_for_its_seed(toy_setup, caplog):
    _, path = toy_setup
    with caplog.at_level(logging.ERROR, logger="bmip"):
        assert main(["train", str(path), "--method", "bmip", "--dataset", "toy"]) == 1
        assert main(["evaluate", str(path), "--method", "bmip", "--all"]) == 1
    assert caplog.text.count("--method bmip trains prompts, so name the seed(s) of its runs: --seed 1") == 2
