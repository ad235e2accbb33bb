"""Each run's recipe and resolved config.

A run's recipe is built in layers, later ones winning: `RECIPE_DEFAULTS`, the built-in recipes
(`recipes.yaml`, beside this module), the config's `recipes:`; for an ablation variant, its
ablation's and its own `recipe:` (`bmip.ablations`); last, the per-dataset values of every layer.
Its resolved config (`run_config`) is everything that determines its numbers, what provenance
records and hashes.
"""
from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any

import yaml

from bmip.ablations import AblationError, variant_of, variants
from bmip.config import ConfigError, did_you_mean, merge
from bmip.grid import TRAIN_CLASSES
from bmip.methods import method_names

RECIPES_FILE = Path(__file__).with_name("recipes.yaml")


RECIPE_DEFAULTS = {
    "optimizer": "sgd", "lr": 0.002, "weight_decay": 5e-4, "momentum": 0.9, "epochs": 5, "batch_size": 4,
    "warmup_epochs": 0, "warmup_lr": 1e-5, "options": {},
}
# Optional keys, absent from the defaults so that no existing run's config (and hash) changes:
# `eps`, Adam's and AdamW's epsilon (bmip.engine.schedule.ADAM_EPS where unset).


@functools.lru_cache(maxsize=1)

def _builtin_recipes() -> dict[str, Any]:
    return yaml.safe_load(RECIPES_FILE.read_text())


def recipe(config: dict[str, Any], training: str, method: str, dataset: str | None = None) -> dict[str, Any]:
    """The recipe of a method (or ablation variant) for a training protocol and dataset: built-ins,
    then the config's overrides; for a variant, its ablation's and its own overrides; last, the
    per-dataset values (`recipes.<protocol>.<method>.datasets.<dataset>`) of every layer, the most
    specific setting, as the released CoPrompt and PromptSRC code sets some per dataset."""
    try:
        variant = variant_of(config, method)
    except AblationError as err:
        try:
            near = difflib.get_close_matches(method, list(variants(config)), n=3, cutoff=0.5)
        except AblationError:  # the ablations themselves are wrong: the message says so
            near = []
        raise ConfigError(f"{err}; did you mean {', '.join(repr(n) for n in near)}?" if near else str(err)) from None
    base = variant.method if variant is not None else method
    builtin = _builtin_recipes()
    user = config.get("recipes", {})
    resolved = dict(RECIPE_DEFAULTS)
    for layer in (builtin, user):
        resolved = merge(resolved, layer.get("default", {}).get(base, {}))
        if training != "base2novel":
            resolved = merge(resolved, layer.get(training, {}).get(base, {}))
    for override in variant.recipe_overrides() if variant is not None else []:
        resolved = merge(resolved, override)
    per_dataset = resolved.pop("datasets", {})
    if dataset is not None and dataset in per_dataset:
        resolved = merge(resolved, per_dataset[dataset])
    return resolved


def selects_best_val(config: dict[str, Any]) -> bool:
    """Whether any run of the config may keep its best validation epoch: the config's `selection:`
    or the recipe (built-in or the config's, per dataset too) of one of its methods, or of one of
    its ablations' methods."""
    if (config.get("selection") or {}).get("mode") == "best_val":
        return True
    methods = set(config.get("methods") or ()) | {v.method for v in variants(config).values()}

    def found(node: Any) -> bool:
        if isinstance(node, dict):
            if isinstance(node.get("selection"), dict) and node["selection"].get("mode") == "best_val":
                return True
            return any(found(value) for value in node.values())
        return False

    layers = (_builtin_recipes(), config.get("recipes", {}))
    return any(found(entry) for layer in layers for section in layer.values() if isinstance(section, dict)
               for method, entry in section.items() if method in methods)


def run_config(config: dict[str, Any], training: str, method: str, dataset: str, seed: int) -> dict[str, Any]:
    """Everything that determines one training run's numbers."""
    if training not in TRAIN_CLASSES:
        raise ConfigError(f"unknown training protocol {training!r}; choose from {sorted(TRAIN_CLASSES)}")
    if method not in method_names() and "@" not in method:
        raise ConfigError(f"unknown method {method!r}; {did_you_mean(method, method_names())}")
    resolved = recipe(config, training, method, dataset)  # a variant's: refuses an undeclared one
    selection = {**config["selection"], **resolved.pop("selection", {})}  # a recipe's own, over the config's
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
        "selection": selection,
        "backbone": {key: config["backbone"][key] for key in ("model", "pretrained", "quick_gelu")},
    }

