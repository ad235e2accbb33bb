"""The method registry: names resolve to their classes, checking names needs no torch, each
method's declared traits are what its model does, and one grammar of names serves the schema and
the workflow."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import bmip.methods as registry
from bmip.ablations import variants
from bmip.schema import SCHEMA_FILE
from bmip.engine import gates
from bmip.methods import (
    METHODS, NAME, REGULARIZERS, MethodConfigError, build_model, frozen_image_tower, has_prompt_positions,
    method_class, method_names, method_pattern, records_gates, records_mechanism, register, split_name,
)
from bmip.methods.bmip import AGGREGATIONS, DIRECTIONS, BMIPConfig
from bmip.methods.coop import CoOp
from tests.shared import CLASSNAMES

REPO = Path(__file__).resolve().parents[2]


def test_every_registered_name_is_its_class_name():
    for name in METHODS:
        assert method_class(name).name == name


def test_unknown_names_are_refused_listing_the_valid_ones():
    assert split_name("maple+promptsrc") == ("maple", "promptsrc")
    assert split_name("bmip+coprompt") == ("bmip", "coprompt") and split_name("bmip") == ("bmip", None)
    for bad in ("bmipp", "coop+promptsrc", "cocoop+coprompt", "bmip+coprompt+promptsrc"):
        with pytest.raises(MethodConfigError, match="choose one of"):
            split_name(bad)


def test_config_validation_and_the_command_line_import_no_torch():
    """Light jobs (splits, tables, audit) and the workflow's DAG build skip a ~6 s torch start-up;
    every trait is read without it."""
    code = ("import sys, bmip.config, bmip.cli, bmip.engine.paths, bmip.methods as m\n"
            "bmip.cli.build_parser()\n"
            "assert 'bmip+promptsrc' in bmip.config.method_names()\n"
            "[(m.frozen_image_tower(n), m.records_gates(n), m.records_mechanism(n), m.has_prompt_positions(n))\n"
            " for n in m.method_names()]\n"
            "heavy = sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules)\n"
            "print(heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    regularizable = [name for name, entry in METHODS.items() if entry.regularizable]
    assert regularizable == ["ivlp", "maple", "bmip", "biastune"]
    assert len(method_names()) == len(METHODS) + len(REGULARIZERS) * len(regularizable)


@pytest.mark.parametrize("name", method_names())
def test_declared_traits_are_what_the_model_does(tiny_backbone, name):
    """A method learns a prompt term (mechanism record) where it has learnable tensors, and has
    prompt positions for `bmip analyze` where it puts prompt tokens into a tower. (Frozen image
    towers: tests/engine/test_features.py.)"""
    method = build_model(tiny_backbone, name, CLASSNAMES).method
    assert records_mechanism(name) == any(p.requires_grad for p in method.parameters())
    assert has_prompt_positions(name) == (method.text_tokens + method.vision_tokens > 0)
    for variant in (f"{name}@a", f"{name}@depth=2"):  # a variant has its method's traits
        assert (records_mechanism(variant), has_prompt_positions(variant)) == \
               (records_mechanism(name), has_prompt_positions(name))


def _gates_recorded(backbone, name, options):
    """The (tower, block)s whose gates a forward pass of the model records."""
    torch.manual_seed(0)
    model = build_model(backbone, name, CLASSNAMES, options=options)
    with gates.recording(model.method) as recorded, torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    return {tower: sorted(blocks) for tower, blocks in recorded.items() if blocks}


BMIP_OPTIONS = [{}, {"depth": 1}, {"depth": 2}, {"official_compat": True}] + \
    [{"aggregation": a} for a in AGGREGATIONS[1:]] + [{"directions": d} for d in DIRECTIONS[1:]]


@pytest.mark.parametrize("options", BMIP_OPTIONS, ids=lambda o: "-".join(map(str, o.values())) or "default")
def test_gates_are_declared_where_a_variant_records_them_in_both_towers(tiny_backbone, options):
    recorded = _gates_recorded(tiny_backbone, "bmip", options)
    resolved = {**vars(BMIPConfig()), **options}
    declared = records_gates("bmip@variant", resolved)
    # gates.json holds both towers (bmip.engine.gates.problems): a one-way variant declares none
    assert declared == (set(recorded) == {"vision", "text"})
    assert records_gates("bmip", resolved) == records_gates("bmip+promptsrc", resolved) == declared


def test_gates_by_name_alone():
    """Without its options a method counts with its defaults; a variant, whose options only its
    config knows, records none (evaluations and the audit decide it from the name alone today)."""
    assert records_gates("bmip") and records_gates("bmip+coprompt") and gates.has_gates("bmip+promptsrc")
    assert not records_gates("maple+promptsrc") and not records_gates("coop@x", {"aggregation": "gate"})
    assert records_gates("bmip@gate", {"aggregation": "gate", "depth": 3})
    assert not records_gates("bmip@sum", {"aggregation": "sum", "depth": 3})
    assert not records_gates("bmip@gate") and not gates.has_gates("bmip@sum")
    assert not records_gates("my_method") and records_mechanism("my_method")  # old results of an unknown method


def _schema():
    return yaml.safe_load(SCHEMA_FILE.read_text())


def test_the_schema_and_the_workflow_use_the_registry_grammar():
    """One grammar of names: the schema (which cannot import Python) holds a copy that must equal
    it; Snakemake's wildcard constraint calls it."""
    schema = _schema()
    assert schema["$defs"]["method"]["pattern"] == f"^{method_pattern()}$"
    assert schema["$defs"]["label"]["pattern"] == f"^{NAME}$"
    assert schema["$defs"]["ablation"]["properties"]["sweep"]["propertyNames"]["pattern"] == f"^{NAME}$"
    assert schema["properties"]["methods"]["$ref"] == "#/$defs/method_list"
    assert schema["properties"]["analysis"]["properties"]["methods"]["$ref"] == "#/$defs/method_list"
    assert schema["$defs"]["ablation"]["properties"]["method"]["$ref"] == "#/$defs/method"
    assert "method=method_pattern()," in (REPO / "workflow" / "rules" / "common.smk").read_text()


