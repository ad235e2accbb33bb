"""The data check: every image a config's runs will read is decoded once before any training.

Which images (`checked_parts`, bmip.engine.inventory, which records them): for each dataset the
config trains on, the few-shot train and val items of every seed (all classes: base-to-novel
training reads the base part of them); for every dataset a run reads, its whole test list. Each file is opened and fully decoded as training reads it
(`bmip.data.decode`), in parallel threads (PIL releases the GIL while decoding), with a progress
bar. Every unreadable file of every checked dataset is reported in one error; in the workflow the
`check_data` job(s), on which every train and evaluate job depends, fail before any of them starts.

The result is recorded per dataset in `<experiment>/data_check/<dataset>.json`, keyed by the
split file's sha256, the checked item lists' hashes and the checked files' sizes and modification
times. A copy of each record is kept beside it as `data_check/.<dataset>.json` (hidden: Snakemake
removes a job's outputs before it reruns and after it fails, not this copy it does not own): a dataset whose key
is unchanged is not decoded again, so a rerun after fixing one dataset decodes only that one.
Training and evaluation record the record's file and sha256 in their provenance, and `bmip audit`
checks that it passed and covers the images they read.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from bmip.data import Dataset, Item, items_hash, resolve_name
from bmip.data.decode import image_problem
from bmip.data.errors import DataCheckError
from bmip.engine import paths
from bmip.engine.inventory import checked_parts, inventory_path
from bmip.grid import datasets_read
from bmip.io import file_sha256, write_json

log = logging.getLogger(__name__)

FORMAT = "bmip-data-check/1"
RECORDS = "data_check"          # <experiment>/data_check/<dataset>.json
SHOW_PER_DATASET = 50           # listed in the error per dataset; the record lists them all
_CHUNK = 64                     # files per thread task


def record_path(config: dict[str, Any], dataset: str) -> Path:
    return paths.experiment_dir(config) / RECORDS / f"{dataset}.json"


def cache_path(config: dict[str, Any], dataset: str) -> Path:
    return paths.experiment_dir(config) / RECORDS / f".{dataset}.json"


@dataclass
class DatasetCheck:
    """One dataset's check: its record, whether it was decoded now or its unchanged record reused."""

    dataset: str
    record: dict[str, Any]
    decoded: int  # files decoded by this check (0: unchanged since the record)

    @property
    def problems(self) -> list[dict[str, str]]:
        return self.record["problems"]


def _stat_key(image_root: Path, files: Sequence[str]) -> tuple[str, dict[str, str]]:
    """sha256 over (path, size, mtime) of every file, and the files that cannot be stat'ed."""
    digest, missing = hashlib.sha256(), {}
    for rel in files:
        try:
            st = os.stat(image_root / rel)
        except OSError:
            missing[rel] = "missing: no such file"
            digest.update(f"{rel}\0missing\n".encode())
            continue
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest(), missing


def _problems_of(image_root: Path, files: Sequence[str]) -> dict[str, str]:
    return {rel: p for rel in files if (p := image_problem(image_root / rel)) is not None}


def decode_all(image_root: Path, files: Sequence[str], workers: int, desc: str) -> dict[str, str]:
    """What is wrong with each file that does not decode fully (relative path -> problem)."""
    chunks = [files[i:i + _CHUNK] for i in range(0, len(files), _CHUNK)]
    problems: dict[str, str] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(total=len(files), desc=desc, unit="image",
                                                            leave=False) as bar:
        for chunk, found in zip(chunks, pool.map(lambda c: _problems_of(image_root, c), chunks)):
            problems.update(found)
            bar.update(len(chunk))
    return problems


