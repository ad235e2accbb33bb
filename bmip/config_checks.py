"""The checks a config gets before any job runs (the workflow's start, `bmip check-config`),
beyond the schema and what needs no file (`bmip.config.validate`): dataset names against the data
root, class counts, the dataset names of per-dataset recipes, and the ablations (`bmip.ablations`).
One ConfigError lists every problem; recipes a config never uses are logged as warnings.
"""
from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

from bmip.ablations import AblationError, ablations, method_config
from bmip.config import ConfigError, did_you_mean, own_problems, refuse, schema_checked
from bmip.data.loader import dataset_root
from bmip.grid import dataset_keys, trainings

log = logging.getLogger(__name__)


def _generated_datasets(config: dict[str, Any]) -> list[str]:
    """The datasets the configured miniworld generates (the workflow makes them)."""
    if "miniworld" not in config:
        return []
    from bmip.miniworld.datasets import DATASETS as MINIWORLD

    return list(MINIWORLD)


def _is_dataset(config: dict[str, Any], name: str) -> bool:
    """A registry dataset (any common spelling), a miniworld dataset, or a folder or file under data_root."""
    from bmip.data.registry import resolve_name

    return (resolve_name(name) is not None or name in _generated_datasets(config)
            or (dataset_root(config, name) / name).exists())


def _valid_dataset_names(config: dict[str, Any]) -> list[str]:
    from bmip.data.registry import DATASETS

    root = Path(config["data_root"])
    present = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []
    return sorted(set(DATASETS) | set(_generated_datasets(config)) | set(present))


def _dataset_problems(config: dict[str, Any]) -> list[str]:
    from bmip.data.registry import resolve_name

    # Another spelling of a registry dataset (OxfordPets): its jobs file their records and results
    # under the registry's name, so the workflow, which files them under the config's, would not
    # find them.
    aliases = [f"{key}: {name!r} is the registry dataset {resolve_name(name)!r}; write {resolve_name(name)!r} "
               "(records and results are filed under that name)"
               for key, name in dataset_keys(config)
               if resolve_name(name) not in (None, name)]
    bad = [(key, name) for key, name in dataset_keys(config) if not _is_dataset(config, name)]
    generated, valid = _generated_datasets(config), _valid_dataset_names(config)
    root = str(Path(config["data_root"]))
    return aliases + [f"{key}: {name!r} is not a registry dataset, {'a miniworld dataset, ' if generated else ''}"
                      f"or a folder under data_root {root!r}; "
                      + did_you_mean(name, valid) for key, name in bad]


def _folder_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) of `datasets:`, the folders of datasets kept outside data_root: each must
    exist and be named as under data_root (bmip reads `<its parent>/<that name>`); one the config
    does not read is a note."""
    from bmip.data.registry import DATASETS, resolve_name

    used = {name for _, name in dataset_keys(config)}
    problems, notes = [], []
    for name, folder in (config.get("datasets") or {}).items():
        path, key = Path(folder).expanduser(), resolve_name(name)
        expected = DATASETS[key].dataset_dir if key is not None else name
        if not path.exists():
            problems.append(f"datasets.{name}: {folder} does not exist; give the folder that holds the dataset")
        elif path.name != expected:
            what = "CoOp's folder name for" if key is not None else "the name of"
            problems.append(f"datasets.{name}: the folder must be named {expected!r} ({what} {name}), not "
                            f"{path.name!r}: link it under that name (`ln -s {path} <a folder of yours>/{expected}`) "
                            "and give the link")
        if name not in used:
            notes.append(f"datasets.{name}: no run of this config reads {name!r}")
    return problems, notes


def check_dataset_names(config: dict[str, Any], source: str = "config") -> None:
    """Refuse, before any job runs, a dataset name that nothing can provide (the workflow's start
    and `bmip check-config`; not `validate`, which also reads finished experiments' configs,
    whose relative `data_root` means nothing from another folder).

    A name is valid when it is a registry dataset (any common spelling), a dataset of the
    configured miniworld (the workflow generates it), or a folder or file under `data_root`. The
    error names each bad key and the nearest valid names.
    """
    problems = _dataset_problems(config)
    if problems:
        raise ConfigError(f"{source} names datasets that do not exist:\n" + "\n".join(f"  {p}" for p in problems))


def _trained_datasets(config: dict[str, Any], training: str | None = None) -> list[str]:
    """The datasets a config trains models on (under one training protocol, or any)."""


    return list(dict.fromkeys(d for t, d in trainings(config) if training in (None, t)))


def _per_dataset_problems(config: dict[str, Any], key: str, recipe_: dict[str, Any],
                          trained: list[str]) -> tuple[list[str], list[str]]:
    """(problems, notes) of the names under a recipe's `datasets:`. Recipes are found by the
    config's spelling of a dataset: another spelling, or a name that is no dataset, would never
    apply; a dataset this config does not train on is a note (unused)."""
    from bmip.data.registry import resolve_name

    problems, notes = [], []
    for name in (recipe_ or {}).get("datasets") or {}:
        where = f"{key}.datasets.{name}"
        if name in trained:
            continue
        same = [t for t in trained if resolve_name(name) is not None and resolve_name(t) == resolve_name(name)]
        if same:
            problems.append(f"{where}: this config spells the dataset {same[0]!r}, and per-dataset recipes are "
                            f"found by that spelling: rename the key to {same[0]!r}")
        elif _is_dataset(config, name):
            notes.append(f"{where}: no model of this config trains on {name!r} (models train on "
                         f"{', '.join(trained) or 'no dataset'} here): its recipe values are unused")
        else:
            problems.append(f"{where}: {name!r} is no dataset (the models train on {', '.join(trained) or 'none'}), "
                            f"so these values would never be used; "
                            f"{did_you_mean(name, [*trained, *_valid_dataset_names(config)])}")
    return problems, notes


def _recipe_dataset_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) of `recipes.<protocol>.<method>.datasets.<name>` for every name."""
    problems, notes = [], []
    for level, recipes in (config.get("recipes") or {}).items():
        trained = _trained_datasets(config, None if level == "default" else level)
        for method, body in recipes.items():
            more, more_notes = _per_dataset_problems(config, f"recipes.{level}.{method}", body, trained)
            problems += more
            notes += more_notes
    return problems, notes


