"""CoOp/Dassl-identical few-shot subsets, and their storage as hashed JSON (no pickles).

The selection depends only on (split lists, K, seed): Dassl calls `random.seed(seed)` once and then
`generate_fewshot_dataset` draws with the global `random.sample`; a `random.Random(seed)` instance runs
the same Mersenne Twister stream, so `fewshot_split` reproduces Dassl's `shot_K-seed_S.pkl` item for
item, in the same order (the algorithm is stated in docs/data.md).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Sequence

from bmip.io import write_json
from .errors import SplitFileError
from .items import Dataset, Item, canonical_items, items_from_lists, items_hash

logger = logging.getLogger(__name__)

FORMAT = "bmip-fewshot-split/1"
VAL_SHOTS_MAX = 4


def fewshot(items: Sequence[Item], k: int, rng: random.Random) -> list[Item]:
    """Dassl's `generate_fewshot_dataset(items, num_shots=k)` (repeat=False), drawing from `rng`.

    Buckets by label in order of first appearance, items in list order inside a bucket. A bucket with
    at least k items gives `rng.sample(bucket, k)` in draw order (so a bucket of exactly k items is
    permuted); a smaller bucket is kept whole, in order, with no RNG call. k < 1 returns all items.
    """
    if k < 1:
        return list(items)
    buckets: dict[int, list[Item]] = {}
    for it in items:
        buckets.setdefault(it.label, []).append(it)
    chosen: list[Item] = []
    for bucket in buckets.values():
        chosen.extend(rng.sample(bucket, k) if len(bucket) >= k else bucket)
    return chosen


def short_classes(items: Sequence[Item], shots: int) -> dict[str, int]:
    """Classes with fewer than `shots` items in a few-shot list, by name: Dassl keeps all of such a
    class's images, so the run sees fewer than `shots` of it (class name -> images, by label)."""
    if shots < 1:
        return {}
    counts: dict[int, list] = {}
    for it in items:
        counts.setdefault(it.label, [it.classname, 0])[1] += 1
    return {name: n for _, (name, n) in sorted(counts.items()) if n < shots}


def short_classes_warning(dataset: str, shots: int, short: dict[str, int]) -> str:
    """What a run whose few-shot list has classes with fewer than `shots` images logs."""
    listed = ", ".join(f"{name!r} ({n})" for name, n in short.items())
    one = len(short) == 1
    return (f"{dataset}: {len(short)} {'class has' if one else 'classes have'} fewer than shots={shots} "
            f"training images, so all of {'its' if one else 'their'} images are used, as Dassl samples: {listed}. The run's "
            "provenance.json records them (inputs.short_classes); add images to these classes for a "
            f"{shots}-shot result, or lower shots")


def fewshot_split(dataset: Dataset, shots: int, seed: int) -> tuple[list[Item], list[Item]]:
    """The (train, val) few-shot lists CoOp builds for `dataset` at `shots` and `seed`.

    Train is sampled first, then val with min(shots, 4) shots from the same stream. ImageNet
    (`sample_val` False) samples train only; its val list (= its test set) is returned whole.
    A negative seed means an unseeded RNG, as in Dassl (not reproducible).
    """
    if dataset.test_only:
        raise ValueError(f"{dataset.name} is a test-only dataset: it has no train list to sample from")
    rng = random.Random(seed if seed >= 0 else None)
    train = fewshot(dataset.train, shots, rng)
    if not dataset.sample_val or shots < 1:
        return train, list(dataset.val)
    return train, fewshot(dataset.val, min(shots, VAL_SHOTS_MAX), rng)


def fewshot_split_path(out_dir: Path, dataset_name: str, shots: int, seed: int) -> Path:
    """Where the split of (dataset, shots, seed) is stored: `<out>/<dataset>/shot_K-seed_S.json`."""
    return Path(out_dir) / dataset_name / f"shot_{shots}-seed_{seed}.json"


def fewshot_record(dataset: Dataset, shots: int, seed: int) -> dict:
    """The JSON document of a few-shot split: items relative to the image root, plus content hashes."""
    train, val = fewshot_split(dataset, shots, seed)
    return {
        "format": FORMAT,
        "dataset": dataset.name,
        "shots": shots,
        "seed": seed,
        "split_file": dataset.split_file.name if dataset.split_file else None,
        "source_hash": {"train": items_hash(dataset.train), "val": items_hash(dataset.val)},
        "hash": {"train": items_hash(train), "val": items_hash(val)},
        "train": canonical_items(train),
        "val": canonical_items(val),
    }


def write_fewshot_split(dataset: Dataset, shots: int, seed: int, out_dir: Path) -> Path:
    """Compute and atomically write the split; an existing file must hold exactly the same items.

    Unlike Dassl's pickle cache, an existing file is never trusted blindly: if it differs from what
    the current split lists give, it is refused (the split file or the code changed).
    """
    if seed < 0:
        raise ValueError("a split drawn without a seed (seed < 0) cannot be reproduced; store splits of seeds >= 0")
    path = fewshot_split_path(out_dir, dataset.name, shots, seed)
    record = fewshot_record(dataset, shots, seed)
    if path.exists():
        train, val = read_fewshot_split(path)
        if items_hash(train) != record["hash"]["train"] or items_hash(val) != record["hash"]["val"]:
            raise SplitFileError(
                f"few-shot split {path} differs from the one computed from {dataset.split_file or dataset.name} "
                f"(shots={shots}, seed={seed}); delete it to regenerate, or find out why the data changed"
            )
        logger.info("few-shot split %s already up to date", path)
        return path
    write_json(path, record, sort_keys=False)
    logger.info("wrote %s (%d train, %d val)", path, len(record["train"]), len(record["val"]))
    return path


def read_fewshot_split(path: Path, dataset: Dataset | None = None) -> tuple[list[Item], list[Item]]:
    """Read a stored split, verifying its content hashes (and, given `dataset`, that it belongs to it)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SplitFileError(f"cannot read few-shot split {path}: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SplitFileError(f"few-shot split {path}: not a {FORMAT} file")
    out = []
    for key in ("train", "val"):
        items = items_from_lists(doc.get(key, []), path, key)
        if items_hash(items) != doc.get("hash", {}).get(key):
            raise SplitFileError(f"few-shot split {path}: content hash of {key!r} does not match; file edited or corrupt")
        out.append(items)
    if dataset is not None:
        _check_belongs(path, doc, out[0], out[1], dataset)
    return out[0], out[1]


def _check_belongs(path: Path, doc: dict, train: list[Item], val: list[Item], dataset: Dataset) -> None:
    if doc.get("dataset") != dataset.name:
        raise SplitFileError(f"few-shot split {path} is for {doc.get('dataset')!r}, not {dataset.name!r}")
    for key, items, pool in (("train", train, dataset.train), ("val", val, dataset.val)):
        known = set(pool)
        stray = [it for it in items if it not in known]
        if stray:
            raise SplitFileError(
                f"few-shot split {path}: {len(stray)} {key} items are not in {dataset.name}'s {key} list "
                f"(first: {stray[0].path}); it was made from a different split file"
            )
