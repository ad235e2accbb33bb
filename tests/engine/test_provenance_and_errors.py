"""Provenance records, and bad input that must fail clearly without writing results."""
import json
import subprocess
import sys

import pytest

from bmip.config import config_hash
from bmip.engine import paths
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train
from tests.engine.toy import make_toy_dataset, toy_config

FIELDS = {"kind", "code", "config", "config_sha256", "seed", "shots", "inputs", "backbone", "packages", "hardware",
          "time", "command"}


def test_provenance_has_every_field(toy_setup):
    config, _ = toy_setup
    out = train(config, "base2novel", "maple", "toy", 1)
    record = json.loads((out / paths.PROVENANCE).read_text())
    assert FIELDS <= set(record)
    assert record["config_sha256"] == config_hash(record["config"])
    assert record["code"]["package"] and "git_commit" in record["code"] and "git_dirty" in record["code"]
    assert record["seed"] == 1 and record["shots"] == 4
    train_inputs = record["inputs"]["train"]
    assert len(train_inputs["split_file_sha256"]) == 64 and len(train_inputs["images_sha256"]) == 64
    assert train_inputs["n_images"] == 12  # 3 base classes x 4 shots
    assert record["backbone"]["model"] == "test-vit-tiny" and record["backbone"]["weights_sha256"] is None
    assert {"torch", "open_clip_torch", "python"} <= set(record["packages"])
    assert record["hardware"]["device"] == "cpu"
    assert {"start", "end", "wall_seconds", "peak_rss_mib"} <= set(record["time"])
    assert record["command"]
    ev = evaluate(config, "base2novel", "maple", "toy", 1)
    ev_record = json.loads((ev / paths.PROVENANCE).read_text())
    assert FIELDS <= set(ev_record) and len(ev_record["inputs"]["checkpoint_sha256"]) == 64


def test_changing_the_split_file_changes_its_hash(tmp_path):
    from bmip.config import validate

    hashes = []
    for variant in ("a", "b"):
        root = tmp_path / variant / "data"
        folder = make_toy_dataset(root)
        if variant == "b":
            split = json.loads((folder / "split.json").read_text())
            split["test"].reverse()
            (folder / "split.json").write_text(json.dumps(split))
        config = validate(toy_config(tmp_path / variant, data_root=str(root)))
        out = train(config, "base2novel", "zsclip", "toy", 1)
        hashes.append(json.loads((out / paths.PROVENANCE).read_text())["inputs"]["train"]["split_file_sha256"])
    assert hashes[0] != hashes[1]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "bmip.cli", *map(str, args)], capture_output=True, text=True, timeout=300)


def _files(root):
    return sorted(p for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--method", "bmipp", "--dataset", "toy", "--seed", "1"], "unknown method 'bmipp'"),
        (["train", "--method", "bmip", "--dataset", "toy", "--seed", "1", "--set", "recipes.default.bmip.lr=-0.1"],
         "recipes.default.bmip.lr: -0.1 is less than or equal to the minimum of 0"),
        (["train", "--method", "bmip", "--dataset", "no_such_set", "--seed", "1"], "'no_such_set' is not a registered dataset"),
        (["train", "--method", "bmip", "--dataset", "toy", "--seed", "1", "--set", "methodz=[bmip]"],
         "Additional properties are not allowed ('methodz' was unexpected)"),
        (["train", "--method", "bmip", "--all", "--protocol", "cross_dataset", "--seed", "1"],
         "--all runs every protocol the config names"),
        (["evaluate", "--method", "bmip", "--dataset", "toy", "--seed", "1"], "--dataset needs --protocol"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(toy_setup, args, message):
    config, config_path = toy_setup
    results = paths.experiment_dir(config).parent
    before = _files(results)
    done = _cli(args[0], config_path, *args[1:])
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert _files(results) == before


def test_checkpoint_of_another_method_or_backbone_is_refused(toy_setup, tiny_backbone, tmp_path):
    import torch
    import yaml

    config, config_path = toy_setup
    maple = train(config, "base2novel", "maple", "toy", 1) / paths.PROMPTS
    weights = tmp_path / "weights.pt"
    torch.save(tiny_backbone.clip.state_dict(), weights)
    other = dict(yaml.safe_load(config_path.read_text()), backbone={"model": "test-vit-tiny", "pretrained": str(weights)},
                 results_dir=str(tmp_path / "other"))
    from bmip.config import validate

    foreign = train(validate(other), "base2novel", "maple", "toy", 1) / paths.PROMPTS
    results = paths.experiment_dir(config).parent
    before = _files(results)
    common = ("--protocol", "base2novel", "--dataset", "toy", "--seed", "1")
    done = _cli("evaluate", config_path, "--method", "bmip", *common, "--checkpoint", maple)
    assert done.returncode != 0 and "holds method 'maple', not 'bmip'" in done.stderr
    done = _cli("evaluate", config_path, "--method", "maple", *common, "--checkpoint", foreign)
    assert done.returncode != 0 and "was trained on backbone" in done.stderr
    done = _cli("evaluate", config_path, "--method", "maple", *common, "--checkpoint", maple,
                "--set", "recipes.default.maple.lr=0.1")
    assert done.returncode != 0 and "trained with another configuration" in done.stderr
    assert _files(results) == before
