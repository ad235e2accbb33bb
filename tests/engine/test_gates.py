"""BMIP's gate statistics: exact running and pooled statistics, and what makes a gate file wrong.
(Gate files written by real evaluations are checked on the reduced workflow run:
tests/workflow/test_figures_and_gates.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bmip.engine import gates


def test_running_statistics_and_pooling_match_numpy():
    rng = np.random.default_rng(0)
    chunks = [rng.uniform(0, 1, size) for size in (7, 1, 30)]
    stats = gates.RunningStats()
    entries = []
    for chunk in chunks:
        stats.add(torch.tensor(chunk))
        one = gates.RunningStats()
        one.add(torch.tensor(chunk))
        entries.append({"n": one.n, "w": one.summary()})
    values = np.concatenate(chunks)
    expected = {"mean": values.mean(), "std": values.std(), "min": values.min(), "max": values.max()}
    assert stats.summary() == pytest.approx(expected, abs=1e-12)
    assert gates.pool(entries) == pytest.approx(expected, abs=1e-12)


def test_gate_problems_name_what_is_wrong():
    entry = {"n": 4, "w": {"mean": 0.5, "std": 0.1, "min": 0.3, "max": 0.7}, "s": None}
    doc = {"format": gates.FORMAT, "protocol": "base2novel", "method": "bmip", "dataset": "toy", "seed": 1,
           "parts": {p: {"vision": {"1": entry, "2": entry}, "text": {"1": entry, "2": entry}} for p in ("base", "novel")}}
    identity = {"protocol": "base2novel", "method": "bmip", "dataset": "toy", "seed": 1}
    assert gates.problems(doc, identity, 3) == []
    compat = json.loads(json.dumps(doc))
    for part in compat["parts"].values():
        del part["text"]["2"]  # the released code's text prompts stop one block early
    assert gates.problems(compat, identity, 3) == []
    bad = json.loads(json.dumps(doc))
    bad["parts"]["base"]["vision"]["2"]["w"]["max"] = 1.0
    del bad["parts"]["novel"]["vision"]["1"]
    bad["seed"] = 2
    found = gates.problems(bad, identity, 3)
    assert any("records seed 2" in p for p in found)
    assert any(p.startswith("base/vision/2: w must lie in (0, 1)") for p in found)
    assert any(p.startswith("novel/vision: blocks ['2'], expected [1, 2]") for p in found)
    assert gates.problems({"format": "x"}, identity, 3) == [f"not a {gates.FORMAT} document"]
    assert gates.has_gates("bmip") and gates.has_gates("bmip+coprompt") and not gates.has_gates("maple+promptsrc")
