"""Experiment configs: YAML in, validated against the schema, resolved into one dict per run.

A *run* is (training protocol, method, dataset, seed). Its resolved config is everything that
determines its numbers — recipe, method options, backbone, shots, seeds, selection — and is
what provenance records and hashes. Two protocols train models; the other two reuse them
(`TRAINED_BY`).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from bmip.methods import method_names

PACKAGE = Path(__file__).parent
SCHEMA_FILE = PACKAGE / "schemas" / "config.schema.yaml"
RECIPES_FILE = PACKAGE / "recipes.yaml"

# Which trained model each evaluation protocol uses, and which classes that model trains on.
TRAINED_BY = {
    "base2novel": "base2novel",
    "open_world": "base2novel",
    "cross_dataset": "cross_dataset",
    "domain_generalization": "cross_dataset",
}
TRAIN_CLASSES = {"base2novel": "base", "cross_dataset": "all"}
RECIPE_DEFAULTS = {
    "optimizer": "sgd", "lr": 0.002, "weight_decay": 5e-4, "momentum": 0.9, "epochs": 5, "batch_size": 4,
    "warmup_epochs": 0, "warmup_lr": 1e-5, "options": {},
}


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it and says what to do."""


def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_FILE.read_text())


def _apply_defaults(node: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any]) -> None:
    """Fill schema defaults into `node`, recursively (jsonschema validates but never fills)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict):
            _apply_defaults(node[key], sub, defs)


def validate(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate against the schema (naming the offending key) and fill defaults."""
    schema = _schema()
    errors = sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"  {where}: {err.message}")
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(lines))
    config = copy.deepcopy(config)
    _apply_defaults(config, schema, schema.get("$defs", {}))
    unknown = sorted(set(config["methods"]) - set(method_names()))
    if unknown:
        raise ConfigError(f"{source}: methods: unknown method(s) {unknown}; choose from {method_names()}")
    _check_analysis(config, source)
    return config


def check_ablations(config: dict[str, Any], source: str = "config") -> None:
    """Refuse an `ablations:` entry that does not fit the rest of the config (protocols, datasets
    and seeds outside its grid, a variant named like a method, a run name declared twice), naming
    the key. Run after `check_dataset_names`, whose message about a misspelt dataset comes first."""
    from bmip.ablations import AblationError, ablations

    try:
        ablations(config)
    except AblationError as err:
        raise ConfigError(f"{source}: {err}") from None


NO_PROMPT_POSITIONS = ("zsclip", "biastune")  # base methods `bmip analyze` has nothing to intervene on


def _check_analysis(config: dict[str, Any], source: str) -> None:
    """analysis: a subset of the experiment's prompt methods, base-to-novel datasets and seeds."""
    analysis = config["analysis"]
    datasets = config["protocols"].get("base2novel", {}).get("datasets", [])
    for key, chosen, allowed in (("methods", analysis["methods"], config["methods"]),
                                 ("datasets", analysis["datasets"], datasets),
                                 ("seeds", analysis["seeds"], config["seeds"])):
        outside = [v for v in chosen if v not in allowed]
        if outside:
            raise ConfigError(f"{source}: analysis.{key}: {outside} not among the experiment's {allowed}; "
                              "the analysis reads base-to-novel models this experiment trains: choose "
                              f"analysis.{key} among them (analysis.{key}=[] runs no causal checks)")
    unprompted = [m for m in analysis["methods"] if m.split("+", 1)[0] in NO_PROMPT_POSITIONS]
    if unprompted:
        raise ConfigError(f"{source}: analysis.methods: {unprompted} have no prompt positions to intervene on; "
                          "remove them (their mechanism record still comes with every evaluation)")


