"""Bring your own dataset, in one of three layouts, behind the same `Dataset` interface.

(a) folders: `<root>/<classname>/<image>`; label = index of the folder in sorted order. With a split
    file (CoOp format, paths relative to `<root>`) that file is used; otherwise a deterministic
    DTD-style split per class: files sorted by name, shuffled by `random.Random(f"{seed}:{classname}")`,
    then train = round(50%), val = round(20%), test = the rest (CoOp's DTD `read_and_split_data`
    proportions; every class needs at least 4 images so that each part is non-empty). Seeding per
    class keeps a class's split stable when other classes are added.
(b) CSV: columns `path,label,classname` (paths relative to the CSV's folder), with an optional
    `split` column (train/val/test): the CSV file itself, or a folder holding it as its only CSV;
    or a folder of separate `train.csv`, `val.csv` (optional), `test.csv`.
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
from .errors import DatasetNotFoundError, DegenerateDatasetError, SplitFileError
from .items import Dataset, Item, class_names, normalise_relpath
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
    folders = class_folders(root)
    by_class: dict[str, list[Item]] = {}
    for label, folder in enumerate(folders):
        files = sorted(f.name for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetNotFoundError(f"class folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        by_class[folder.name] = [Item(f"{folder.name}/{f}", label, folder.name) for f in files]
    train, val, test = split_per_class(by_class, seed)
    return build_dataset(name=name or root.name, image_root=root, train=train, val=val, test=test, source=root,
                         template=template, check=False)


def class_folders(root: Path) -> list[Path]:
    """The class folders of layout (a), sorted by name. Folders that are one directory (a link to
    another class folder) are refused: their images would count as two classes."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetNotFoundError(f"{root} has no class folders (expected <root>/<classname>/<image>)")
    by_target: dict[Path, list[Path]] = {}
    for folder in folders:
        by_target.setdefault(folder.resolve(), []).append(folder)
    same = [group for group in by_target.values() if len(group) > 1]
    if same:
        raise DegenerateDatasetError(
            f"{root}: {'; '.join(_one_folder(group) for group in same)}: different classes would hold the same "
            "images. Delete the link (or the copied folder), or give each class a folder of its own images."
        )
    return folders


def _one_folder(group: list[Path]) -> str:
    """'class folders 'cat' and 'dog' are one folder (<target>; 'dog' is a link to it)'."""
    links = [repr(f.name) for f in group if f.is_symlink()]
    how = f"; {' and '.join(links)} {'is a link' if len(links) == 1 else 'are links'} to it" if links else ""
    return f"class folders {' and '.join(repr(f.name) for f in group)} are one folder ({group[0].resolve()}{how})"


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


def csv_files(path: Path) -> dict[str, Path]:
    """The CSV files of layout (b) at `path`, by part: {"all": the CSV} for a CSV file or a folder
    holding one CSV (split by its `split` column, else per class), or the "train", "val" (if
    present) and "test" files of a folder of train.csv / val.csv / test.csv."""
    path = Path(path)
    if not path.is_dir():
        return {"all": path}
    if (path / "train.csv").is_file() or (path / "test.csv").is_file():
        if not (path / "train.csv").is_file() or not (path / "test.csv").is_file():
            raise DatasetNotFoundError(f"{path}: expected train.csv and test.csv (val.csv optional)")
        return {key: path / f"{key}.csv" for key in ("train", "val", "test") if (path / f"{key}.csv").is_file()}
    found = _csvs_in(path)
    if len(found) != 1:
        listed = ", ".join(f.name for f in found) or "none"
        raise DatasetNotFoundError(
            f"{path}: expected one CSV file (columns path,label,classname[,split]) or train.csv and test.csv "
            f"(val.csv optional); found {listed}. Keep one CSV in the folder, or name the CSV file itself "
            "as the dataset"
        )
    return {"all": found[0]}


def _csvs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.csv") if p.is_file() and not p.name.startswith("."))


def load_csv_dataset(
    path: Path,
    *,
    name: str | None = None,
    template: str = DEFAULT_TEMPLATE,
    image_root: str | Path | None = None,
    seed: int = 0,
    check_images: bool = True,
) -> Dataset:
    """Layout (b): a CSV file, a folder holding one CSV, or a folder of train.csv / val.csv / test.csv."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    root = folder / image_root if image_root is not None else folder
    files = csv_files(path)
    if "all" in files:
        rows = _read_csv(files["all"], True)
        if rows and rows[0][1] is not None:
            train, val, test = ([it for it, s in rows if s == key] for key in ("train", "val", "test"))
        else:
            by_class: dict[str, list[Item]] = {}
            for it, _ in sorted(rows, key=lambda r: r[0].label):
                by_class.setdefault(it.classname, []).append(it)
            train, val, test = split_per_class(by_class, seed)
    else:
        lists = {key: [it for it, _ in _read_csv(file, False)] for key, file in files.items()}
        if "val" not in lists:
            logger.warning("%s: no val.csv; the val list is empty", path)
        train, val, test = lists["train"], lists.get("val", []), lists["test"]
    return build_dataset(name=name or (path.name if path.is_dir() else path.stem), image_root=root, train=train,
                         val=val, test=test, source=files.get("all", path), template=template, check=check_images)


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
    if (path / "train.csv").is_file() or len(_csvs_in(path)) == 1:
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
        elif "split_file" not in options:
            options["split_file"] = split_file_of(root).name
    return LOADERS[fmt](root, check_images=check_images, **options)


def split_file_of(path: Path) -> Path:
    """The split file of layout (c) at `path`: the file itself, `split.json`, or the folder's only
    `split_*.json`."""
    path = Path(path)
    if path.is_file():
        return path
    candidates = sorted(path.glob("split_*.json"))
    if not (path / SPLIT_JSON).is_file() and len(candidates) == 1:
        return candidates[0]
    return path / SPLIT_JSON


def class_names_of(path: Path) -> list[str]:
    """The class names of your own dataset at `path`, by label, read without listing or opening an
    image: the class folders' names, or the classes of its CSV or split file. Cheap enough for the
    workflow's start, which refuses a dataset with too few classes before any job runs."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "folders":
        return [folder.name for folder in class_folders(path)]
    if fmt == "csv":
        files = csv_files(path)
        return class_names({key: [it for it, _ in _read_csv(file, False)] for key, file in files.items()},
                           files.get("all", path))
    if fmt == "coop_json":
        split = split_file_of(path)
        return class_names(dict(zip(("train", "val", "test"), read_split_json(split))), split)
    raise ValueError(f"{path}: unknown dataset format; use one of {sorted(LOADERS)}")
