"""One pass per trained model and test set: every label space read from one score matrix gives the
metrics (and BMIP's gate statistics, and every prompt method's mechanism record) that scoring each
label space separately gives."""
from __future__ import annotations

import json

import pytest
import torch

from bmip.engine import evaluate as evaluate_module
from bmip.engine import mechanism, paths, predictions
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train
from bmip.methods import method_names, reads_captions
from bmip.methods.base import PromptMethod
from bmip.methods.bmip import BMIP
from tests.engine.toy import with_toy_captions

PROTOCOLS = ("base2novel", "open_world")


def _one_epoch(config: dict, method: str) -> dict:
    """The toy config, every method trained for one epoch on batches of 4."""
    base = method.split("+")[0]
    options = {"depth": 3} if base in ("bmip", "maple") else {}
    config = json.loads(json.dumps(config))
    config["recipes"]["default"][method] = {"epochs": 1, "batch_size": 4, "warmup_epochs": 0, "options": options}
    return with_toy_captions(config) if reads_captions(method) else config  # MuGCP reads each image's caption


def _evaluations(config: dict, method: str, out) -> dict[str, dict]:
    evaluate_module._LAST.clear()
    found = {}
    for protocol in PROTOCOLS:
        folder = evaluate(config, protocol, method, "toy", 1, out_dir=out / protocol)
        found[protocol] = {name: json.loads((folder / name).read_text())
                           for name in (paths.METRICS, paths.GATES, paths.MECHANISM, paths.PROVENANCE)
                           if (folder / name).exists()}
        found[protocol][paths.PREDICTIONS] = predictions.read_predictions(folder / paths.PREDICTIONS)
    return found


def _flat(doc, prefix: str = "") -> dict:
    if isinstance(doc, dict):
        return {k: v for key, value in doc.items() for k, v in _flat(value, f"{prefix}/{key}").items()}
    if isinstance(doc, list):
        return {k: v for i, value in enumerate(doc) for k, v in _flat(value, f"{prefix}/{i}").items()}
    return {prefix: doc}


def _per_label_space(monkeypatch) -> None:
    """Make every method score each label space in its own pass, as before the single pass."""
    monkeypatch.setattr(PromptMethod, "label_space_independent", property(lambda self: False))
    monkeypatch.setattr(BMIP, "label_space_independent", property(lambda self: False))


