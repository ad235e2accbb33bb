"""Bring your own dataset, in one of three layouts, behind the same `Dataset` interface.

(a) folders: `<root>/<classname>/<image>`; label = index of the folder in sorted order. With a split
    file (CoOp format, paths relative to `<root>`) that file is used; otherwise a deterministic
    DTD-style split per class: files sorted by name, shuffled by `random.Random(f"{seed}:{classname}")`,
    then train = round(50%), val = round(20%), test = the rest (CoOp's DTD `read_and_split_data`
    proportions; every class needs at least 4 images so that each part is non-empty). Seeding per
    class keeps a class's split stable when other classes are added.
(b) CSV: columns `path,label,classname` (paths relative to the CSV's folder), with an optional
    `split` column (train/val/test); or separate `train.csv`, `val.csv` (optional), `test.csv`.
    A single CSV without a split column is split per class as in (a).
(c) CoOp: `<root>/images/...` plus `<root>/split.json` = {"train": [[relpath, label, classname], ...],
    "val": [...], "test": [...]} with paths relative to `images/` (or `<root>` if there is no `images/`).
    Optional top-level "name", "display_name" and "template" keys set the dataset's metadata; CoOp's
    own readers ignore them, so the file stays CoOp-compatible.

A spec dict selects a layout explicitly: {"format": "folders" | "csv" | "coop_json", "root": ...,
plus any keyword of the matching `load_*` function}. Without "format" it is detected from `root`.
"""
from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path
from typing import Any, Mapping

from .coop import read_split_json
from .errors import DatasetNotFoundError, SplitFileError
from .items import Dataset, Item, normalise_relpath
from .validate import build_dataset

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of a {}."
SPLIT_JSON = "split.json"
IMAGE_DIR = "images"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TRAIN_FRACTION, VAL_FRACTION = 0.5, 0.2


def split_per_class(items_by_class: Mapping[str, list[Item]], seed: int = 0) -> tuple[list[Item], list[Item], list[Item]]:
    """DTD-style 50/20/30 split of each class (classes in the given order), deterministic in `seed`."""
    train: list[Item] = []
    val: list[Item] = []
    test: list[Item] = []
    for classname, items in items_by_class.items():
        pool = sorted(items, key=lambda it: it.path)
        random.Random(f"{seed}:{classname}").shuffle(pool)
        n = len(pool)
        n_train, n_val = round(n * TRAIN_FRACTION), round(n * VAL_FRACTION)
        if min(n_train, n_val, n - n_train - n_val) < 1:
            raise SplitFileError(
                f"class {classname!r} has {n} images: the automatic 50/20/30 split needs at least 4 per class; "
                "add images or provide a split file"
            )
        train += pool[:n_train]
        val += pool[n_train : n_train + n_val]
        test += pool[n_train + n_val :]
    return train, val, test


