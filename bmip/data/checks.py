"""Datasets refused before any job: too few classes for the protocols that name them.

Over a single class an accuracy is 100% whatever the model does, so a label space needs at least
`MIN_CLASSES` classes. Base-to-novel and open-world split each dataset into CoOp's base and new
halves (`bmip.data.protocols`), so each half needs them; cross-dataset and domain-generalisation
sources and targets need them as a whole. `class_count_problems` checks a config at the workflow's
start and in `bmip check-config` without reading an image: the registry's and miniworld's known
class counts, your own datasets' class folders, CSV or split file. `training_class_problems` is the
engine's own refusal of a run started without that check.
"""
from __future__ import annotations

import csv
from typing import Any, Mapping

from .custom import class_names_of
from .errors import DataError, DegenerateDatasetError
from .protocols import all_classes_problem, base_new_problem
from .loader import dataset_root
from .registry import DATASETS, resolve_name
from bmip.grid import dataset_keys


def class_count(config: Mapping[str, Any], name: str) -> int | None:
    """How many classes dataset `name` of the config has, read without listing an image; None for
    one of your own that is not under data_root yet. Raises DataError when its files cannot say."""
    if "miniworld" in config:
        from bmip.miniworld.datasets import DATASETS as MINIWORLD

        if name in MINIWORLD:
            return MINIWORLD[name].n_classes
    key = resolve_name(name)
    if key is not None:
        return DATASETS[key].num_classes
    path = dataset_root(config, name) / name
    if not path.exists():
        return None
    return len(class_names_of(path))


def _problem(key: str, name: str, n_classes: int) -> str | None:
    """The message refusing dataset `name` of `n_classes` classes under config key `key`
    (protocols.<protocol>.<field>[<i>]), or None."""
    field = key.split("[")[0]
    if field.endswith(".datasets"):
        problem, fix = base_new_problem(name, n_classes), f"remove it from {field}"
    elif field.endswith(".source"):
        problem, fix = all_classes_problem(name, n_classes), f"train on another dataset ({field})"
    else:
        problem, fix = all_classes_problem(name, n_classes), f"remove it from {field}"
    return None if problem is None else f"{key}: {problem}. Add classes to {name!r}, or {fix}."


def class_count_problems(config: Mapping[str, Any]) -> list[str]:
    """One message per config key naming a dataset with too few classes for its protocol; also a
    class-folder dataset whose class folders are one directory. Datasets not in place yet are
    skipped (they are downloaded or generated later), and so are files the loader will refuse
    with its own message at the data check."""

    counts: dict[str, int | None] = {}
    problems: list[str] = []
    for key, name in dataset_keys(dict(config)):
        if name not in counts:
            try:
                counts[name] = class_count(config, name)
            except DegenerateDatasetError as err:
                counts[name] = None
                problems.append(f"{key}: {err}")
            except (DataError, OSError, ValueError, csv.Error):
                counts[name] = None
        n = counts[name]
        problem = _problem(key, name, n) if n is not None else None
        if problem is not None:
            problems.append(problem)
    return problems


def training_class_problems(config: Mapping[str, Any], training: str, dataset: str, n_classes: int) -> list[str]:
    """The messages refusing to train (`training`: base2novel or cross_dataset) on `dataset` of
    `n_classes` classes, under each config key that names it for this training: a protocol's
    `datasets` are trained on base2novel's base classes, its `source` by cross_dataset."""

    field = "datasets" if training == "base2novel" else "source"
    keys = [key for key, name in dataset_keys(dict(config)) if name == dataset and key.split("[")[0].endswith(f".{field}")]
    keys = keys or [f"protocols.{training}.{field}"]
    return [problem for key in keys if (problem := _problem(key, dataset, n_classes)) is not None]
