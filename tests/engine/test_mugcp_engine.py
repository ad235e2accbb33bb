"""MuGCP in the engine: each batch's captions reach the method in training, validation and the one
pass, whose scores equal a pass per label space; a missing caption is refused naming the image."""
from __future__ import annotations

import json
import pathlib

import pytest

from bmip.captions import MissingCaptionError, captions_path
from bmip.captions.store import content_digest
from bmip.engine import evaluate as evaluate_module
from bmip.engine import paths
from bmip.engine.evaluate import evaluate
from bmip.engine.runtime import fewshot_data
from bmip.engine.train import train
from bmip.io import file_sha256
from bmip.methods.base import PromptMethod
from tests.engine.toy import with_toy_captions


def _config(config: dict, **options) -> dict:
    config = json.loads(json.dumps(config))
    config["methods"] = ["mugcp"]
    config["recipes"]["default"]["mugcp"] = {"epochs": 2, "batch_size": 4, "warmup_epochs": 0,
                                             "options": {"depth": 3, **options}}
    return with_toy_captions(config)


def _metrics(config: dict, out) -> dict:
    evaluate_module._LAST.clear()
    found = {}
    for protocol in ("base2novel", "open_world"):
        folder = evaluate(config, protocol, "mugcp", "toy", 1, out_dir=out / protocol)
        found[protocol] = json.loads((folder / paths.METRICS).read_text())
    return found


def test_mugcp_trains_and_its_one_pass_equals_a_pass_per_label_space(toy_setup, tmp_path, monkeypatch):
    config = _config(toy_setup[0])
    run = train(config, "base2novel", "mugcp", "toy", 1)
    losses = [float(row.split(",")[2]) for row in (run / paths.TRAIN_LOG).read_text().splitlines()[1:]]
    assert len(losses) == 2 and losses[1] < losses[0]
    one_pass = _metrics(config, tmp_path / "one")
    monkeypatch.setattr(PromptMethod, "label_space_independent", property(lambda self: False))
    per_space = _metrics(config, tmp_path / "per_space")
    for protocol, metrics in one_pass.items():
        assert metrics["results"]["base" if protocol == "base2novel" else "joint"] == \
            per_space[protocol]["results"]["base" if protocol == "base2novel" else "joint"]
    assert one_pass["base2novel"]["summary"] == per_space["base2novel"]["summary"]
    # what the runs read is recorded: the captions file with its bytes' sha256, and who wrote them
    file = captions_path(paths.experiment_dir(config), "toy")
    for folder in (run, tmp_path / "one" / "base2novel"):
        read = json.loads((folder / paths.PROVENANCE).read_text())["inputs"]["captions"]
        mine = config["captions"]["file"]
        assert read == {"file": "captions/toy.json", "sha256": file_sha256(file),
                        "captioner": {"name": "file", "model": f"captions file {pathlib.Path(mine).name}",
                                      "revision": f"sha256 {file_sha256(mine)}", "commit": None,
                                      "instruction": "the user's own captions (captions.file)"}}
    assert one_pass["base2novel"]["captioner"] == read["captioner"]


@pytest.mark.parametrize("options", [{"captions": "empty"}, {"amg": False}])
def test_the_ablation_variants_train_and_evaluate(toy_setup, tmp_path, options):
    config = _config(toy_setup[0], **options)
    train(config, "base2novel", "mugcp", "toy", 1)
    assert _metrics(config, tmp_path)["base2novel"]["summary"]["hm"] is not None


def test_a_missing_caption_is_refused_naming_the_image(toy_setup):
    config = _config(toy_setup[0])
    file = captions_path(paths.experiment_dir(config), "toy")
    doc = json.loads(file.read_text())
    missing = fewshot_data(config, "toy", 1)[1][0].path  # a training image's
    del doc["captions"][missing]
    doc["images"] = {"n": len(doc["captions"]),
                     "content_sha256": content_digest({p: e["sha256"] for p, e in doc["captions"].items()})}
    file.write_text(json.dumps(doc))
    with pytest.raises(MissingCaptionError, match=missing):
        train(config, "base2novel", "mugcp", "toy", 1)


def test_the_audit_refuses_numbers_whose_captions_changed_since_the_run_read_them(toy_setup):
    from bmip.audit.findings import Findings
    from bmip.audit.layout import Experiment, Run
    from bmip.audit.runs import check_evaluation, check_training

    config = _config(toy_setup[0], depth=1)
    config["recipes"]["default"]["mugcp"]["epochs"] = 1
    train(config, "base2novel", "mugcp", "toy", 1)
    evaluate_module._LAST.clear()
    evaluated = evaluate(config, "base2novel", "mugcp", "toy", 1)
    exp = Experiment.open(paths.experiment_dir(config))
    training, evaluation = Run("train", "base2novel", "mugcp", "toy", 1), Run("eval", "base2novel", "mugcp", "toy", 1)

    def problems() -> list[str]:
        found = Findings()
        check_evaluation(exp, evaluation, {training: check_training(exp, training, found)}, found)
        exp._hashes.clear()
        return [f"{p.file}: {p.message}" for p in found.problems if "caption" in p.message]

    assert problems() == []
    file = captions_path(paths.experiment_dir(config), "toy")
    doc = json.loads(file.read_text())  # captions rewritten after the runs (another captioner's, say)
    doc["captioner"]["instruction"] = "another instruction"
    file.write_text(json.dumps(doc, sort_keys=True))
    found = problems()
    assert len(found) == 2 and all(line.startswith("captions/toy.json: changed since ") for line in found)
    assert "train/base2novel/mugcp/toy/seed1 read it" in found[0] and "rerun the workflow" in found[0]
    file.unlink()
    assert [line.split(": ", 1)[1] for line in problems()] == [
        "missing: train/base2novel/mugcp/toy/seed1 read these captions",
        "missing: base2novel/mugcp/toy/seed1 read these captions"]
    metrics = json.loads((evaluated / paths.METRICS).read_text())  # the tables' note is written from metrics
    metrics["captioner"]["instruction"] = "edited"
    (evaluated / paths.METRICS).write_text(json.dumps(metrics))
    assert any("`captioner` is not the one of the captions" in line for line in problems())