def load_folder_dataset(
    root: Path,
    *,
    name: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    split_file: str | Path | None = None,
    seed: int = 0,
    check_images: bool = True,
) -> Dataset:
    """Layout (a): one folder per class under `root`."""
    root = Path(root)
    if split_file is not None:
        return load_coop_dataset(root, split_file=split_file, image_dir="", name=name, template=template,
                                 check_images=check_images)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetNotFoundError(f"{root} has no class folders (expected <root>/<classname>/<image>)")
    by_class: dict[str, list[Item]] = {}
    for label, folder in enumerate(folders):
        files = sorted(f.name for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetNotFoundError(f"class folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        by_class[folder.name] = [Item(f"{folder.name}/{f}", label, folder.name) for f in files]
    train, val, test = split_per_class(by_class, seed)
    return build_dataset(name=name or root.name, image_root=root, train=train, val=val, test=test, source=root,
                         template=template, check=False)


def _read_csv(path: Path, want_split: bool) -> list[tuple[Item, str | None]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "classname"} - set(reader.fieldnames or ())
        if missing:
            raise SplitFileError(f"CSV {path}: missing column(s) {sorted(missing)}; expected path,label,classname[,split]")
        has_split = want_split and "split" in (reader.fieldnames or ())
        for n, row in enumerate(reader, start=2):
            try:
                label = int(row["label"])
            except (TypeError, ValueError):
                raise SplitFileError(f"CSV {path}, line {n}: label {row['label']!r} is not an integer") from None
            item = Item(normalise_relpath(row["path"], path, f"line {n}"), label, row["classname"])
            split = row["split"].strip().lower() if has_split else None
            if has_split and split not in ("train", "val", "test"):
                raise SplitFileError(f"CSV {path}, line {n}: split {row['split']!r} is not train, val or test")
            rows.append((item, split))
    return rows


def load_csv_dataset(
    path: Path,
    *,
    name: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    image_root: str | Path | None = None,
    seed: int = 0,
    check_images: bool = True,
) -> Dataset:
    """Layout (b): a CSV file, or a folder holding train.csv / val.csv / test.csv."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    root = folder / image_root if image_root is not None else folder
    if path.is_dir():
        if not (path / "train.csv").is_file() or not (path / "test.csv").is_file():
            raise DatasetNotFoundError(f"{path}: expected train.csv and test.csv (val.csv optional)")
        lists = {}
        for key in ("train", "val", "test"):
            file = path / f"{key}.csv"
            lists[key] = [it for it, _ in _read_csv(file, False)] if file.is_file() else []
        if not lists["val"]:
            logger.warning("%s: no val.csv; the val list is empty", path)
        train, val, test = lists["train"], lists["val"], lists["test"]
    else:
        rows = _read_csv(path, True)
        if rows and rows[0][1] is not None:
            train, val, test = ([it for it, s in rows if s == key] for key in ("train", "val", "test"))
        else:
            by_class: dict[str, list[Item]] = {}
            for it, _ in sorted(rows, key=lambda r: r[0].label):
                by_class.setdefault(it.classname, []).append(it)
            train, val, test = split_per_class(by_class, seed)
    return build_dataset(name=name or (path.name if path.is_dir() else path.stem), image_root=root, train=train,
                         val=val, test=test, source=path, template=template, check=check_images)


def load_coop_dataset(
    root: Path,
    *,
    split_file: str | Path = SPLIT_JSON,
    image_dir: str | None = None,
    name: str | None = None,
    template: str | None = None,
    display_name: str | None = None,
    check_images: bool = True,
) -> Dataset:
    """Layout (c): a CoOp split JSON plus an image folder (`images/` by default, else `root`)."""
    root = Path(root)
    split_path = root / split_file
    if not split_path.is_file():
        raise DatasetNotFoundError(f"split file {split_path} not found (layout: <root>/images/ + <root>/{SPLIT_JSON})")
    if image_dir is None:
        image_dir = IMAGE_DIR if (root / IMAGE_DIR).is_dir() else ""
    train, val, test = read_split_json(split_path)
    meta = json.loads(split_path.read_text(encoding="utf-8"))
    return build_dataset(
        name=name or meta.get("name") or root.name,
        display_name=display_name or meta.get("display_name") or "",
        image_root=root / image_dir if image_dir else root,
        train=train,
        val=val,
        test=test,
        source=split_path,
        split_file=split_path,
        template=template or meta.get("template") or DEFAULT_TEMPLATE,
        test_only=not train and not val,
        check=check_images,
    )


def detect_format(path: Path) -> str:
    """Which layout a path holds: "coop_json", "csv" or "folders"."""
    path = Path(path)
    if path.is_file():
        return {".csv": "csv", ".json": "coop_json"}.get(path.suffix.lower(), "unknown")
    if (path / SPLIT_JSON).is_file() or len(list(path.glob("split_*.json"))) == 1:
        return "coop_json"
    if (path / "train.csv").is_file() or len(list(path.glob("*.csv"))) == 1:
        return "csv"
    return "folders"


LOADERS = {"folders": load_folder_dataset, "csv": load_csv_dataset, "coop_json": load_coop_dataset}


def load_custom(spec: Mapping[str, Any] | Path, data_root: Path | None = None, check_images: bool = True) -> Dataset:
    """Load a custom dataset from a path or a spec dict (see the module docstring)."""
    options = dict(spec) if isinstance(spec, Mapping) else {"root": spec}
    if "root" not in options:
        raise KeyError('a custom dataset spec needs "root" (its folder or file)')
    root = Path(options.pop("root"))
    if not root.is_absolute() and data_root is not None:
        root = Path(data_root) / root
    if not root.exists():
        raise DatasetNotFoundError(f"custom dataset path {root} does not exist")
    fmt = options.pop("format", None) or detect_format(root)
    if fmt not in LOADERS:
        raise ValueError(f"{root}: unknown dataset format {fmt!r}; use one of {sorted(LOADERS)}")
    if fmt == "coop_json":
        if root.is_file():
            options.setdefault("split_file", root.name)
            root = root.parent
        elif not (root / SPLIT_JSON).is_file() and "split_file" not in options:
            candidates = sorted(root.glob("split_*.json"))
            if len(candidates) == 1:
                options["split_file"] = candidates[0].name
    return LOADERS[fmt](root, check_images=check_images, **options)
