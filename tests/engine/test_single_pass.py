"""One pass per trained model and test set: every label space read from one score matrix gives the
metrics (and BMIP's gate statistics) that scoring each label space separately gives."""
from __future__ import annotations

import json

import pytest
import torch

from bmip.engine import evaluate as evaluate_module
from bmip.engine import paths
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train
from bmip.methods import method_names
from bmip.methods.base import PromptMethod
from bmip.methods.bmip import BMIP

PROTOCOLS = ("base2novel", "open_world")


def _one_epoch(config: dict, method: str) -> dict:
    """The toy config, every method trained for one epoch on batches of 4."""
    base = method.split("+")[0]
    options = {"depth": 3} if base in ("bmip", "maple") else {}
    config = json.loads(json.dumps(config))
    config["recipes"]["default"][method] = {"epochs": 1, "batch_size": 4, "warmup_epochs": 0, "options": options}
    return config


def _evaluations(config: dict, method: str, out) -> dict[str, dict]:
    evaluate_module._LAST.clear()
    found = {}
    for protocol in PROTOCOLS:
        folder = evaluate(config, protocol, method, "toy", 1, out_dir=out / protocol)
        found[protocol] = {name: json.loads((folder / name).read_text())
                           for name in (paths.METRICS, paths.GATES, paths.PROVENANCE) if (folder / name).exists()}
    return found


def _flat(doc, prefix: str = "") -> dict:
    if isinstance(doc, dict):
        return {k: v for key, value in doc.items() for k, v in _flat(value, f"{prefix}/{key}").items()}
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
    for protocol in PROTOCOLS:
        # Identical counts and accuracies in every label space: base, novel, joint, parts, each ratio.
        assert single[protocol][paths.METRICS] == separate[protocol][paths.METRICS], protocol
        assert (paths.GATES in single[protocol]) == method.startswith("bmip")
        if paths.GATES in single[protocol]:
            one, other = _flat(single[protocol][paths.GATES]), _flat(separate[protocol][paths.GATES])
            assert one.keys() == other.keys()
            differ = {k: (one[k], other[k]) for k in one if one[k] != other[k]}
            assert not differ, differ
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
