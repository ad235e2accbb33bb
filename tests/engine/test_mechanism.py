"""The mechanism record's statistics and what makes a record wrong (real records of the reduced
workflow run are audited in tests/audit/test_audit.py)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from bmip.engine import mechanism
from bmip.methods import build_model
from tests.shared import CLASSNAMES

IDENTITY = {"protocol": "base2novel", "method": "ivlp", "dataset": "toy", "seed": 1}


def test_streamed_moments_and_coherence_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 3))
    moments, coherence = mechanism.Moments(), mechanism.Coherence()
    for chunk in np.array_split(values, 4):
        moments.add(torch.tensor(chunk))
        coherence.add(torch.tensor(chunk).unsqueeze(1))  # 40 vectors of dim 3 under one index
    stats = moments.summary()
    assert [s["mean"] for s in stats] == pytest.approx(values.mean(0).tolist(), abs=1e-12)
    assert [s["std"] for s in stats] == pytest.approx(values.std(0).tolist(), abs=1e-12)
    unit = values / np.linalg.norm(values, axis=1, keepdims=True)
    pairs = [unit[a] @ unit[b] for a, b in itertools.combinations(range(40), 2)]
    assert coherence.summary() == pytest.approx([np.mean(pairs)], abs=1e-12)


def test_per_label_space_sums_equal_those_of_each_space_alone():
    """Each input added to the spaces holding it (one pass) gives every space the statistics of its
    own inputs, as if it had been accumulated alone."""
    rng = np.random.default_rng(1)
    values = torch.tensor(rng.normal(size=(30, 2, 5)))
    groups = torch.tensor(rng.random(size=(30, 3)) < 0.6)
    moments, coherence = mechanism.Moments(), mechanism.Coherence()
    for chunk, member in zip(values.split(7), groups.split(7)):
        moments.add(chunk, member)
        coherence.add(chunk, member)
    for s in range(3):
        alone, alone_c = mechanism.Moments(), mechanism.Coherence()
        alone.add(values[groups[:, s]])
        alone_c.add(values[groups[:, s]])
        assert moments.count(s) == int(groups[:, s].sum())
        got, want = moments.summary(s), alone.summary()
        assert [r["mean"] for r in got] == pytest.approx([r["mean"] for r in want], abs=1e-12)
        assert [r["std"] for r in got] == pytest.approx([r["std"] for r in want], abs=1e-12)
        assert [r["n"] for r in got] == [r["n"] for r in want]
        assert np.allclose(coherence.summary(s), alone_c.summary(), atol=1e-12)
    assert mechanism.Moments().summary() is None


def test_one_pass_over_label_spaces_records_each_space_and_sees_every_image(tiny_backbone):
    """The probe over label spaces: each space's record is that of a pass over its own images and
    classes; a pass that skips an image is refused."""
    from bmip.engine.scoring import label_spaces

    torch.manual_seed(0)
    model = build_model(tiny_backbone, "ivlp", CLASSNAMES, options={"text_depth": 2, "vision_depth": 2}).eval()
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    labels = torch.tensor([0, 2, 1, 3, 0])
    spaces = label_spaces(labels, len(CLASSNAMES), {"base": [0, 1], "novel": [2, 3], "joint": [0, 1, 2, 3]})
    with torch.no_grad(), mechanism.recording(model, spaces=spaces) as record:
        text = model.text_features()
        for part in images.split(2):
            model(part, text)
    alone = {}
    for name, rows, classes in (("base", [0, 2, 4], [0, 1]), ("novel", [1, 3], [2, 3])):
        model.set_classnames([CLASSNAMES[c] for c in classes])
        with torch.no_grad(), mechanism.recording(model) as alone[name]:
            model(images[rows])
    for name in ("base", "novel"):
        for tower in ("vision", "text"):
            got, want = record[name][tower]["blocks"]["1"], alone[name][tower]["blocks"]["1"]
            assert got["n"] == want["n"]
            assert got["lambda"]["over_heads"]["mean"] == pytest.approx(want["lambda"]["over_heads"]["mean"], abs=1e-6)
            assert got["stability"]["per_head"] == pytest.approx(want["stability"]["per_head"], abs=1e-6)
    assert record["joint"]["vision"]["blocks"]["0"]["n"] == 5
    model.set_classnames(CLASSNAMES)
    with pytest.raises(RuntimeError, match="saw 4 of the 5 images"):
        with torch.no_grad(), mechanism.recording(model, spaces=spaces):
            model(images[:4])


def _document(backbone, method: str = "ivlp") -> dict:
    torch.manual_seed(0)
    model = build_model(backbone, method, CLASSNAMES, options={"text_depth": 2, "vision_depth": 2}).eval()
    parts = {}
    for part in ("base", "novel"):
        with torch.no_grad(), mechanism.recording(model) as record:
            model(torch.randn(3, 3, 32, 32))
        parts[part] = record
    return json.loads(json.dumps({"format": mechanism.FORMAT, **IDENTITY, "method": method, "masks": False,
                                  "parts": parts}))


def test_a_real_record_passes_and_each_defect_is_named(tiny_backbone):
    doc = _document(tiny_backbone)
    assert mechanism.problems(doc, IDENTITY) == []
    bad = json.loads(json.dumps(doc))
    del bad["parts"]["base"]["vision"]["blocks"]["11"]
    bad["parts"]["novel"]["text"]["blocks"]["3"]["lambda"]["per_head"].pop()
    bad["parts"]["novel"]["vision"]["blocks"]["0"]["foreground"] = {"method": None}
    found = mechanism.problems(bad, IDENTITY)
    assert any(p.startswith("base/vision: blocks") for p in found)
    assert any(p.startswith("novel/text/3: lambda needs per_head (4)") for p in found)
    assert any(p.startswith("novel/vision/0: foreground recorded without object masks") for p in found)
    masked = json.loads(json.dumps(doc))
    masked["masks"] = True
    assert any("foreground needs method and zsclip" in p for p in mechanism.problems(masked, IDENTITY))
    assert mechanism.problems({"format": "x"}, IDENTITY) == [f"not a {mechanism.FORMAT} document"]
    assert any("label spaces" in p for p in mechanism.problems({**doc, "parts": {"base": doc["parts"]["base"]}}, IDENTITY))


def test_bias_tuning_records_are_checked_against_its_depths(tiny_backbone):
    identity = {**IDENTITY, "method": "biastune"}
    doc = _document(tiny_backbone, "biastune")
    assert mechanism.problems(doc, identity, {"vision": 2, "text": 2}) == []
    assert any("expected ['0', '1', '2']" in p for p in mechanism.problems(doc, identity, {"vision": 3, "text": 2}))


def test_a_vision_record_of_a_frozen_image_tower_is_refused(tiny_backbone):
    doc = _document(tiny_backbone)
    identity = {**IDENTITY, "method": "coop"}
    doc["method"] = "coop"
    assert any(p.startswith("base/vision: coop's image tower is not prompted")
               for p in mechanism.problems(doc, identity))
    for part in doc["parts"].values():
        part["vision"] = None
    assert mechanism.problems(doc, identity) == []


def test_only_prompt_methods_have_a_record():
    assert not mechanism.has_mechanism("zsclip")
    assert all(mechanism.has_mechanism(m) for m in ("coop", "cocoop", "vpt", "biastune", "bmip+promptsrc"))
