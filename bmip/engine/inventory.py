"""The images behind an experiment's results, as a file the workflow depends on.

`<experiment>/inputs/<dataset>.json` (the dataset's *inventory*) records everything of a dataset
that a run of the config reads: its class names, prompt template and, per part (the few-shot train
and val lists of every seed, the whole test list), the items (path, label, class name), and the
content of every image file among them (sha256). The data check depends on it, and every split,
training, evaluation and table of the dataset on the data check, so a change of what it records
reruns exactly these.

The workflow brings every inventory up to date each time it starts (`update_inventories`), and
rewrites one only when what it records changed: replacing, adding or removing images of a dataset
reruns its jobs, while a `touch`, a copy of the data to another place (its content unchanged) or a
file no run reads reruns nothing. A file's size and modification time are the fast path: its
content is hashed again only when they differ from the hidden cache `inputs/.<dataset>.hashes.json`
(hidden: no result, left out of the manifest). Where a dataset is not in place yet (to be
downloaded or generated), the workflow's `inventory` rule writes its inventory once it is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from bmip.data import Dataset, Item, dataset_root, fewshot_split, items_hash, load_dataset
from bmip.engine import paths
from bmip.io import file_sha256, write_json

log = logging.getLogger(__name__)

FORMAT = "bmip-inventory/1"
FOLDER = "inputs"  # <experiment>/inputs/<dataset>.json
MISSING = "missing"


def part_names(seed: int) -> tuple[str, str]:
    """The record's names of one seed's few-shot lists."""
    return f"seed{seed} train", f"seed{seed} val"


def checked_parts(config: dict[str, Any], names: Sequence[str],
                  check_images: bool = True) -> dict[str, tuple[Dataset, dict[str, list[Item]]]]:
    """Per dataset, the dataset and the item lists the config's runs read, by part name
    (`check_images`: whether loading refuses a listed image that is not there)."""
    trained = {dataset for _, dataset in paths.trainings(config)}
    out: dict[str, tuple[Dataset, dict[str, list[Item]]]] = {}
    for name in names:
        data = load_dataset(name, dataset_root(config, name), check_images=check_images)
        parts: dict[str, list[Item]] = {}
        if name in trained:
            for seed in config["seeds"]:
                train, val = fewshot_split(data, config["shots"], seed)
                parts.update(zip(part_names(seed), (train, val)))
        parts["test"] = list(data.test)  # also of a dataset only trained on: which protocols evaluate it may change
        out[name] = (data, parts)
    return out


def inventory_path(experiment: str | Path, dataset: str) -> Path:
    return Path(experiment) / FOLDER / f"{dataset}.json"


def _cache_path(experiment: str | Path, dataset: str) -> Path:
    return Path(experiment) / FOLDER / f".{dataset}.hashes.json"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def content_hashes(root: Path, files: Sequence[str], cache: dict[str, Any], desc: str) -> dict[str, str]:
    """sha256 of every file (relative to `root`; MISSING for one that is not there), reusing the
    cache's hash of a file whose size and modification time are unchanged; the cache is updated."""
    stale: list[tuple[str, list[int]]] = []
    out: dict[str, str] = {}
    for rel in files:
        try:
            st = os.stat(root / rel)
        except OSError:
            out[rel] = MISSING
            cache.pop(rel, None)
            continue
        stamp = [st.st_size, st.st_mtime_ns]
        known = cache.get(rel)
        if isinstance(known, list) and len(known) == 3 and known[:2] == stamp:
            out[rel] = known[2]
        else:
            stale.append((rel, stamp))
    if stale:
        with ThreadPoolExecutor(4) as pool, tqdm(total=len(stale), desc=desc, unit="image", leave=False,
                                                  disable=len(stale) < 500) as bar:
            for (rel, stamp), digest in zip(stale, pool.map(lambda s: file_sha256(root / s[0]), stale)):
                out[rel] = digest
                cache[rel] = [*stamp, digest]
                bar.update()
    return {rel: out[rel] for rel in files}


