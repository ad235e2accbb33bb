"""The method registry: every prompt method by name, what it has, and the factory that builds a model.

Adding a method = one module with a `PromptMethod` subclass and one entry in `METHODS`, which
declares the method's traits next to its class: whether its image tower stays frozen, whether its
evaluations record BMIP's gates and the prompt mechanism, whether `bmip analyze` has prompt
positions to intervene on, whether it takes a regulariser, whether it reads each image's caption.
The workflow, the evaluation, the audit and the analysis ask these functions (`frozen_image_tower`,
`records_gates`, `records_mechanism`, `has_prompt_positions`, `reads_captions`, `method_names`),
never a list of their own. Traits live in the entry, not on the class, so that they are read
without importing torch: the config validation, the workflow's job graph and the audit need them,
and a method's module is imported only when a model is built.

A method of your own, outside the package: its module defines the class and registers it,

    from bmip.methods import register
    register("mean_ctx", MeanContext, frozen_image_tower=True)

and the environment variable `BMIP_METHOD_MODULES` names that module (comma-separated, for
several) for every bmip process, Snakemake's jobs included, which inherit it:

    PYTHONPATH=$PWD BMIP_METHOD_MODULES=my_methods snakemake --cores 2 --configfile my.yaml

(my_methods.py in the current folder; an installed module needs no PYTHONPATH). The registry
imports them when it is first asked. Their source is part of every stage's code fingerprint
(bmip.engine.dependencies): changing it reruns the jobs that run it. The method's recipe
goes under `recipes.default.<name>` of the experiment config, as any method's.

Names (`method_pattern`): a base method is lower case, digits and `_`, starting with a letter.
A name `<base>+<regulariser>` adds a regulariser of `REGULARIZERS` (PromptSRC, CoPrompt) to a base
that takes one. A name `<method>@<variant>` is an ablation variant of a method (`ablations:` of an
experiment config, bmip.ablations): the same module with other options or recipe values, under a
name of its own so that its runs, tables and checkpoints never mix with the method's. The config
schema's `$defs.method` and the workflow's wildcard constraint are this grammar (a test keeps the
schema's copy equal to it).
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

from bmip.methods.errors import MethodConfigError

if TYPE_CHECKING:
    from bmip.backbone import Backbone
    from bmip.methods.base import PromptMethod, Regularizer


def _bmip_records_gates(options: Mapping[str, Any]) -> bool:
    """BMIP writes gates.json where it mixes by a gate (`aggregation` gate or constant_gate; sum,
    mean, attention_pool, joint and exchange have none) in both towers (`directions` both: a
    one-way variant gates one tower only) and has deep blocks to mix in (`depth` > 1); the released
    BITP connectors (`bitp_compat`) have no gate. Defaults: bmip.methods.bmip.BMIPConfig."""
    return (options.get("aggregation", "gate") in ("gate", "constant_gate") and options.get("bitp_compat") is None
            and options.get("directions", "both") == "both" and options.get("depth", 9) > 1)


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: its class and its traits (each read without importing the class)."""

    cls: str | type  # "<module in bmip/methods>.<PromptMethod subclass>", or the class itself
    frozen_image_tower: bool = False  # with its default options its image tower is never prompted:
    # the workflow gives its evaluations the shared frozen image features (bmip.engine.features)
    gates: bool | Callable[[Mapping[str, Any]], bool] = False  # its evaluations record gates.json
    # (bmip.engine.gates); a function of the run's resolved method options where they decide
    mechanism: bool = True  # it learns a prompt term: evaluations record mechanism.json
    prompt_positions: bool = True  # `bmip analyze` has prompt positions to intervene on
    regularizable: bool = False  # it takes a regulariser: <name>+promptsrc, <name>+coprompt
    captions: bool = False  # it reads each image's caption (bmip.captions): its datasets get a captions
    # stage, its jobs read the captions file and the engine gives it each batch's captions


METHODS: dict[str, Method] = {
    "zsclip": Method("zsclip.ZeroShotCLIP", frozen_image_tower=True, mechanism=False, prompt_positions=False),
    "coop": Method("coop.CoOp", frozen_image_tower=True),
    "cocoop": Method("cocoop.CoCoOp", frozen_image_tower=True),
    "vpt": Method("vpt.VPT"),
    "lang": Method("lang.Lang", frozen_image_tower=True),
    "ivlp": Method("ivlp.IVLP", regularizable=True),
    "maple": Method("maple.MaPLe", regularizable=True),
    "bmip": Method("bmip.BMIP", gates=_bmip_records_gates, regularizable=True),
    "biastune": Method("biastune.BiasTune", prompt_positions=False, regularizable=True),
    "hicropl": Method("hicropl.HiCroPL"),
    "mmrl": Method("mmrl.MMRL", prompt_positions=False),  # inserted tokens: no zero-shot words at their positions
    "mugcp": Method("mugcp.MuGCP", captions=True),  # reconstructed from its abstract (docs/mugcp.md)
}
# name -> "<module in bmip/methods>.<Regularizer subclass>"
REGULARIZERS: dict[str, str] = {
    "promptsrc": "promptsrc.PromptSRC",
    "coprompt": "coprompt.CoPrompt",
}
VARIANT_MARK = "@"
NAME = "[a-z][a-z0-9_]*"  # a base method, a regulariser; also an ablation's and a named variant's label
MODULES_VARIABLE = "BMIP_METHOD_MODULES"
_UNREGISTERED = Method("")  # the traits of a name no module registers (results of a method since removed)


