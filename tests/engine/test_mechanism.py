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


def test_only_prompt_methods_have_a_record():
    assert not mechanism.has_mechanism("zsclip")
    assert all(mechanism.has_mechanism(m) for m in ("coop", "cocoop", "vpt", "biastune", "bmip+promptsrc"))
