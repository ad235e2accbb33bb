"""Ablations: variants of a method run side by side with the experiment's methods.

An experiment config's `ablations:` section declares, per ablation, a method and its variants —
named ones (`variants: {sum: {options: {aggregation: sum}}}`) and/or one sweep over a method
option, a recipe key or `torch_seed` (`sweep: {depth: [1, 2, 3]}`) — with the protocols, datasets
(a subset of each protocol's) and seeds to run them on, and a recipe override for all of them
(`recipe: {epochs: 2}`).

Every variant runs as the method `<method>@<label>`: its label is the variant's name, or
`<key>=<value>` for a sweep value (`bmip@sum`, `bmip@depth=2`, `bmip@torch_seed=48`). That name is
its folder in the results tree (`train/base2novel/bmip@sum/toys/seed1/`), its row in the tables and
the method its checkpoints record; its resolved recipe (the method's, then the ablation's override,
then the variant's) enters its run config and hash like any recipe. A variant is therefore
trained, evaluated, audited, put in the crate and compared exactly like a method. The ablation's
reference (`reference:`, default its first variant) is what every other variant is compared with
(bmip.report.ablations, with the paired differences and seeded bootstrap intervals of
bmip.report.statistics).

This module imports no torch: the config validation and the workflow's DAG build use it.
"""
from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from typing import Any

from bmip.methods import VARIANT_MARK, method_names

# Recipe keys a variant or sweep may set directly (the rest of a sweep's keys are method options).
RECIPE_KEYS = ("optimizer", "lr", "weight_decay", "momentum", "epochs", "batch_size", "warmup_epochs", "warmup_lr", "eps")
DATASET_FIELD = {"base2novel": "datasets", "open_world": "datasets", "cross_dataset": "targets",
                 "domain_generalization": "targets"}


class AblationError(ValueError):
    """An `ablations:` entry is inconsistent with the rest of the config (bmip.config.ConfigError
    re-raises it with the config's name)."""


@dataclass(frozen=True)
class Variant:
    """One variant: its run name, where it is declared, and what it changes."""

    name: str  # <method>@<label>
    ablation: str
    method: str
    label: str
    key: str  # the config key declaring it, for messages: ablations.<a>.variants.<v> / .sweep.<k>[i]
    overrides: tuple[str, ...]  # JSON of the recipe overrides, applied in order
    torch_seed: int | None
    swept: Any = None  # the swept value (sweep variants only)

    def recipe_overrides(self) -> list[dict[str, Any]]:
        return [json.loads(o) for o in self.overrides]


@dataclass(frozen=True)
class Ablation:
    name: str
    method: str
    protocols: tuple[str, ...]
    datasets: dict[str, tuple[str, ...]]  # per protocol
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    reference: str  # run name
    sweep_key: str | None

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]


def _label(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (bool, dict, list)) or value is None else str(value)


def _split(key: str, value: Any) -> tuple[dict[str, Any], int | None]:
    """A sweep value as (recipe override, torch seed)."""
    if key == "torch_seed":
        return {}, value
    if key in RECIPE_KEYS:
        return {key: value}, None
    return {"options": {key: value}}, None


def _check_sweep_value(where: str, key: str, value: Any) -> None:
    """A torch seed or recipe value of a sweep must be one the recipe schema takes (method options
    are checked by building the method: `bmip check-config`)."""
    if key == "torch_seed":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise AblationError(f"{where}: torch_seed {value!r} is not a non-negative integer")
        return
    if key in RECIPE_KEYS:
        from jsonschema import Draft202012Validator

        from bmip.schema import schema

        rule = schema()["$defs"]["recipe"]["properties"][key]
        errors = list(Draft202012Validator(rule).iter_errors(value))
        if errors:
            raise AblationError(f"{where}: {errors[0].message} (recipe key {key!r})")