@pytest.mark.parametrize("method", method_names())
def test_single_pass_metrics_equal_those_of_one_pass_per_label_space(toy_setup, tmp_path, monkeypatch, method):
    config = _one_epoch(toy_setup[0], method)
    train(config, "base2novel", method, "toy", 1)
    single = _evaluations(config, method, tmp_path / "single")
    with monkeypatch.context() as patch:
        _per_label_space(patch)
        separate = _evaluations(config, method, tmp_path / "separate")
    # One pass per label space keeps no joint logits: no OpenworldAUC there, and it says why.
    absent = separate["open_world"][paths.METRICS]["results"].pop("openworld_auc")
    assert absent["value"] is None and "own pass" in absent["absent"]
    assert separate["open_world"][paths.METRICS]["summary"].pop("openworld_auc") is None
    single["open_world"][paths.METRICS]["results"].pop("openworld_auc")
    assert single["open_world"][paths.METRICS]["summary"].pop("openworld_auc") is not None
    # Every image's prediction in every label space, the same on both paths (the per-space pass
    # finds its images' rows by path); only the one pass keeps OpenworldAUC's per-image inputs.
    assert separate["open_world"][paths.PREDICTIONS].pop("openworld") is None
    assert single["open_world"][paths.PREDICTIONS].pop("openworld") is not None
    for protocol in PROTOCOLS:
        assert single[protocol][paths.PREDICTIONS] == separate[protocol][paths.PREDICTIONS], protocol
    for protocol in PROTOCOLS:
        # Identical counts and accuracies in every label space: base, novel, joint, parts, each ratio.
        assert single[protocol][paths.METRICS] == separate[protocol][paths.METRICS], protocol
        # Every evaluation writes both records; a method with nothing of the kind says why.
        assert (single[protocol][paths.GATES]["parts"] is not None) == method.startswith("bmip")
        assert (single[protocol][paths.MECHANISM]["parts"] is not None) == (method != "zsclip")
        if method.startswith("bmip"):
            # The images are batched with other batch-mates on the two paths, and CPU matrix
            # kernels may round a row differently in another batch size: equal to float32 rounding.
            one, other = _flat(single[protocol][paths.GATES]), _flat(separate[protocol][paths.GATES])
            assert one.keys() == other.keys()
            differ = {k: (one[k], other[k]) for k in one
                      if one[k] != (pytest.approx(other[k], rel=1e-6, abs=1e-7) if isinstance(one[k], float) else other[k])}
            assert not differ, differ
        # The mechanism record: each label space's statistics over its own images and classes. The
        # passes batch the inputs differently (and cut the text sequences at another length), so
        # floats agree to float32 rounding; counts, blocks and heads exactly.
        if method != "zsclip":
            one, other = _flat(single[protocol][paths.MECHANISM]), _flat(separate[protocol][paths.MECHANISM])
            assert one.keys() == other.keys()
            exact = {k for k in one if not isinstance(one[k], float)}
            assert {k: one[k] for k in exact} == {k: other[k] for k in exact}
            close = {k: (one[k], other[k]) for k in one.keys() - exact
                     if one[k] != pytest.approx(other[k], rel=1e-4, abs=1e-5)}  # HiCroPL's per-head std: 1.9e-6
            assert not close, close
            towers = [t for part in single[protocol][paths.MECHANISM]["parts"].values() for t, r in part.items() if r]
            frozen = method in ("coop", "cocoop", "lang")
            assert "vision" not in towers if frozen else "vision" in towers  # a frozen image tower is not prompted
    work = {p: single[p][paths.PROVENANCE]["work"] for p in PROTOCOLS}
    n_test = single["open_world"][paths.METRICS]["results"]["joint"]["total"]
    assert work["base2novel"]["single_pass"] and work["open_world"]["single_pass"]
    # base2novel ran the pass (or took the frozen features); open_world reused its score matrix.
    assert work["base2novel"]["image_forwards"] + work["base2novel"]["image_features_reused"] == n_test
    assert work["open_world"] == {**work["open_world"], "image_forwards": 0, "image_features_reused": n_test}
    per_space = separate["open_world"][paths.PROVENANCE]["work"]
    ratios = single["open_world"][paths.METRICS]["results"]["ratio"].values()
    assert per_space["image_forwards"] == n_test + sum(r["total"] for r in ratios)
    assert not per_space["single_pass"]
    if method != "zsclip":  # the record is deterministic: the same bytes on a rerun
        again = tmp_path / "again"
        evaluate_module._LAST.clear()
        for protocol in PROTOCOLS:
            folder = evaluate(config, protocol, method, "toy", 1, out_dir=again / protocol)
            first = tmp_path / "single" / protocol
            assert (folder / paths.MECHANISM).read_bytes() == (first / paths.MECHANISM).read_bytes()
            assert (folder / paths.PREDICTIONS).read_bytes() == (first / paths.PREDICTIONS).read_bytes()


