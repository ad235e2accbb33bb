"""Training and evaluation end to end on the toy dataset: determinism, outputs, protocols."""
import json

import pytest

from bmip.engine import mechanism, paths
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train


def _run(config, out_root, method="bmip"):
    train_out = train(config, "base2novel", method, "toy", 1, out_root / "train")
    ev = evaluate(config, "base2novel", method, "toy", 1, train_out / paths.PROMPTS, out_root / "eval")
    return train_out, ev


def test_same_config_and_seed_give_identical_metrics(toy_setup, tmp_path):
    config, _ = toy_setup
    t1, e1 = _run(config, tmp_path / "a")
    t2, e2 = _run(config, tmp_path / "b")
    assert (e1 / paths.METRICS).read_bytes() == (e2 / paths.METRICS).read_bytes()
    assert (t1 / paths.PROMPTS).read_bytes() == (t2 / paths.PROMPTS).read_bytes()
    assert (e1 / paths.MECHANISM).read_bytes() == (e2 / paths.MECHANISM).read_bytes()  # hooks are deterministic
    record = json.loads((e1 / paths.MECHANISM).read_text())
    identity = {"protocol": "base2novel", "method": "bmip", "dataset": "toy", "seed": 1}
    assert mechanism.problems(record, identity) == [] and record["masks"] is False
    metrics = json.loads((e1 / paths.METRICS).read_text())
    assert set(metrics["summary"]) == {"base", "novel", "hm"}
    assert metrics["results"]["base"]["label_space"] == ["red colour", "green colour", "blue colour"]
    assert metrics["results"]["novel"]["label_space"] == ["yellow colour", "purple colour"]
    assert metrics["results"]["base"]["total"] == 12 and metrics["results"]["novel"]["total"] == 8
    log = (t1 / paths.TRAIN_LOG).read_text().splitlines()
    assert log[0] == "epoch,lr,loss,train_accuracy,val_accuracy" and len(log) == 4
    assert (t1 / paths.TRAIN_LOG).read_bytes() == (t2 / paths.TRAIN_LOG).read_bytes()  # no timing in a result
    assert len(json.loads((t1 / paths.PROVENANCE).read_text())["time"]["epoch_seconds"]) == 3
    assert not (t1 / paths.STATE).exists()


def test_open_world_and_cross_dataset_metrics(toy_setup, tmp_path):
    config, _ = toy_setup
    out = train(config, "base2novel", "zsclip", "toy", 1)
    assert out == paths.train_dir(config, "base2novel", "zsclip", "toy", 1)
    ow = json.loads((evaluate(config, "open_world", "zsclip", "toy", 1) / paths.METRICS).read_text())
    joint = ow["results"]["joint"]
    assert joint["total"] == 20 and len(joint["label_space"]) == 5
    assert ow["results"]["base_part"]["total"] == 12 and ow["results"]["novel_part"]["total"] == 8
    parts = ow["results"]["base_part"]["correct"] + ow["results"]["novel_part"]["correct"]
    assert parts == joint["correct"]
    sweep = ow["results"]["ratio"]
    assert set(sweep) == {"100", "50", "0"}
    assert all(len(r["label_space"]) == 3 for r in sweep.values())  # always m = ceil(5/2) classes
    assert sweep["100"]["label_space"] != sweep["0"]["label_space"]
    train(config, "cross_dataset", "zsclip", "toy", 1)
    xd = json.loads((evaluate(config, "cross_dataset", "zsclip", "toy", 1) / paths.METRICS).read_text())
    assert xd["trained_on"] == "toy" and xd["results"]["all"]["total"] == 20
    assert xd["summary"]["accuracy"] == pytest.approx(100 * xd["results"]["all"]["correct"] / 20)


def test_coprompt_trains_on_two_views_and_records_its_description_fallback(toy_setup, tmp_path, monkeypatch, caplog):
    """The loader gives CoPrompt a second, independently augmented view of every image (and only
    CoPrompt); the toy dataset has no description file, and the fallback is logged and recorded."""
    import torch
    from safetensors.torch import load_file

    from bmip.config import apply_overrides, validate
    from bmip.prompting import PromptedCLIP

    seen: dict[str, list] = {}
    real_loss = PromptedCLIP.loss

    def spy(model, images, labels, views=()):
        seen.setdefault(model.method_name, []).append((images, list(views)))
        return real_loss(model, images, labels, views)

    monkeypatch.setattr(PromptedCLIP, "loss", spy)
    config, _ = toy_setup
    config = validate(apply_overrides(config, ["recipes.default.bmip+coprompt.epochs=1",
                                               "recipes.default.bmip+coprompt.options.depth=3",
                                               "recipes.default.bmip.epochs=1"]))
    with caplog.at_level("WARNING"):
        train_out, ev = _run(config, tmp_path, "bmip+coprompt")
    assert "dataset 'toy' has no class-description file: falling back to its prompt template" in caplog.text
    record = json.loads((train_out / paths.PROVENANCE).read_text())["inputs"]["coprompt"]["descriptions"]
    assert record["origin"] == "template" and record["template"] == "a photo of a {}." and "'toy'" in record["reason"]
    for images, views in seen["bmip+coprompt"]:
        assert len(views) == 1 and views[0].shape == images.shape and not torch.equal(views[0], images)
    assert {k.split(".")[0] for k in load_file(str(train_out / paths.PROMPTS))} >= {"coprompt"}
    assert json.loads((ev / paths.METRICS).read_text())["summary"]["hm"] is not None
    # the descriptions serve CoPrompt's training loss only: its evaluation neither reads nor records them
    assert "coprompt" not in json.loads((ev / paths.PROVENANCE).read_text())["inputs"]
    _run(config, tmp_path / "plain", "bmip")
    assert all(views == [] for _, views in seen["bmip"])
