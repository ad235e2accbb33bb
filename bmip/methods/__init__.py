"""The method registry: every prompt method by name, and the factory that builds a model.

Adding a method = one module with a `PromptMethod` subclass and one entry in `METHODS`.
A name `<base>+promptsrc` adds PromptSRC regularisation to a base in `PROMPTSRC_BASES`.
Names are checked without importing torch or open_clip (the config validation and the light
commands need only them); a method's module is imported when a model is built.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bmip.backbone import Backbone
    from bmip.methods.base import PromptMethod

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
}
PROMPTSRC_BASES = ("bmip", "maple", "ivlp")
SUFFIX = "+promptsrc"


class MethodConfigError(ValueError):
    """A method was given an unknown name, an unknown key or an impossible value."""


def method_class(base: str) -> type["PromptMethod"]:
    """The `PromptMethod` subclass registered under a base name."""
    module, cls = METHODS[base].rsplit(".", 1)
    return getattr(importlib.import_module(f"bmip.methods.{module}"), cls)


def method_names() -> list[str]:
    """Every valid method name, combinations included."""
    return list(METHODS) + [base + SUFFIX for base in PROMPTSRC_BASES]


def split_name(name: str) -> tuple[str, bool]:
    """'bmip+promptsrc' -> ('bmip', True); raises on unknown names, listing the valid ones."""
    base, regularised = (name[: -len(SUFFIX)], True) if name.endswith(SUFFIX) else (name, False)
    if base not in METHODS or (regularised and base not in PROMPTSRC_BASES):
        raise MethodConfigError(f"unknown method {name!r}; choose one of {method_names()}")
    return base, regularised


def build_method(backbone: "Backbone", name: str, options: dict[str, Any] | None = None):
    """(method, regulariser or None, resolved options) for a method name and its options.

    Options of a `+promptsrc` combination go under the key "promptsrc"; the rest configure the base.
    """
    base, regularised = split_name(name)
    options = dict(options or {})
    src_options = options.pop("promptsrc", None)
    if src_options is not None and not regularised:
        raise MethodConfigError(f"method {name!r}: option 'promptsrc' is only valid for {name}+promptsrc")
    from bmip.methods.base import parse_config

    cls = method_class(base)
    method = cls(backbone, parse_config(cls.Config, base, options))
    resolved = dataclasses.asdict(method.config)
    regulariser = None
    if regularised:
        from bmip.methods.promptsrc import PromptSRC

        src_config = parse_config(PromptSRC.Config, "promptsrc", src_options)
        regulariser = PromptSRC(src_config)
        resolved["promptsrc"] = dataclasses.asdict(src_config)
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
    model = PromptedCLIP(backbone, method, classnames, template, regulariser)
    model.method_name, model.method_options = name, resolved
    return model.to(backbone.clip.logit_scale.device)