def test_official_compat_bmip_depends_on_batch_mates_and_is_scored_per_label_space(toy_setup, tmp_path, tiny_backbone):
    from bmip.methods import build_model
    from tests.shared import CLASSNAMES

    torch.manual_seed(0)
    model = build_model(tiny_backbone, "bmip", CLASSNAMES, options={"depth": 3, "official_compat": True}).eval()
    assert not model.method.label_space_independent
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        text = model.text_features()
        alone = model(images[:3], text)
        with_others = model(torch.cat([images[:3], images[3:] * 3]), text)[:3]
    assert not torch.allclose(alone, with_others)  # the batch-mean statistic couples the images

    config = _one_epoch(toy_setup[0], "bmip")
    config["recipes"]["default"]["bmip"]["options"] = {"depth": 3, "official_compat": True}
    train(config, "base2novel", "bmip", "toy", 1)
    found = _evaluations(config, "bmip", tmp_path)
    for protocol in PROTOCOLS:
        work = found[protocol][paths.PROVENANCE]["work"]
        metrics = found[protocol][paths.METRICS]["results"]
        scored = [metrics[k]["total"] for k in ("base", "novel", "joint") if k in metrics]
        scored += [r["total"] for r in metrics.get("ratio", {}).values()]
        assert not work["single_pass"] and work["image_forwards"] == sum(scored) and not work["image_features_reused"]
        if protocol == "open_world":  # its joint pass keeps no logits to read OpenworldAUC from
            assert found[protocol][paths.METRICS]["summary"]["openworld_auc"] is None
        # its mechanism record comes from the per-label-space passes, complete
        identity = {"protocol": protocol, "method": "bmip", "dataset": "toy", "seed": 1}
        assert mechanism.problems(found[protocol][paths.MECHANISM], identity) == []


@pytest.mark.parametrize("method", ["ivlp", "coop"])
def test_foreground_share_in_one_pass_equals_that_of_one_pass_per_label_space(tmp_path, monkeypatch, method):
    """On a dataset with object masks, the one pass reads each label space's foreground share (the
    method's and zero-shot CLIP's) from the rows of its images; a frozen image tower (CoOp) is not
    prompted, so it records no vision tower and no share — on either path."""
    import numpy as np
    from PIL import Image

    from bmip.config import validate
    from tests.engine.toy import make_toy_dataset, toy_config

    folder = make_toy_dataset(tmp_path / "data")
    rng = np.random.default_rng(3)
    for image in sorted((folder / "images").rglob("*.png")):
        target = folder / "masks" / image.relative_to(folder / "images")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((32, 32)) < 0.4).astype(np.uint8) * 255).save(target)
    config = _one_epoch(validate(toy_config(tmp_path)), method)
    train(config, "base2novel", method, "toy", 1)
    evaluate_module.ZERO_SHOT_FOREGROUND.clear()
    single = _evaluations(config, method, tmp_path / "single")
    with monkeypatch.context() as patch:
        _per_label_space(patch)
        separate = _evaluations(config, method, tmp_path / "separate")
    for protocol in PROTOCOLS:
        doc = single[protocol][paths.MECHANISM]
        identity = {"protocol": protocol, "method": method, "dataset": "toy", "seed": 1}
        assert doc["masks"] is True and mechanism.problems(doc, identity) == []
        one, other = _flat(doc), _flat(separate[protocol][paths.MECHANISM])
        assert one.keys() == other.keys()
        assert {k: v for k, v in one.items() if not isinstance(v, float)} == \
               {k: v for k, v in other.items() if not isinstance(v, float)}
        close = {k: (one[k], other[k]) for k, v in one.items()
                 if isinstance(v, float) and v != pytest.approx(other[k], rel=1e-4, abs=1e-6)}
        assert not close, close
        vision = [part["vision"] for part in doc["parts"].values()]
        if method == "coop":
            assert vision == [None] * len(vision)
        else:
            shares = [b["foreground"] for v in vision for b in v["blocks"].values()]
            assert all(s["method"]["over_heads"]["n"] > 0 and s["zsclip"]["over_heads"]["n"] > 0 for s in shares)
    if method == "ivlp":
        parts = single["base2novel"][paths.MECHANISM]["parts"]
        base, novel = (parts[p]["vision"]["blocks"]["0"] for p in ("base", "novel"))
        assert base["n"] == 12 and novel["n"] == 8 and base["foreground"] != novel["foreground"]