def check_dataset(config: dict[str, Any], data: Dataset, parts: dict[str, list[Item]], workers: int) -> DatasetCheck:
    """Decode the dataset's checked files unless its record's key is unchanged; write the record."""
    files = sorted({it.path for items in parts.values() for it in items})
    stat_key, missing = _stat_key(data.image_root, files)
    split_sha = file_sha256(data.split_file) if data.split_file else None
    key = {
        "split_file_sha256": split_sha,
        "parts": {name: {"images_sha256": items_hash(items), "n": len(items)} for name, items in parts.items()},
        "files": {"n": len(files), "sizes_mtimes_sha256": stat_key},
    }
    path, cache = record_path(config, data.name), cache_path(config, data.name)
    made_from = _inventory_sha256(config, data.name)
    previous = _read(cache)
    if previous is not None and previous.get("status") == "passed" and all(previous.get(k) == v for k, v in key.items()):
        log.info("%s: %d images unchanged since they were checked: not decoded again", data.name, len(files))
        previous["inventory_sha256"] = made_from
        write_json(path, previous)
        write_json(cache, previous)
        return DatasetCheck(data.name, previous, 0)
    problems = {**missing, **decode_all(data.image_root, [f for f in files if f not in missing], workers,
                                         f"check {data.name}")}
    record = {
        "format": FORMAT,
        "dataset": data.name,
        "image_root": str(data.image_root),
        "split_file": str(data.split_file) if data.split_file else None,
        **key,
        "inventory_sha256": made_from,
        "status": "failed" if problems else "passed",
        "problems": [{"path": rel, "problem": problems[rel]} for rel in sorted(problems)],
    }
    write_json(path, record)
    write_json(cache, record)
    log.info("%s: %d images decoded, %d unreadable", data.name, len(files), len(problems))
    return DatasetCheck(data.name, record, len(files))


def _inventory_sha256(config: dict[str, Any], dataset: str) -> str | None:
    """sha256 of the dataset's inventory (bmip.engine.inventory) the check was made from; None when
    there is none (a check by hand, outside the workflow)."""
    path = inventory_path(paths.experiment_dir(config), dataset)
    return file_sha256(path) if path.is_file() else None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def check_data(config: dict[str, Any], datasets: Sequence[str] | None = None,
               workers: int | None = None) -> list[DatasetCheck]:
    """Check `datasets` (default: every dataset the config reads); DataCheckError lists every
    unreadable file of all of them. The datasets that passed are not decoded again next time."""
    read = datasets_read(config)
    names = list(datasets) if datasets else read
    unknown = [name for name in names if name not in read]
    if unknown:
        raise ValueError(f"no run of the config reads {', '.join(unknown)}; it reads {', '.join(read)}")
    workers = workers if workers is not None else max(1, config["workers"])
    checks = [check_dataset(config, data, parts, workers) for data, parts in checked_parts(config, names).values()]
    skipped = sum(1 for c in checks if c.decoded == 0)
    log.info("data check: %d dataset(s), %d images decoded, %d dataset(s) unchanged and not decoded again",
             len(checks), sum(c.decoded for c in checks), skipped)
    failed = [c for c in checks if c.problems]
    if failed:
        raise DataCheckError(failure_message(config, failed))
    return checks


def failure_message(config: dict[str, Any], failed: list[DatasetCheck]) -> str:
    """Every unreadable file, by dataset, with what is wrong and what to do."""
    total = sum(len(c.problems) for c in failed)
    lines = [f"{total} image file(s) in {len(failed)} dataset(s) cannot be read; no training or evaluation was started:"]
    for check in failed:
        root = Path(check.record["image_root"])
        lines.append(f"{check.dataset} ({len(check.problems)} of {check.record['files']['n']} checked files, "
                     f"under {root}):")
        lines += [f"  {root / p['path']}: {p['problem']}" for p in check.problems[:SHOW_PER_DATASET]]
        if len(check.problems) > SHOW_PER_DATASET:
            lines.append(f"  ... and {len(check.problems) - SHOW_PER_DATASET} more, all listed in "
                         f"{record_path(config, check.dataset)}")
        lines.append(f"  what to do: {_advice(config, check.dataset)}")
    lines.append("Then run the same command again: datasets that passed are not decoded again.")
    return "\n".join(lines)


def _advice(config: dict[str, Any], dataset: str) -> str:
    if "miniworld" in config:
        return (f"the generated miniworld data is damaged: delete {config['data_root']} and rerun, which "
                "generates it again from its seed")
    if resolve_name(dataset) is not None:
        return (f"fetch the dataset again with `bmip download {dataset} --root {config['data_root']}` (a copy "
                "you linked in: replace the files from a good copy), or remove the files from its split file")
    return "replace each file with a good copy, or delete it from the dataset's folder (and from its split file)"


def provenance_input(config: dict[str, Any], dataset: str) -> dict[str, Any] | None:
    """A run's provenance entry for the data check of `dataset`: the record and its sha256; None
    when no check was recorded (a run by hand without `bmip check-data`)."""
    path = record_path(config, dataset)
    if not path.is_file():
        return None
    return {"record": f"{RECORDS}/{dataset}.json", "sha256": file_sha256(path)}