def _ablation(config: dict[str, Any], name: str, spec: dict[str, Any]) -> Ablation:
    where = f"ablations.{name}"
    method = spec["method"]
    if method not in method_names():
        raise AblationError(f"{where}.method: unknown method {method!r}; choose one of {method_names()}")
    protocols = tuple(spec.get("protocols") or ["base2novel"])
    datasets: dict[str, tuple[str, ...]] = {}
    for i, protocol in enumerate(protocols):
        if protocol not in config["protocols"]:
            raise AblationError(f"{where}.protocols[{i}]: {protocol!r} is not a protocol of this config "
                                f"(protocols: {sorted(config['protocols'])}); add it under protocols: or drop it here")
        own = list(config["protocols"][protocol][DATASET_FIELD[protocol]])
        chosen = spec.get("datasets") or own
        for j, dataset in enumerate(chosen):
            if dataset not in own:
                raise AblationError(f"{where}.datasets[{j}]: {dataset!r} is not among protocols.{protocol}."
                                    f"{DATASET_FIELD[protocol]} {own}; an ablation runs on a subset of them")
        datasets[protocol] = tuple(chosen)
    seeds = tuple(spec.get("seeds") or config["seeds"])
    for i, seed in enumerate(seeds):
        if seed not in config["seeds"]:
            raise AblationError(f"{where}.seeds[{i}]: seed {seed} is not among the config's seeds {config['seeds']} "
                                "(the few-shot splits and the data check cover those); vary torch_seed instead "
                                "for an initialisation sweep")
    common = [json.dumps(spec["recipe"], sort_keys=True)] if spec.get("recipe") else []
    variants = []
    for label, body in (spec.get("variants") or {}).items():
        body = body or {}
        if label in method_names():
            raise AblationError(f"{where}.variants.{label}: a variant's name must not be a method name "
                                f"({label!r} would read as that method); rename the variant")
        override = copy.deepcopy(body.get("recipe") or {})
        if body.get("options"):
            override["options"] = {**override.get("options", {}), **body["options"]}
        overrides = tuple(common + ([json.dumps(override, sort_keys=True)] if override else []))
        variants.append(Variant(f"{method}{VARIANT_MARK}{label}", name, method, label, f"{where}.variants.{label}",
                                overrides, body.get("torch_seed")))
    sweep = spec.get("sweep") or {}
    sweep_key = next(iter(sweep), None)
    for i, value in enumerate(sweep.get(sweep_key, []) if sweep_key else []):
        _check_sweep_value(f"{where}.sweep.{sweep_key}[{i}]", sweep_key, value)
        override, seed = _split(sweep_key, value)
        label = f"{sweep_key}={_label(value)}"
        overrides = tuple(common + ([json.dumps(override, sort_keys=True)] if override else []))
        variants.append(Variant(f"{method}{VARIANT_MARK}{label}", name, method, label, f"{where}.sweep.{sweep_key}[{i}]",
                                overrides, seed, value))
    if not variants:
        raise AblationError(f"{where}: declares no variant; give variants: and/or sweep:")
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AblationError(f"{where}: variant names {duplicates} are declared twice (a named variant and a sweep value?)")
    reference = spec.get("reference") or variants[0].label
    labels = [v.label for v in variants]
    if reference not in labels:
        raise AblationError(f"{where}.reference: {reference!r} is not one of its variants {labels}")
    return Ablation(name, method, protocols, datasets, seeds, tuple(variants),
                    f"{method}{VARIANT_MARK}{reference}", sweep_key)


def _key(config: dict[str, Any]) -> str:
    # Key order kept: variants are listed (tables, figures) in the order the config reaches us in
    # (the workflow hands its jobs the config with sorted keys: there, in name order).
    return json.dumps({k: config.get(k) for k in ("ablations", "protocols", "seeds")}, default=str)


@functools.lru_cache(maxsize=32)
def _parsed(key: str) -> tuple[Ablation, ...]:
    config = json.loads(key)
    out, seen = [], {}
    for name, spec in (config.get("ablations") or {}).items():
        ablation = _ablation(config, name, spec)
        for variant in ablation.variants:
            if variant.name in seen:
                raise AblationError(f"{variant.key}: the run name {variant.name!r} is already declared by "
                                    f"{seen[variant.name]}; every variant needs a name of its own")
            seen[variant.name] = variant.key
        out.append(ablation)
    return tuple(out)


def ablations(config: dict[str, Any]) -> list[Ablation]:
    """The config's ablations, checked against its protocols and seeds (AblationError naming the key)."""
    return list(_parsed(_key(config)))


def variants(config: dict[str, Any]) -> dict[str, Variant]:
    """Every variant of every ablation, by run name."""
    return {v.name: v for a in ablations(config) for v in a.variants}


def ablation_of(config: dict[str, Any], name: str) -> Ablation:
    for ablation in ablations(config):
        if name in ablation.names:
            return ablation
    raise KeyError(name)


def variant_of(config: dict[str, Any], name: str) -> Variant | None:
    """The variant a run name declares, None for a plain method; AblationError for an undeclared
    `<method>@<label>`."""
    if VARIANT_MARK not in name:
        return None
    found = variants(config).get(name)
    if found is None:
        raise AblationError(f"method {name!r} is no variant declared under ablations: "
                            f"(declared: {sorted(variants(config)) or 'none'})")
    return found


def method_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The config a method's runs follow: the experiment's own for a method; for a variant, its
    ablation's protocols (each on the ablation's datasets) and seeds. What `bmip train --all` and
    `bmip evaluate --all` of a variant cover, and what the audit expects of it."""
    variant = variant_of(config, name)
    if variant is None:
        return config
    ablation = ablation_of(config, name)
    out = copy.deepcopy(config)
    out["protocols"] = {}
    for protocol in ablation.protocols:
        spec = copy.deepcopy(config["protocols"][protocol])
        spec[DATASET_FIELD[protocol]] = list(ablation.datasets[protocol])
        out["protocols"][protocol] = spec
    out["seeds"] = list(ablation.seeds)
    return out