def _ablation_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) of `ablations:`: the first problem of each ablation (a misspelt reference
    with the nearest variant names), a run name two ablations declare, and the dataset names of
    their recipes."""


    problems, notes = [], []
    for name, spec in (config.get("ablations") or {}).items():
        try:
            ablations({**config, "ablations": {name: spec}})
        except AblationError as err:
            problems.append(_with_nearest_reference(config, name, spec, str(err)))
    if problems:
        return problems, notes
    try:
        parsed = ablations(config)
    except AblationError as err:
        return [str(err)], notes
    for ablation in parsed:
        trained = _trained_datasets(method_config(config, ablation.variants[0].name))
        spec = config["ablations"][ablation.name]
        bodies = [(f"ablations.{ablation.name}.recipe", spec.get("recipe"))]
        bodies += [(f"ablations.{ablation.name}.variants.{label}.recipe", (body or {}).get("recipe"))
                   for label, body in (spec.get("variants") or {}).items()]
        for key, body in bodies:
            more, more_notes = _per_dataset_problems(config, key, body, trained)
            problems += more
            notes += more_notes
    return problems, notes


def _with_nearest_reference(config: dict[str, Any], name: str, spec: dict[str, Any], message: str) -> str:
    """An ablation's misspelt `reference:` message, with the nearest variant names added."""


    if not message.startswith(f"ablations.{name}.reference:"):
        return message
    try:
        (ablation,) = ablations({**config, "ablations": {name: {k: v for k, v in spec.items() if k != "reference"}}})
    except AblationError:
        return message
    labels = [v.label for v in ablation.variants]
    near = difflib.get_close_matches(str(spec["reference"]), labels, n=3, cutoff=0.5)
    return f"{message}; did you mean {', '.join(repr(n) for n in near)}?" if near else message


def check_ablations(config: dict[str, Any], source: str = "config") -> None:
    """Refuse an `ablations:` entry that does not fit the rest of the config (protocols, datasets
    and seeds outside its grid, a variant named like a method, a run name declared twice, a
    misspelt reference or per-dataset recipe name), naming the key."""
    refuse(source, _ablation_problems(config)[0])


def check_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Every check a config gets before any job runs (the workflow's start, `bmip check-config`):
    the schema, then — listed together in one ConfigError — unknown methods, recipes named after
    no method or dataset, the analysis subset, dataset names nothing provides, and the ablations.
    Recipes this config never uses (a method or dataset outside its grid) are logged as warnings.
    Takes a raw or validated config; returns it validated, defaults filled."""
    config = schema_checked(config, source)
    problems, notes = own_problems(config)
    folders, folder_notes = _folder_problems(config)
    problems += folders + _dataset_problems(config)
    notes += folder_notes
    if not problems:  # classes are counted only of datasets that exist, under valid names
        from bmip.data.checks import class_count_problems

        problems += class_count_problems(config)
    for more, more_notes in (_recipe_dataset_problems(config), _ablation_problems(config)):
        problems += more
        notes += more_notes
    refuse(source, problems)
    for note in notes:
        log.warning("%s: %s", source, note)
    return config