def method_pattern(variant: bool = False) -> str:
    """The regular expression of a method name, `<base>` or `<base>+<regulariser>`; with `variant`,
    also `<method>@<label>` (a named variant's label, or a sweep's `<key>=<value>`)."""
    method = rf"{NAME}(?:\+{NAME})?"
    return rf"{method}(?:{VARIANT_MARK}{NAME}(?:=[^/]+)?)?" if variant else method


def register(name: str, cls: type, **traits: Any) -> None:
    """Register a method defined outside the package under `name`, with its traits (the fields of
    `Method`); call it from a module named in BMIP_METHOD_MODULES (see the module docstring)."""
    if not re.fullmatch(NAME, name):
        raise MethodConfigError(f"method name {name!r}: use lower case letters, digits and _, starting with a letter "
                                f"({NAME}); + and {VARIANT_MARK} mark combinations and ablation variants")
    if name in REGULARIZERS:
        raise MethodConfigError(f"method name {name!r} is a regulariser's; choose another")
    if getattr(cls, "name", name) != name:
        raise MethodConfigError(f"method {name!r}: its class {cls.__qualname__} is named {cls.name!r}; "
                                f"set `name = {name!r}` on the class")
    entry = Method(cls, **traits)
    if METHODS.get(name, entry) != entry:
        raise MethodConfigError(f"method {name!r} is registered already ({METHODS[name].cls}); choose another name")
    METHODS[name] = entry


_imported: list[str] = []


def _import_method_modules() -> None:
    """Import the modules BMIP_METHOD_MODULES names, once each (they call `register`)."""
    for module in filter(None, (m.strip() for m in os.environ.get(MODULES_VARIABLE, "").split(","))):
        if module in _imported:
            continue
        _imported.append(module)  # first: a module that asks the registry is not imported again
        try:
            importlib.import_module(module)
        except Exception as err:
            _imported.remove(module)  # asked again, it fails again rather than running without it
            if not isinstance(err, ImportError):
                raise
            raise MethodConfigError(f"{MODULES_VARIABLE} names {module!r}, which cannot be imported ({err}); install "
                                    "it, or put its folder on PYTHONPATH") from err


def _registry() -> dict[str, Method]:
    _import_method_modules()
    return METHODS


def _class(entry: str) -> type:
    module, cls = entry.rsplit(".", 1)
    return getattr(importlib.import_module(f"bmip.methods.{module}"), cls)


def method_class(base: str) -> type["PromptMethod"]:
    """The `PromptMethod` subclass registered under a base name."""
    cls = _registry()[base].cls
    return _class(cls) if isinstance(cls, str) else cls


def regularizer_class(name: str) -> type["Regularizer"]:
    """The `Regularizer` subclass registered under a regulariser name."""
    return _class(REGULARIZERS[name])


def method_names() -> list[str]:
    """Every valid method name, combinations included."""
    registry = _registry()
    bases = [base for base, entry in registry.items() if entry.regularizable]
    return list(registry) + [f"{base}+{reg}" for reg in REGULARIZERS for base in bases]


def method_of(name: str) -> str:
    """The method a (variant) name runs: 'bmip@sum' -> 'bmip', 'bmip' -> 'bmip'."""
    return name.partition(VARIANT_MARK)[0]


def split_name(name: str) -> tuple[str, str | None]:
    """'bmip+promptsrc' -> ('bmip', 'promptsrc'), 'bmip' -> ('bmip', None), 'bmip@sum' -> ('bmip',
    None); raises on unknown names, listing the valid ones."""
    method, mark, variant = name.partition(VARIANT_MARK)
    if method not in method_names() or (mark and not variant):
        raise MethodConfigError(f"unknown method {name!r}; choose one of {method_names()} "
                                f"(an ablation variant is <method>{VARIANT_MARK}<variant>; a method of your own is "
                                f"registered by a module named in {MODULES_VARIABLE}: bmip.methods)")
    base, _, reg = method.partition("+")
    return base, reg or None


def _traits(name: str) -> Method:
    """The entry of the base method a (combination or variant) name runs; a name no module
    registers gets the defaults: a prompt method without gates."""
    return _registry().get(method_of(name).partition("+")[0], _UNREGISTERED)


def frozen_image_tower(name: str) -> bool:
    """True for the methods whose image features are the frozen backbone's (no torch needed)."""
    base, reg = split_name(method_of(name))
    return _registry()[base].frozen_image_tower and reg is None


def records_gates(name: str, options: Mapping[str, Any] | None = None) -> bool:
    """True for the methods whose evaluations write gate statistics (gates.json): BMIP, alone or
    with a regulariser. `options` (a run's resolved method options) decide where they matter, e.g.
    BMIP's aggregation; without them a method counts with its default options, and an ablation
    variant, whose options only its config knows, as recording none."""
    gates = _traits(name).gates
    if not callable(gates):
        return gates
    if options is None and VARIANT_MARK in name:
        return False
    return gates(options or {})


def records_mechanism(name: str) -> bool:
    """True for every prompt method (any base but zero-shot CLIP, with or without a regulariser,
    and their ablation variants): its evaluations write the mechanism record (mechanism.json)."""
    return _traits(name).mechanism


def has_prompt_positions(name: str) -> bool:
    """True for the methods `bmip analyze` can intervene on (not zero-shot CLIP, not bias tuning)."""
    return _traits(name).prompt_positions


def reads_captions(name: str) -> bool:
    """True for the methods that read each image's caption (MuGCP): the workflow's captions stage
    covers their datasets, and the engine gives them each batch's captions (no torch needed)."""
    return _traits(name).captions


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
