"""The frozen image features of a test set: computed once, reused by every frozen-tower method and
seed (counted in provenance), refused when they belong to other weights, another split or another
precision, and rebuilt after a run killed mid-write."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from bmip.engine import evaluate as evaluate_module
from bmip.engine import features, paths
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train
from bmip.methods import build_model, frozen_image_tower, method_names
from tests.shared import CLASSNAMES


def _work(folder):
    record = json.loads((folder / paths.PROVENANCE).read_text())
    return record["work"], record["inputs"].get("frozen_image_features")


@pytest.mark.parametrize("name", method_names())
def test_the_workflow_list_of_frozen_towers_matches_the_models(tiny_backbone, name):
    model = build_model(tiny_backbone, name, CLASSNAMES)
    assert frozen_image_tower(name) == model.frozen_image_tower


def test_features_are_computed_once_and_reused_by_every_frozen_method_and_seed(toy_setup):
    config, _ = toy_setup
    config = {**config, "seeds": [1, 2], "methods": ["zsclip", "coop", "bmip"]}
    config["recipes"]["default"]["coop"] = {"epochs": 1, "batch_size": 4}
    for method in ("zsclip", "coop", "bmip"):
        for seed in (1, 2):
            train(config, "base2novel", method, "toy", seed)
    built = features.build(config, "toy")
    assert built.built and built.path == features.features_path(config, "toy") and built.features.shape[0] == 20
    again = features.build(config, "toy")
    assert not again.built and again.sha256 == built.sha256
    evaluate_module._LAST.clear()
    for method in ("zsclip", "coop"):
        for seed in (1, 2):
            work, record = _work(evaluate(config, "base2novel", method, "toy", seed))
            assert work["image_forwards"] == 0 and work["image_features_reused"] == 20
            assert work["reused"] == "frozen image features file"
            assert record == {"file": str(built.path), "sha256": built.sha256, "key_sha256": built.key_sha256}
    work, record = _work(evaluate(config, "base2novel", "bmip", "toy", 1))  # a prompted image tower
    assert work["image_forwards"] == 20 and work["image_features_reused"] == 0 and record is None
    assert built.path.read_bytes() == again.path.read_bytes()  # nothing rewrote it


def test_cached_features_give_the_metrics_of_a_fresh_pass(toy_setup, tmp_path):
    config, _ = toy_setup
    train(config, "base2novel", "zsclip", "toy", 1)
    evaluate_module._LAST.clear()
    cached = evaluate(config, "open_world", "zsclip", "toy", 1, out_dir=tmp_path / "cached")  # builds the file
    evaluate_module._LAST.clear()
    reused = evaluate(config, "open_world", "zsclip", "toy", 1, out_dir=tmp_path / "reused")
    assert _work(cached)[0]["image_forwards"] == 20 and _work(reused)[0]["image_forwards"] == 0
    assert (cached / paths.METRICS).read_bytes() == (reused / paths.METRICS).read_bytes()


@pytest.mark.parametrize("change", ["weights", "activation", "split", "precision"])
def test_a_stale_or_foreign_cache_is_refused(toy_setup, tmp_path, change):
    config, _ = toy_setup
    built = features.build(config, "toy")
    backbone = None
    if change == "weights":  # e.g. the miniworld CLIP pretrained again, or another weights file
        import copy

        from bmip.data import load_dataset
        from bmip.engine.runtime import backbone_from

        backbone = copy.deepcopy(backbone_from(config, torch.device("cpu")))
        with torch.no_grad():
            backbone.clip.visual.conv1.weight[0, 0, 0, 0] += 1
        other, field = config, "weights_sha256"
    elif change == "precision":
        other = {**config, "precision": "bf16"}
        field = "precision"
    elif change == "split":
        data_root = tmp_path / "data"
        from tests.engine.toy import make_toy_dataset

        make_toy_dataset(data_root)
        split = data_root / "toy" / "split.json"
        doc = json.loads(split.read_text())
        doc["test"] = doc["test"][:-1]
        split.write_text(json.dumps(doc))
        other = {**config, "data_root": str(data_root)}
        field = "split_file_sha256"
    else:
        other = {**config, "backbone": {"model": "test-vit-tiny", "pretrained": "none", "quick_gelu": True}}
        field = "quick_gelu"
    target = features.features_path(other, "toy")
    assert target == built.path  # the same experiment folder: the same file name
    with pytest.raises(features.FeatureCacheError, match=rf"{built.path}.*{field}: file"):
        if backbone is not None:
            features.load_or_build(other, load_dataset("toy", other["data_root"]), backbone)
        else:
            features.build(other, "toy")
    assert target.read_bytes() == built.path.read_bytes()  # refused, not overwritten


def test_a_foreign_file_is_refused(toy_setup):
    config, _ = toy_setup
    path = features.features_path(config, "toy")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not features")
    with pytest.raises(features.FeatureCacheError, match="not a readable"):
        features.build(config, "toy")


def test_a_kill_mid_write_leaves_no_file_and_the_next_run_builds_it(toy_setup):
    config, config_file = toy_setup
    # A child process that stops (SIGKILL) inside the atomic write, after the tensor file is written.
    script = f"""
import os, signal
import bmip.engine.features as f
real = f.atomic_write
def dying(path, write):
    def partial(tmp):
        write(tmp)
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, partial)
f.atomic_write = dying
from bmip.config import load_config
f.build(load_config({str(config_file)!r}), "toy")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(paths.Path(__file__).resolve().parents[2]),
                                                      os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    target = features.features_path(config, "toy")
    assert not target.exists()  # only a hidden temporary is left behind
    rebuilt = features.build(config, "toy")
    assert rebuilt.built and target.exists()
    assert torch.equal(rebuilt.features, features.build(config, "toy").features)
