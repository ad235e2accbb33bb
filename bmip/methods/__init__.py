"""The method registry: every prompt method by name, and the factory that builds a model.

Adding a method = one module with a `PromptMethod` subclass and one entry in `METHODS`.
A name `<base>+<regulariser>` adds a regulariser of `REGULARIZERS` (PromptSRC, CoPrompt) to a base
in `REGULARIZED_BASES`. A name `<method>@<variant>` is an ablation variant of a method
(`ablations:` of an experiment config, bmip.ablations): the same module with other options or
recipe values, under a name of its own so that its runs, tables and checkpoints never mix with
the method's.
Names are checked without importing torch or open_clip (the config validation and the light
commands need only them); a method's module is imported when a model is built.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bmip.backbone import Backbone
    from bmip.methods.base import PromptMethod, Regularizer

# name -> "<module in bmip/methods>.<PromptMethod subclass>"
METHODS: dict[str, str] = {
    "zsclip": "zsclip.ZeroShotCLIP",
    "coop": "coop.CoOp",
    "cocoop": "cocoop.CoCoOp",
    "vpt": "vpt.VPT",
    "lang": "lang.Lang",
    "ivlp": "ivlp.IVLP",
    "maple": "maple.MaPLe",
    "bmip": "bmip.BMIP",
    "biastune": "biastune.BiasTune",
}
# name -> "<module in bmip/methods>.<Regularizer subclass>"
REGULARIZERS: dict[str, str] = {
    "promptsrc": "promptsrc.PromptSRC",
    "coprompt": "coprompt.CoPrompt",
}
REGULARIZED_BASES = ("bmip", "maple", "ivlp", "biastune")
# Base methods whose image tower is never prompted (PromptedCLIP.frozen_image_tower with their
# default options): the workflow gives their evaluations the shared frozen image features of
# each test set (bmip.engine.features) without building a model.
FROZEN_IMAGE_TOWER = ("zsclip", "coop", "cocoop", "lang")


class MethodConfigError(ValueError):
    """A method was given an unknown name, an unknown key or an impossible value."""


def _registered(entry: str) -> type:
    module, cls = entry.rsplit(".", 1)
    return getattr(importlib.import_module(f"bmip.methods.{module}"), cls)


def method_class(base: str) -> type["PromptMethod"]:
    """The `PromptMethod` subclass registered under a base name."""
    return _registered(METHODS[base])


def regularizer_class(name: str) -> type["Regularizer"]:
    """The `Regularizer` subclass registered under a regulariser name."""
    return _registered(REGULARIZERS[name])


def method_names() -> list[str]:
    """Every valid method name, combinations included."""
    return list(METHODS) + [f"{base}+{reg}" for reg in REGULARIZERS for base in REGULARIZED_BASES]


VARIANT_MARK = "@"


def method_of(name: str) -> str:
    """The method a (variant) name runs: 'bmip@sum' -> 'bmip', 'bmip' -> 'bmip'."""
    return name.partition(VARIANT_MARK)[0]


def frozen_image_tower(name: str) -> bool:
    """True for the methods whose image features are the frozen backbone's (no torch needed)."""
    base, reg = split_name(method_of(name))
    return base in FROZEN_IMAGE_TOWER and reg is None


def split_name(name: str) -> tuple[str, str | None]:
    """'bmip+promptsrc' -> ('bmip', 'promptsrc'), 'bmip' -> ('bmip', None), 'bmip@sum' -> ('bmip',
    None); raises on unknown names, listing the valid ones."""
    method, mark, variant = name.partition(VARIANT_MARK)
    if method not in method_names() or (mark and not variant):
        raise MethodConfigError(f"unknown method {name!r}; choose one of {method_names()} "
                                f"(an ablation variant is <method>{VARIANT_MARK}<variant>)")
    base, _, reg = method.partition("+")
    return base, reg or None


def build_method(backbone: "Backbone", name: str, options: dict[str, Any] | None = None):
    """(method, regulariser or None, resolved options) for a method name and its options.

    Options of a `<base>+<regulariser>` combination go under the key "<regulariser>" (e.g.
    "promptsrc", "coprompt"); the rest configure the base.
    """
    base, reg = split_name(name)
    options = dict(options or {})
    reg_options = {key: options.pop(key) for key in REGULARIZERS if key in options}
    for key in reg_options:
        if key != reg:
            raise MethodConfigError(f"method {name!r}: option {key!r} is only valid for {base}+{key}")
    from bmip.methods.base import parse_config

    cls = method_class(base)
    method = cls(backbone, parse_config(cls.Config, base, options))
    resolved = dataclasses.asdict(method.config)
    regulariser = None
    if reg is not None:
        reg_cls = regularizer_class(reg)
        reg_config = parse_config(reg_cls.Config, reg, reg_options.get(reg))
        regulariser = reg_cls(backbone, reg_config)
        resolved[reg] = dataclasses.asdict(reg_config)
    return method, regulariser, resolved


def build_model(
    backbone: "Backbone",
    name: str,
    classnames: list[str],
    template: str = "a photo of a {}.",
    options: dict[str, Any] | None = None,
):
    """A `PromptedCLIP` for a method name, class names and the dataset's zero-shot template."""
    from bmip.prompting import PromptedCLIP

    method, regulariser, resolved = build_method(backbone, name, options)
    # The full name, variant included: a checkpoint of `bmip@sum` refuses to load as `bmip@mean`.
    model = PromptedCLIP(backbone, method, classnames, template, regulariser)
    model.method_name, model.method_options = name, resolved
    return model.to(backbone.clip.logit_scale.device)
