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


def run_config(config: dict[str, Any], training: str, method: str, dataset: str, seed: int) -> dict[str, Any]:
    """Everything that determines one training run's numbers."""
    if training not in TRAIN_CLASSES:
        raise ConfigError(f"unknown training protocol {training!r}; choose from {sorted(TRAIN_CLASSES)}")
    if method not in method_names() and "@" not in method:
        raise ConfigError(f"unknown method {method!r}; {did_you_mean(method, method_names())}")
    resolved = recipe(config, training, method, dataset)  # a variant's: refuses an undeclared one
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