def test_every_name_follows_the_grammar():
    for name in method_names():
        assert re.fullmatch(method_pattern(), name), name
    for config in ("config.yaml", "paper.yaml"):
        config = yaml.safe_load((REPO / "config" / config).read_text())
        for variant in variants(config):
            assert re.fullmatch(method_pattern(variant=True), variant), variant
            assert not re.fullmatch(method_pattern(), variant), variant
    for bad in ("Bmip", "foo-v2", "2coop", "bmip+", "bmip+promptsrc+coprompt", "bmip@"):
        assert not re.fullmatch(method_pattern(variant=True), bad), bad
    assert re.fullmatch(method_pattern(), "foo_v2")


class MeanContext(CoOp):
    name = "mean_ctx"


def test_register_adds_a_method_with_its_traits(monkeypatch):
    monkeypatch.setattr(registry, "METHODS", dict(METHODS))
    register("mean_ctx", MeanContext, frozen_image_tower=True, regularizable=True)
    register("mean_ctx", MeanContext, frozen_image_tower=True, regularizable=True)  # a module imported twice
    assert method_class("mean_ctx") is MeanContext and "mean_ctx+coprompt" in method_names()
    assert frozen_image_tower("mean_ctx") and records_mechanism("mean_ctx") and has_prompt_positions("mean_ctx")
    for name, cls, traits, message in (
            ("mean_ctx", MeanContext, {}, "registered already"),
            ("Mean-Ctx", MeanContext, {}, "lower case"),
            ("promptsrc", MeanContext, {}, "a regulariser's"),
            ("other", MeanContext, {}, "set `name = 'other'`"),
    ):
        with pytest.raises(MethodConfigError, match=re.escape(message)):
            register(name, cls, **traits)
    with pytest.raises(TypeError, match="gated"):
        register("mean_ctx", MeanContext, gated=True)  # not a trait: `gates`


def test_a_method_module_that_cannot_be_imported_is_named():
    code = "import bmip.methods as m\nm.method_names()\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "BMIP_METHOD_MODULES": "no_such_module_of_methods"})
    assert done.returncode != 0
    assert "BMIP_METHOD_MODULES names 'no_such_module_of_methods', which cannot be imported" in done.stderr
