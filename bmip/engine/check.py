"""Check, before any job runs, that every method's recipe builds on the config's backbone, and
that the device and precision the config asks for run here.

The schema catches misspelt keys and wrong types; what it cannot know is whether a method's
options fit the model (a prompt depth beyond the tower's blocks, an unknown method option, a
backbone that is not an open_clip ViT CLIP). Each (training protocol, method) recipe is built
here on the backbone's architecture with random weights — no download, no pretraining — by the
same constructors training uses, so a bad recipe fails in seconds, not after data preparation.
"""
from __future__ import annotations

from typing import Any

from bmip.config import ConfigError
from bmip.recipes import recipe
from bmip.engine.paths import trainings


def recipe_keys(training: str, method: str) -> str:
    """Where a training protocol's recipe for `method` comes from in a config."""
    keys = [f"recipes.default.{method}.options"]
    if training != "base2novel":
        keys.append(f"recipes.{training}.{method}.options")
    return " + ".join(keys)


def check_recipes(config: dict[str, Any]) -> int:
    """Build every (training protocol, method) of a validated config; returns how many were built.
    Raises ConfigError listing every recipe that does not build, with the config keys to fix."""
    from bmip.backbone import BackboneError, load_backbone
    from bmip.methods import build_method

    spec = config["backbone"]
    try:
        backbone = load_backbone(spec["model"], "none", quick_gelu=spec.get("quick_gelu"))
    except BackboneError as err:
        raise ConfigError(f"backbone.model: {err}") from None
    problems, built = [], 0
    seen = set()
    for training, dataset in trainings(config):
        for method in config["methods"]:
            options = recipe(config, training, method, dataset)["options"]
            if (training, method, repr(options)) in seen:  # per-dataset overrides: each distinct set once
                continue
            seen.add((training, method, repr(options)))
            try:
                build_method(backbone, method, options)
                built += 1
            except (TypeError, ValueError) as err:  # MethodConfigError is a ValueError
                keys = recipe_keys(training, method)
                if options != recipe(config, training, method)["options"]:
                    keys += " + " + recipe_keys(training, method).replace(".options", f".datasets.{dataset}.options")
                problems.append(f"{keys} ({training} training on {spec['model']}): {err}")
    problems += _check_variants(config, backbone, spec["model"])
    if problems:
        raise ConfigError("method recipes that do not fit the backbone:\n  " + "\n  ".join(problems))
    return built


def _check_variants(config: dict[str, Any], backbone: Any, model: str) -> list[str]:
    """Build every ablation variant for each training protocol it runs under; a problem names the
    variant's config key (an unknown option or option value, a sweep value the backbone cannot take)."""
    from bmip.ablations import ablations, method_config
    from bmip.methods import build_method

    problems = []
    for ablation in ablations(config):
        for variant in ablation.variants:
            for training in dict.fromkeys(t for t, _ in trainings(method_config(config, variant.name))):
                try:
                    build_method(backbone, variant.name, recipe(config, training, variant.name)["options"])
                except (TypeError, ValueError) as err:
                    value = "" if variant.swept is None else f" = {variant.swept!r}"
                    problems.append(f"{variant.key}{value} (variant {variant.name}, {training} training on {model}): {err}")
    return problems


def check_compute(config: dict[str, Any]) -> str:
    """The device and precision runs of `config` compute with on this machine, e.g. "cuda in bf16".
    Raises ConfigError when the config asks for a GPU that is not usable here (`device: cuda` or
    `cuda:N`) or a precision the device cannot run; the workflow runs this check where its train
    jobs run (with their GPU), so that it fails in seconds, not after hours in a queue."""
    from bmip.engine.runtime import compute_setup

    device, precision = compute_setup(config)
    return f"{device} in {precision}"
