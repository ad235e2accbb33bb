"""Class splits of the evaluation protocols: base/novel, open-world union, and the ratio sweep.

All functions are pure: they take item lists and return new ones. They are applied *after* few-shot
sampling, over all classes, as CoOp does.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, Sequence

from .errors import DegenerateDatasetError
from .items import Item

Subsample = Literal["all", "base", "new"]
SUBSAMPLES = ("all", "base", "new")
RATIO_SWEEP = tuple(range(100, -1, -10))  # r = 100, 90, ..., 0 as in the authors' *_ratio.sh scripts
# Classes a label space needs for its accuracy to mean anything: over one class it is 100% whatever
# the model does (a 2-class dataset gave base 100, novel 100, HM 100).
MIN_CLASSES = 2


def base_novel_labels(train: Sequence[Item]) -> tuple[list[int], list[int]]:
    """(base, novel) labels: the sorted labels of `train` cut at m = ceil(n/2); odd n gives base one more."""
    labels = sorted({it.label for it in train})
    m = math.ceil(len(labels) / 2)
    return labels[:m], labels[m:]


def _classes(n: int) -> str:
    return f"{n} class" if n == 1 else f"{n} classes"


def _dataset(name: str) -> str:
    return f"dataset {name!r}" if name else "the dataset"


def base_new_problem(dataset: str, n_classes: int) -> str | None:
    """Why the base/new split of a dataset of `n_classes` classes cannot give meaningful numbers
    (a half with fewer than MIN_CLASSES classes), or None when it can."""
    base = math.ceil(n_classes / 2)
    new = n_classes - base
    if min(base, new) >= MIN_CLASSES:
        return None
    return (f"{_dataset(dataset)} has {_classes(n_classes)}: CoOp's base/new split (base = the first ceil(n/2) "
            f"labels, new = the rest) gives it {base} base and {new} new, and an accuracy over fewer than "
            f"{MIN_CLASSES} classes means nothing (over one class it is 100% whatever the model does); "
            f"base-to-novel and open-world need at least {MIN_CLASSES} classes in each half, so at least "
            f"{2 * MIN_CLASSES} classes")


def all_classes_problem(dataset: str, n_classes: int) -> str | None:
    """Why a dataset of `n_classes` classes cannot be trained or tested on as a whole, or None."""
    if n_classes >= MIN_CLASSES:
        return None
    return (f"{_dataset(dataset)} has {_classes(n_classes)}, and an accuracy over fewer than {MIN_CLASSES} classes "
            "means nothing (over one class it is 100% whatever the model does)")


def _require_halves(train: Sequence[Item], dataset: str) -> None:
    """Refuse a base/new split with a half of fewer than MIN_CLASSES classes, before any number."""
    problem = base_new_problem(dataset, len({it.label for it in train}))
    if problem is not None:
        raise DegenerateDatasetError(f"{problem}. Add classes to the dataset, or leave it out of base2novel and "
                                     "open_world.")


def _relabel(selected: Sequence[int], lists: Sequence[Sequence[Item]]) -> tuple[list[list[Item]], list[str]]:
    """Keep items of `selected` labels, renumbered 0.. in the order of `selected`; also their names."""
    new = {y: i for i, y in enumerate(selected)}
    out = [[Item(it.path, new[it.label], it.classname) for it in items if it.label in new] for items in lists]
    names: dict[int, str] = {}
    for items in out:
        for it in items:
            names.setdefault(it.label, it.classname)
    return out, [names[i] for i in range(len(selected))]


def _all_classnames(lists: Sequence[Sequence[Item]]) -> list[str]:
    names: dict[int, str] = {}
    for items in lists:
        for it in items:
            names.setdefault(it.label, it.classname)
    return [names[y] for y in sorted(names)]


def subsample_classes(
    train: Sequence[Item], val: Sequence[Item], test: Sequence[Item], subsample: Subsample = "all",
    *, dataset: str = "",
) -> tuple[list[Item], list[Item], list[Item], list[str]]:
    """CoOp's `subsample_classes`: "base" keeps the first ceil(n/2) sorted labels of `train`, "new"
    the rest, both renumbered 0.. in sorted order; "all" keeps everything unchanged.

    Returns (train, val, test, classnames) with classnames indexed by the new labels. A split with
    fewer than MIN_CLASSES classes in a half is refused (DegenerateDatasetError naming `dataset`).
    """
    if subsample not in SUBSAMPLES:
        raise ValueError(f"subsample must be one of {SUBSAMPLES}, got {subsample!r}")
    lists = (train, val, test)
    if subsample == "all":
        return list(train), list(val), list(test), _all_classnames(lists)
    _require_halves(train, dataset)
    base, novel = base_novel_labels(train)
    (tr, va, te), names = _relabel(base if subsample == "base" else novel, lists)
    return tr, va, te, names


def ratio_counts(n: int, ratio: float) -> tuple[int, int]:
    """(base_count, new_count) of the ratio sweep: always m = ceil(n/2) classes in total.

    b = floor(m*r/100), k = m - b; if k > n - m or k > m: k = n - m, b = m - k; if k < 0: k = 0, b = m.
    So r = 100 gives the m base classes, and r = 0 with odd n still has one base class.
    """
    m = math.ceil(n / 2)
    b = math.floor(m * ratio / 100)
    k = m - b
    if k > n - m or k > m:
        k = n - m
        b = m - k
    if k < 0:
        k, b = 0, m
    return b, k


def ratio_selection(train: Sequence[Item], ratio: float, rng: random.Random) -> list[int]:
    """The classes of the ratio sweep, in selected order: rng.sample(base, b) then rng.sample(novel, k)."""
    base, novel = base_novel_labels(train)
    b, k = ratio_counts(len(base) + len(novel), ratio)
    return rng.sample(base, b) + rng.sample(novel, k)


def subsample_classes_ratio(
    train: Sequence[Item],
    val: Sequence[Item],
    test: Sequence[Item],
    subsample: Subsample,
    ratio: float,
    seed: int,
) -> tuple[list[Item], list[Item], list[Item], list[str]]:
    """The open-world ratio sweep (`OxfordPets.subsample_classes_ratio` of the authors' older code).

    "new" draws a random r% of the m base-half classes and fills up to m with random novel classes,
    relabelled 0.. in the *selected* order (not sorted). "base" and "all" behave as in
    `subsample_classes` and use no RNG. The selection is the first use of an RNG seeded with `seed`,
    as in the original eval-only runs (few-shot cache present, `random.seed(seed)` just called).
    """
    if subsample != "new":
        return subsample_classes(train, val, test, subsample)
    selected = ratio_selection(train, ratio, random.Random(seed))
    (tr, va, te), names = _relabel(selected, (train, val, test))
    return tr, va, te, names


@dataclass(frozen=True)
class OpenWorldSplit:
    """A base-trained model tested on all classes at once (CoOp's `SUBSAMPLE_CLASSES all` at test).

    `train`/`val` are the base classes relabelled as for base training; `test` holds every test item
    in the joint label space (the original labels), `classnames` all n names. Because base labels are
    the first m sorted labels, base label i in training is label `base_labels[i]` here, which is i
    itself for CoOp's contiguous labels. Evaluation splits test accuracy into the base part
    (true label in `base_labels`) and the novel part (in `novel_labels`).
    """

    train: list[Item]
    val: list[Item]
    test: list[Item]
    classnames: list[str]
    base_labels: tuple[int, ...]
    novel_labels: tuple[int, ...]

    def is_base(self, label: int) -> bool:
        return label in self.base_labels


def open_world_split(
    train: Sequence[Item], val: Sequence[Item], test: Sequence[Item], *, dataset: str = ""
) -> OpenWorldSplit:
    """Base-class training lists plus the all-class test set and its base/novel label sets."""
    base, novel = base_novel_labels(train)
    tr, va, _, _ = subsample_classes(train, val, test, "base", dataset=dataset)
    return OpenWorldSplit(
        train=tr,
        val=va,
        test=list(test),
        classnames=_all_classnames((train, val, test)),
        base_labels=tuple(base),
        novel_labels=tuple(novel),
    )
