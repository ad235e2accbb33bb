"""Every evaluation keeps each test image's prediction (predictions.json.gz): it round-trips, it
recomputes metrics.json's counts and OpenworldAUC exactly, and one that disagrees is refused."""
from __future__ import annotations

import copy
import gzip
import json

import numpy as np
import pytest

from bmip.data import items_hash, load_dataset
from bmip.engine import evaluate as evaluate_module
from bmip.engine import paths, predictions
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train
from bmip.metrics import openworld_pairs


def _evaluated(config, protocol: str, tmp_path):
    evaluate_module._LAST.clear()
    folder = evaluate(config, protocol, "zsclip", "toy", 1, out_dir=tmp_path / protocol)
    metrics = json.loads((folder / paths.METRICS).read_text())
    provenance = json.loads((folder / paths.PROVENANCE).read_text())
    return folder, metrics, provenance


@pytest.fixture
def open_world(toy_setup, tmp_path):
    config, _ = toy_setup
    train(config, "base2novel", "zsclip", "toy", 1)
    return (config, *_evaluated(config, "open_world", tmp_path))


def test_base2novel_predictions_recompute_the_metrics(toy_setup, tmp_path):
    config, _ = toy_setup
    train(config, "base2novel", "zsclip", "toy", 1)
    folder, metrics, provenance = _evaluated(config, "base2novel", tmp_path)
    doc = predictions.read_predictions(folder / paths.PREDICTIONS)
    identity = {"protocol": "base2novel", "method": "zsclip", "dataset": "toy", "seed": 1}
    assert {k: doc[k] for k in identity} == identity and doc["openworld"] is None
    test = load_dataset("toy", config["data_root"]).test
    assert doc["test_images_sha256"] == provenance["inputs"]["test"]["images_sha256"] == items_hash(test)
    assert sorted(doc["spaces"]) == ["base", "novel"]
    for part in ("base", "novel"):
        rows, correct = predictions.correctness(doc, part)
        assert int(correct.sum()) == metrics["results"][part]["correct"]
        assert len(rows) == metrics["results"][part]["total"]
        # The rows are the test images of the part's classes; the labels their positions in it.
        names = metrics["results"][part]["label_space"]
        assert [test[r].classname for r in rows] == [names[y] for y in doc["spaces"][part]["labels"]]
    assert predictions.problems(doc, identity, metrics, items_hash(test)) == []
    # The same predictions give the same bytes (compact JSON, sorted keys, gzip time 0).
    again, _, _ = _evaluated(config, "base2novel", tmp_path / "again")
    assert (again / paths.PREDICTIONS).read_bytes() == (folder / paths.PREDICTIONS).read_bytes()


def test_open_world_predictions_recompute_openworld_auc(open_world):
    config, folder, metrics, provenance = open_world
    doc = predictions.read_predictions(folder / paths.PREDICTIONS)
    ratios = [f"ratio/{r}" for r in metrics["results"]["ratio"]]
    assert sorted(doc["spaces"]) == sorted(["joint", *ratios])
    world = doc["openworld"]
    assert world["rows"] == doc["spaces"]["joint"]["rows"]
    is_base, correct = np.array(world["is_base"], bool), np.array(world["correct"], bool)
    detection = np.array(world["detection"], np.float32)
    record = metrics["results"]["openworld_auc"]
    won = openworld_pairs(detection[is_base], correct[is_base], detection[~is_base], correct[~is_base])
    assert won == record["pairs_won"] and 100 * won / record["pairs"] == pytest.approx(record["value"], abs=1e-12)
    # Base-part and novel-part accuracy in the joint space, from the images.
    for part in ("base", "novel"):
        _, hit = predictions.part_correctness(doc, part)
        assert (int(hit.sum()), hit.size) == (metrics["results"][f"{part}_part"]["correct"],
                                              metrics["results"][f"{part}_part"]["total"])
    identity = {"protocol": "open_world", "method": "zsclip", "dataset": "toy", "seed": 1}
    assert predictions.problems(doc, identity, metrics, provenance["inputs"]["test"]["images_sha256"]) == []


def test_a_file_that_disagrees_with_its_metrics_is_refused(open_world):
    config, folder, metrics, provenance = open_world
    doc = predictions.read_predictions(folder / paths.PREDICTIONS)
    identity = {"protocol": "open_world", "method": "zsclip", "dataset": "toy", "seed": 1}
    sha = provenance["inputs"]["test"]["images_sha256"]

    flipped = copy.deepcopy(doc)
    joint = flipped["spaces"]["joint"]
    y, n_classes = joint["labels"][0], len(metrics["results"]["joint"]["per_class"])
    joint["predicted"][0] = (y + 1) % n_classes if joint["predicted"][0] == y else y  # right <-> wrong
    found = predictions.problems(flipped, identity, metrics, sha)
    assert any(p.startswith("joint:") and "correct from the images" in p for p in found), found

    missing = copy.deepcopy(doc)
    del missing["spaces"][next(s for s in missing["spaces"] if s.startswith("ratio/"))]
    assert any("label spaces" in p for p in predictions.problems(missing, identity, metrics, sha))

    assert any("another test list" in p for p in predictions.problems(doc, identity, metrics, "0" * 64))
    assert any("seed" in p for p in predictions.problems(doc, {**identity, "seed": 2}, metrics, sha))


def test_moving_one_detection_score_changes_the_pairs_and_is_refused(open_world):
    config, folder, metrics, provenance = open_world
    doc = predictions.read_predictions(folder / paths.PREDICTIONS)
    identity = {"protocol": "open_world", "method": "zsclip", "dataset": "toy", "seed": 1}
    world = doc["openworld"]
    # A correctly classified base image moved below every novel image loses its won pairs.
    base = next(i for i, (b, c) in enumerate(zip(world["is_base"], world["correct"])) if b and c)
    novel_correct = [d for d, b, c in zip(world["detection"], world["is_base"], world["correct"]) if not b and c]
    assert novel_correct, "the toy open-world split needs a correctly classified novel image"
    world["detection"][base] = min(novel_correct) - 1.0
    found = predictions.problems(doc, identity, metrics, provenance["inputs"]["test"]["images_sha256"])
    assert any("pairs won" in p for p in found), found


def test_unreadable_files_name_themselves(tmp_path):
    with pytest.raises(predictions.PredictionsError, match="missing.*rerun the evaluation"):
        predictions.read_predictions(tmp_path / "nothing.json.gz")
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not gzip")
    with pytest.raises(predictions.PredictionsError, match="broken.json.gz: not a readable"):
        predictions.read_predictions(broken)
    other = tmp_path / "other.json.gz"
    other.write_bytes(gzip.compress(json.dumps({"format": "something"}).encode()))
    with pytest.raises(predictions.PredictionsError, match="not a bmip-predictions/1 document"):
        predictions.read_predictions(other)
