"""The mini-datasets, written in the same layout as the real ones so they go through the same data code.

Each dataset is ``<root>/<dir>/images/<class_folder>/<i>.png`` plus a CoOp-format
``<root>/<dir>/split.json`` = ``{"train"|"val"|"test": [[relpath under images/, label, classname]]}``.
Labels run 0..n-1 in the order the dataset lists its classes (a seeded shuffle, like a real dataset's
arbitrary folder order), so base (first ceil(n/2) labels) and novel classes mix all attributes.

Roles mirror the paper's benchmark: ``downstream`` datasets (the 10 non-ImageNet datasets), one
``source`` dataset (ImageNet), and test-only ``shift`` variants of it (ImageNet-V2/-Sketch/-A/-R),
whose train and val lists are empty. ``<root>/world.json`` records the full specification; it is
written last, so its presence means the root is complete.

Beside the images, ``<root>/<dir>/masks/<relpath>`` holds each image's foreground mask (8-bit
grayscale PNG of the main object's pixel coverage, `bmip.miniworld.render.Layout.mask`), which the
data layer reads as an optional per-item annotation (`bmip.data.masks`).
"""
from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import shutil
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from bmip.io import write_json
from bmip.data.masks import MASK_DIR
from bmip.miniworld.render import IMAGE_SIZE, render, to_uint8
from bmip.miniworld.world import (
    COLOURS,
    GENERATOR_VERSION,
    PATTERNS,
    SHAPES,
    Concept,
    all_concepts,
    generator_fingerprint,
)

log = logging.getLogger(__name__)

WORLD_FILE = "world.json"
SPLIT_FILE = "split.json"
CHUNK = 512


@dataclass(frozen=True)
class DatasetSpec:
    """One mini-dataset: its rendering style and which concepts are its classes.

    ``colours``/``patterns``/``shapes`` restrict the concept pool (None = all). A ``shift`` dataset
    takes its classes from ``source``: all of them, or a seeded subset of ``n_classes`` kept in the
    source's label order (as ImageNet-A/-R keep 200 of ImageNet's classes).
    """

    name: str
    style: str
    role: str
    n_classes: int
    colours: tuple[str, ...] | None = None
    patterns: tuple[str, ...] | None = None
    shapes: tuple[str, ...] | None = None
    source: str | None = None
    description: str = ""

    @property
    def dir(self) -> str:
        return self.name


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "toys", "indoor", "downstream", 20, description="warm-lit photos with distractor objects (Caltech101-like)"
        ),
        DatasetSpec("stickers", "cartoon", "downstream", 16, description="flat cartoon stickers with black outlines"),
        DatasetSpec(
            "aerial", "aerial", "downstream", 16, patterns=("plain",), description="top-down, four small copies (EuroSAT-like)"
        ),
        DatasetSpec(
            "fabrics", "closeup", "downstream", 24, shapes=("square",), description="close-ups where pattern dominates (DTD-like)"
        ),
        DatasetSpec("nightcam", "night", "downstream", 20, description="dark, noisy, blue-tinted photos"),
        DatasetSpec("pixelart", "pixel", "downstream", 20, description="blocky pixel art with a small palette"),
        DatasetSpec("objects", "photo", "source", 48, description="the main photo style (ImageNet's role)"),
        DatasetSpec(
            "objects_v2", "photo_v2", "shift", 48, source="objects", description="resampled, slightly harder (ImageNet-V2)"
        ),
        DatasetSpec("objects_sketch", "sketch", "shift", 48, source="objects", description="pencil outlines (ImageNet-Sketch)"),
        DatasetSpec(
            "objects_a", "hard", "shift", 24, source="objects", description="hard nuisances (ImageNet-A)"
        ),
        DatasetSpec(
            "objects_r", "rendition", "shift", 24, source="objects", description="art renditions (ImageNet-R)"
        ),
    )
}


@dataclass(frozen=True)
class SizePreset:
    """Images per class: train/val/test for downstream and source datasets, test for shifts."""

    train: int
    val: int
    test: int
    shift_test: int


SIZES: dict[str, SizePreset] = {
    "default": SizePreset(train=50, val=20, test=20, shift_test=20),
    "test": SizePreset(train=4, val=2, test=3, shift_test=3),
}


def _stream(seed: int, name: str, part: int) -> np.random.Generator:
    """An independent, named random stream: changing one dataset never changes another."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), part])


def _pool(spec: DatasetSpec) -> list[Concept]:
    def allowed(values: tuple[str, ...] | None, names: tuple[str, ...], index: int) -> bool:
        return values is None or names[index] in values

    return [
        c
        for c in all_concepts()
        if allowed(spec.colours, COLOURS, c.colour)
        and allowed(spec.patterns, PATTERNS, c.pattern)
        and allowed(spec.shapes, SHAPES, c.shape)
    ]


def dataset_classes(spec: DatasetSpec, seed: int) -> list[Concept]:
    """The dataset's classes in label order; deterministic from the world seed."""
    if spec.source is not None:
        parent = dataset_classes(DATASETS[spec.source], seed)
        if spec.n_classes >= len(parent):
            return parent
        keep = np.sort(_stream(seed, spec.name, 0).choice(len(parent), spec.n_classes, replace=False))
        return [parent[i] for i in keep]
    pool = _pool(spec)
    pick = _stream(seed, spec.name, 0).choice(len(pool), spec.n_classes, replace=False)
    return [pool[i] for i in pick]