def dataset_keys(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(config key, dataset name) of every dataset a config names, in config order."""
    out = []
    for protocol, section in config["protocols"].items():
        if "source" in section:
            out.append((f"protocols.{protocol}.source", section["source"]))
        for field in ("datasets", "targets"):
            out += [(f"protocols.{protocol}.{field}[{i}]", name) for i, name in enumerate(section.get(field, []))]
    return out


def check_dataset_names(config: dict[str, Any], source: str = "config") -> None:
    """Refuse, before any job runs, a dataset name that nothing can provide (the workflow's start
    and `bmip check-config`; not `validate`, which also reads finished experiments' configs,
    whose relative `data_root` means nothing from another folder).

    A name is valid when it is a registry dataset (any common spelling), a dataset of the
    configured miniworld (the workflow generates it), or a folder or file under `data_root`. The
    error names each bad key and the nearest valid names.
    """
    import difflib

    from bmip.data.registry import DATASETS, resolve_name

    generated: list[str] = []
    if "miniworld" in config:
        from bmip.miniworld.datasets import DATASETS as MINIWORLD

        generated = list(MINIWORLD)
    root = Path(config["data_root"])
    bad = [(key, name) for key, name in dataset_keys(config)
           if resolve_name(name) is None and name not in generated and not (root / name).exists()]
    if not bad:
        return
    present = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []
    valid = sorted(set(DATASETS) | set(generated) | set(present))
    lines = []
    for key, name in bad:
        near = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(n) for n in near)}?" if near else f"valid names: {', '.join(valid)}"
        lines.append(f"  {key}: {name!r} is not a registry dataset, {'a miniworld dataset, ' if generated else ''}"
                     f"or a folder under data_root {str(root)!r}; {hint}")
    raise ConfigError(f"{source} names datasets that do not exist:\n" + "\n".join(lines))


def parse_override(text: str) -> tuple[list[str], Any]:
    """'recipes.default.bmip.lr=0.001' -> (['recipes','default','bmip','lr'], 0.001)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for text in overrides:
        path, value = parse_override(text)
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a mapping")
        node[path[-1]] = value
    return config


def load_config(path: Path | str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read, override and validate an experiment config file ("-": YAML/JSON on standard input)."""
    if str(path) == "-":
        source, text = "the config on standard input", sys.stdin.read()
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        source, text = str(path), path.read_text()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{source} must hold a mapping of settings")
    return validate(apply_overrides(config, overrides or []), source)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


@functools.lru_cache(maxsize=1)
def _builtin_recipes() -> dict[str, Any]:
    return yaml.safe_load(RECIPES_FILE.read_text())


def recipe(config: dict[str, Any], training: str, method: str, dataset: str | None = None) -> dict[str, Any]:
    """The recipe of a method (or ablation variant) for a training protocol and dataset: built-ins,
    then the config's overrides; for a variant, its ablation's and its own overrides; last, the
    per-dataset values (`recipes.<protocol>.<method>.datasets.<dataset>`) of every layer, the most
    specific setting, as the released CoPrompt and PromptSRC code sets some per dataset."""
    from bmip.ablations import AblationError, variant_of

    try:
        variant = variant_of(config, method)
    except AblationError as err:
        raise ConfigError(str(err)) from None
    base = variant.method if variant is not None else method
    builtin = _builtin_recipes()
    user = config.get("recipes", {})
    resolved = dict(RECIPE_DEFAULTS)
    for layer in (builtin, user):
        resolved = _merge(resolved, layer.get("default", {}).get(base, {}))
        if training != "base2novel":
            resolved = _merge(resolved, layer.get(training, {}).get(base, {}))
    for override in variant.recipe_overrides() if variant is not None else []:
        resolved = _merge(resolved, override)
    per_dataset = resolved.pop("datasets", {})
    if dataset is not None and dataset in per_dataset:
        resolved = _merge(resolved, per_dataset[dataset])
    return resolved


def run_config(config: dict[str, Any], training: str, method: str, dataset: str, seed: int) -> dict[str, Any]:
    """Everything that determines one training run's numbers."""
    if training not in TRAIN_CLASSES:
        raise ConfigError(f"unknown training protocol {training!r}; choose from {sorted(TRAIN_CLASSES)}")
    if method not in method_names() and "@" not in method:
        raise ConfigError(f"unknown method {method!r}; choose from {method_names()}")
    resolved = recipe(config, training, method, dataset)  # a variant's: refuses an undeclared one
    from bmip.ablations import variant_of

    variant = variant_of(config, method)
    torch_seed = seed if config["torch_seed"] is None else config["torch_seed"]
    if variant is not None and variant.torch_seed is not None:
        torch_seed = variant.torch_seed
    return {
        "experiment": config["experiment"],
        "training": training,
        "classes": TRAIN_CLASSES[training],
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "torch_seed": torch_seed,
        "shots": config["shots"],
        "recipe": resolved,
        "selection": config["selection"],
        "backbone": {key: config["backbone"][key] for key in ("model", "pretrained", "quick_gelu")},
    }


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of a (resolved) config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
