"""Which evaluations write gates.json, decided on the run's recipe options: the ablation variants
of BMIP that gate (bmip@gate, bmip@constant_gate, bmip@scaled_gate) do, those that do not
(bmip@sum, a one-way variant, depth 1) write none; the evaluation, the audit and the workflow ask
the same question (bmip.engine.gates.has_gates)."""
from __future__ import annotations

import copy

import pytest

from bmip.ablations import ablations
from bmip.config import validate
from bmip.engine.gates import has_gates
from bmip.recipes import recipe
from tests.workflow.reduced import REPO

BASE = {
    "experiment": "gates", "data_root": "data", "backbone": {"model": "test-vit-tiny", "pretrained": "none"},
    "seeds": [1], "methods": ["bmip"], "protocols": {"base2novel": {"datasets": ["toy"]}},
    "recipes": {"default": {"bmip": {"options": {"depth": 3}}}},
    "ablations": {"mixing": {"method": "bmip", "variants": {
        "gate": {}, "constant_gate": {"options": {"aggregation": "constant_gate"}},
        "scaled_gate": {"options": {"gate_statistic": "scaled"}}, "sum": {"options": {"aggregation": "sum"}},
        "text_to_vision": {"options": {"directions": "text_to_vision"}}}},
        "depth": {"method": "bmip", "sweep": {"depth": [1, 2]}}},
}


def _gated(config: dict) -> dict[str, bool]:
    """Per variant, whether its run on the ablation's first base-to-novel dataset has gates."""
    return {v: has_gates(v, recipe(config, "base2novel", v, a.datasets["base2novel"][0])["options"])
            for a in ablations(config) if "base2novel" in a.datasets for v in a.names}


def test_a_variant_has_gates_where_its_options_gate():
    assert _gated(validate(copy.deepcopy(BASE))) == {
        "bmip@gate": True, "bmip@constant_gate": True, "bmip@scaled_gate": True, "bmip@sum": False,
        "bmip@text_to_vision": False, "bmip@depth=1": False, "bmip@depth=2": True}


@pytest.mark.parametrize("name, options, gated", [
    ("bmip@gate", {}, True),  # the recipe of a variant that changes nothing: BMIP's options
    ("bmip@scaled_gate", {"gate_statistic": "scaled"}, True),
    ("bmip@sum", {"aggregation": "sum"}, False),
    ("bmip+promptsrc@gate", {"promptsrc": {}}, True),
    ("bmip@bitp_joint", {"bitp_compat": "joint"}, False),
    ("maple@n_ctx=1", {"n_ctx": 1}, False),
])
def test_has_gates_reads_a_variant_options(name, options, gated):
    assert has_gates(name, options) is gated


def test_without_its_options_a_variant_counts_as_recording_none():
    """Why every caller passes the run's options: the variant mark alone says nothing of them."""
    assert has_gates("bmip") and not has_gates("bmip@gate")


@pytest.mark.parametrize("config", ["config/config.yaml", "config/paper.yaml"])
def test_the_shipped_mixing_ablations_gate_where_they_should(config):
    from bmip.config import load_config

    loaded = load_config(REPO / config)
    gated = _gated(loaded)
    assert gated["bmip@gate"] and gated["bmip@constant_gate"] and gated["bmip@scaled_gate"]
    assert not gated["bmip@sum"] and not gated["bmip@text_to_vision"]


def test_a_constant_gate_records_one_value_per_input_and_slot(tiny_backbone):
    """bmip@constant_gate now writes gates.json: its w (sigmoid(b_k)) is recorded per input and
    slot like the gate's, so its statistics pool over the same images (spread exactly 0)."""
    import torch

    from bmip.engine import gates
    from bmip.methods import build_model
    from tests.shared import CLASSNAMES

    model = build_model(tiny_backbone, "bmip", CLASSNAMES, options={"aggregation": "constant_gate", "depth": 3})
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with gates.recording(model.method) as recorded, torch.no_grad():
        model(images)
    for tower, n in (("vision", 5), ("text", len(CLASSNAMES))):
        assert sorted(recorded[tower]) == ["1", "2"]
        for entry in recorded[tower].values():
            assert entry["n"] == n * model.method.config.n_ctx  # one per input and prompt slot
            assert entry["w"]["std"] == 0 and entry["w"]["min"] == entry["w"]["max"] and entry["s"] is None