def split_counts(spec: DatasetSpec, size: SizePreset) -> dict[str, int]:
    """Images per class in each split."""
    if spec.role == "shift":
        return {"train": 0, "val": 0, "test": size.shift_test}
    return {"train": size.train, "val": size.val, "test": size.test}


def resolve_size(size: str | SizePreset) -> tuple[str, SizePreset]:
    if isinstance(size, SizePreset):
        return "custom", size
    return size, SIZES[size]


def world_spec(seed: int, size: str | SizePreset = "default", datasets: list[str] | None = None) -> dict[str, Any]:
    """Everything that determines the generated files; world.json stores it to detect stale roots."""
    size_name, preset = resolve_size(size)
    names = list(DATASETS) if datasets is None else datasets
    entries = {}
    for name in names:
        spec = DATASETS[name]
        entries[name] = {
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()},
            "dir": spec.dir,
            "counts_per_class": split_counts(spec, preset),
            "classnames": [c.name for c in dataset_classes(spec, seed)],
        }
    return {
        "generator_version": GENERATOR_VERSION,
        "generator_sha256": generator_fingerprint(),
        "seed": seed,
        "size": size_name,
        "sizes": asdict(preset),
        "image_size": IMAGE_SIZE,
        "datasets": entries,
    }


def is_up_to_date(root: Path, seed: int, size: str | SizePreset = "default", datasets: list[str] | None = None) -> bool:
    """True if ``root`` holds a complete world generated with exactly this specification."""
    path = Path(root) / WORLD_FILE
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text())["spec"]
    except (ValueError, KeyError):
        return False
    want = world_spec(seed, size, datasets)
    return recorded == want and all((Path(root) / e["dir"] / SPLIT_FILE).is_file() for e in want["datasets"].values())


def _replace_dir(staging: Path, target: Path) -> None:
    """Move a fully written ``staging`` folder to ``target``, replacing any old version."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_dataset(root: Path, spec: DatasetSpec, seed: int, size: SizePreset, progress: tqdm | None = None) -> dict:
    """Render and write one dataset (images + split.json) into ``root/spec.dir``, atomically."""
    classes = dataset_classes(spec, seed)
    counts = split_counts(spec, size)
    target = Path(root) / spec.dir
    staging = Path(root) / f".{spec.dir}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    for concept in classes:
        (staging / "images" / concept.folder).mkdir(parents=True)
        (staging / MASK_DIR / concept.folder).mkdir(parents=True)
    split: dict[str, list] = {}
    start = 0
    for part, name in enumerate(("train", "val", "test"), start=1):
        per_class = counts[name]
        items = [(label, start + i) for label in range(len(classes)) for i in range(per_class)]
        rng = _stream(seed, spec.name, part)
        entries = []
        for lo in range(0, len(items), CHUNK):
            chunk = items[lo : lo + CHUNK]
            concepts = np.array([[classes[l].colour, classes[l].pattern, classes[l].shape] for l, _ in chunk])
            images, layout = render(spec.style, concepts, rng)
            for (label, index), image, mask in zip(chunk, images, to_uint8(layout.mask)):
                rel = f"{classes[label].folder}/{index}.png"
                (staging / "images" / rel).write_bytes(_png(image))
                (staging / MASK_DIR / rel).write_bytes(_png(mask))
                entries.append([rel, label, classes[label].name])
            if progress is not None:
                progress.update(len(chunk))
        split[name] = entries
        start += per_class
    write_json(staging / SPLIT_FILE, split, sort_keys=False)
    _replace_dir(staging, target)
    return {name: len(entries) for name, entries in split.items()}


def generate_world(
    root: Path,
    seed: int = 0,
    size: str | SizePreset = "default",
    datasets: list[str] | None = None,
    force: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Write every mini-dataset under ``root`` and then ``world.json``; skip if already up to date.

    Datasets are independent random streams, so ``workers`` processes (default: up to 2 CPUs)
    write them in parallel with byte-identical results. Returns the record stored in world.json.
    """
    root = Path(root)
    if not force and is_up_to_date(root, seed, size, datasets):
        log.info("miniworld at %s is up to date (seed %d, size %s)", root, seed, size)
        return json.loads((root / WORLD_FILE).read_text())
    spec = world_spec(seed, size, datasets)
    root.mkdir(parents=True, exist_ok=True)
    (root / WORLD_FILE).unlink(missing_ok=True)
    _, preset = resolve_size(size)
    counts = {
        name: len(e["classnames"]) * sum(e["counts_per_class"].values()) for name, e in spec["datasets"].items()
    }
    workers = workers or min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    with tqdm(total=sum(counts.values()), desc="miniworld images", unit="img", disable=None) as progress:
        if workers == 1:
            for name in counts:
                log.info("wrote %s: %s", name, write_dataset(root, DATASETS[name], seed, preset, progress))
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                jobs = {pool.submit(write_dataset, root, DATASETS[name], seed, preset): name for name in counts}
                for job in as_completed(jobs):
                    log.info("wrote %s: %s", jobs[job], job.result())
                    progress.update(counts[jobs[job]])
    seconds = time.perf_counter() - started
    record = {
        "spec": spec,
        "generation": {
            "seconds": round(seconds, 2),
            "images": sum(counts.values()),
            "workers": workers,
            "numpy_version": np.__version__,
        },
    }
    write_json(root / WORLD_FILE, record, sort_keys=False)
    log.info("generated %d images in %.1f s under %s", sum(counts.values()), seconds, root)
    return record