def build_inventory(data: Dataset, parts: dict[str, list[Item]], cache: dict[str, Any]) -> dict[str, Any]:
    """The inventory document of `data` for the item lists the config's runs read (`parts`)."""
    files = sorted({it.path for items in parts.values() for it in items})
    hashes = content_hashes(data.image_root, files, cache, f"inventory {data.name}")
    digest = hashlib.sha256()
    for rel in files:
        digest.update(f"{rel}\0{hashes[rel]}\n".encode())
    missing = [rel for rel in files if hashes[rel] == MISSING]
    return {
        "format": FORMAT,
        "dataset": data.name,
        "classnames": list(data.classnames),
        "template": data.template,
        "parts": {name: {"items_sha256": items_hash(items), "n": len(items)} for name, items in parts.items()},
        "files": {"n": len(files), "content_sha256": digest.hexdigest(), "missing": missing[:50],
                  "n_missing": len(missing)},
    }


def current_inventory(config: dict[str, Any], dataset: str, data: Dataset, parts: dict[str, list[Item]],
                      experiment: str | Path | None = None, write: bool = True) -> dict[str, Any]:
    """The inventory of `dataset` as its files are now (its hash cache brought up to date, unless
    `write` is False)."""
    exp = Path(experiment) if experiment is not None else paths.experiment_dir(config)
    cache_file = _cache_path(exp, dataset)
    cache = _read_json(cache_file)
    cache = cache if isinstance(cache, dict) else {}
    before = dict(cache)
    doc = build_inventory(data, parts, cache)
    doc["dataset"] = dataset
    if write and cache != before:
        try:
            write_json(cache_file, cache, sort_keys=True)
        except OSError as err:  # only a speed-up: an unwritable cache costs hashing again next time
            log.warning("cannot keep the image hash cache %s (%s): images are hashed again at the next start",
                        cache_file, err)
    return doc


def update_inventory(config: dict[str, Any], dataset: str, data: Dataset, parts: dict[str, list[Item]],
                     write: bool = True) -> bool:
    """Whether `inputs/<dataset>.json` is missing or differs from the images now; brought up to
    date when `write` (a dry run only compares: it changes no file)."""
    path = inventory_path(paths.experiment_dir(config), dataset)
    doc = current_inventory(config, dataset, data, parts, write=write)
    if _read_json(path) == doc:
        return False
    if write:
        write_json(path, doc)
    return True


def update_inventories(config: dict[str, Any], datasets: Sequence[str], write: bool = True) -> list[str]:
    """The datasets among `datasets` whose inventory is missing or out of date, brought up to date
    when `write`."""
    return [name for name, (data, parts) in checked_parts(config, datasets, check_images=False).items()
            if update_inventory(config, name, data, parts, write)]


def inventory_problems(experiment: str | Path, config: dict[str, Any], datasets: Sequence[str]) -> list[str]:
    """How the recorded inventories of `datasets` differ from the images as they are now, for the
    audit (empty when they match)."""
    problems = []
    for name, (data, parts) in checked_parts(config, datasets, check_images=False).items():
        path = inventory_path(experiment, name)
        recorded = _read_json(path)
        if not isinstance(recorded, dict) or recorded.get("format") != FORMAT:
            problems.append(f"{FOLDER}/{name}.json: missing or unreadable: the images behind the results of {name} "
                            "are unrecorded; run the workflow")
            continue
        now = current_inventory(config, name, data, parts, experiment)
        changed = [key for key in ("classnames", "template", "parts", "files") if recorded.get(key) != now.get(key)]
        if changed:
            what = ", ".join("image content" if key == "files" else "item lists" if key == "parts" else key
                             for key in changed)
            problems.append(f"{FOLDER}/{name}.json: the images of {name} under {data.image_root} changed since the "
                            f"results were computed ({what}): run the workflow again, which reruns what they affect")
    return problems
