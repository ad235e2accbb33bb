"""Readers for CoOp's on-disk formats: split JSON files, FGVC-Aircraft's text lists, ImageNet folders.

Each reader returns the three lists in CoOp's order. Readers are looked up by name in `READERS`
(a dataset spec names its reader), so adding a format is adding one function and one entry.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import DatasetNotFoundError, SplitFileError
from .items import Item, items_from_lists
from .registry import DatasetSpec

SPLIT_KEYS = ("train", "val", "test")


@dataclass
class RawSplits:
    """What a reader found: the lists, the file they came from, and whether they came from a listing."""

    train: list[Item]
    val: list[Item]
    test: list[Item]
    source: Path
    listed: bool = False


def read_split_json(path: Path) -> tuple[list[Item], list[Item], list[Item]]:
    """A CoOp split file {"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}, in file order."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SplitFileError(f"split file {path} is not valid JSON ({e}); download it again") from e
    if not isinstance(doc, dict):
        raise SplitFileError(f'split file {path}: expected an object with "train", "val" and "test" lists')
    missing = [k for k in SPLIT_KEYS if not isinstance(doc.get(k), list)]
    if missing:
        raise SplitFileError(f"split file {path}: missing list(s) {missing}; expected keys {list(SPLIT_KEYS)}")
    train, val, test = (items_from_lists(doc[k], path, k) for k in SPLIT_KEYS)
    return train, val, test


def _missing_file(spec: DatasetSpec, path: Path, root: Path, what: str) -> DatasetNotFoundError:
    mirrors = [u for s in spec.sources if s.filename == path.name for u in s.manual_urls]
    also = f" (or download it from {mirrors[0]} and put it there)" if mirrors else ""
    return DatasetNotFoundError(
        f"{spec.display_name}: {what} {path} is missing. Run `bmip download {spec.name} --root {root}`{also}."
    )


def read_coop_json(spec: DatasetSpec, dataset_dir: Path, root: Path) -> RawSplits:
    """A dataset described by CoOp's split_zhou_<Name>.json (class names as stored in the file)."""
    path = dataset_dir / spec.split_file
    if not path.is_file():
        raise _missing_file(spec, path, root, "split file")
    train, val, test = read_split_json(path)
    if spec.classnames_file:
        check_label_names(path, train + val + test, dataset_dir / spec.classnames_file)
    return RawSplits(train, val, test, path)


def check_label_names(split_path: Path, items: list[Item], names_path: Path) -> None:
    """Check split names against a {"<label+1>": name} file such as Flowers' cat_to_name.json, if present."""
    if not names_path.is_file():
        return
    names = json.loads(names_path.read_text(encoding="utf-8"))
    for it in items:
        expected = names.get(str(it.label + 1))
        if expected != it.classname:
            raise SplitFileError(
                f"split file {split_path}: label {it.label} is {it.classname!r} but {names_path} "
                f"names category {it.label + 1} {expected!r}; the two files do not belong together"
            )


def read_fgvc_txt(spec: DatasetSpec, dataset_dir: Path, root: Path) -> RawSplits:
    """FGVC-Aircraft as CoOp reads it: label = line index in variants.txt, images_variant_<split>.txt lists."""
    variants_path = dataset_dir / spec.classnames_file
    if not variants_path.is_file():
        raise _missing_file(spec, variants_path, root, "class list")
    classnames = [line.strip() for line in variants_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    label_of = {c: i for i, c in enumerate(classnames)}
    lists = []
    for key in SPLIT_KEYS:
        path = dataset_dir / f"images_variant_{key}.txt"
        if not path.is_file():
            raise _missing_file(spec, path, root, "split list")
        items = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.strip().split(" ")
            if not parts[0]:
                continue
            classname = " ".join(parts[1:])
            if classname not in label_of:
                raise SplitFileError(f"split list {path}, line {n}: variant {classname!r} is not in {variants_path}")
            items.append(Item(parts[0] + ".jpg", label_of[classname], classname))
        lists.append(items)
    return RawSplits(*lists, source=variants_path)


def read_classnames_txt(path: Path) -> dict[str, str]:
    """CoOp's ImageNet classnames.txt: one "wnid class name" per line, in label order."""
    names: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.strip().split(" ")
        if not parts[0]:
            continue
        if len(parts) < 2:
            raise SplitFileError(f"class names file {path}, line {n}: expected 'wnid name', got {line!r}")
        names[parts[0]] = " ".join(parts[1:])
    return names


def _imagenet_names(spec: DatasetSpec, dataset_dir: Path, root: Path) -> tuple[dict[str, str], Path]:
    """classnames.txt of the dataset, falling back to ImageNet's (CoOp asks to copy it into each variant)."""
    for path in (dataset_dir / spec.classnames_file, root / "imagenet" / spec.classnames_file):
        if path.is_file():
            return read_classnames_txt(path), path
    raise _missing_file(spec, dataset_dir / spec.classnames_file, root, "class names file")


def _files(folder: Path) -> list[str]:
    """Non-hidden files of a folder, sorted by name (CoOp lists them unsorted: file-system order)."""
    return sorted(e.name for e in os.scandir(folder) if not e.name.startswith(".") and e.is_file())


def _subdirs(folder: Path, spec: DatasetSpec, root: Path) -> list[str]:
    if not folder.is_dir():
        raise _missing_file(spec, folder, root, "image folder")
    return sorted(e.name for e in os.scandir(folder) if not e.name.startswith(".") and e.is_dir())


def _folder_items(base: Path, prefix: str, folders: list[str], names: dict[str, str], names_path: Path) -> list[Item]:
    items = []
    for label, folder in enumerate(folders):
        if folder not in names:
            raise SplitFileError(f"class names file {names_path} has no entry for folder {base / folder}")
        items.extend(Item(f"{prefix}{folder}/{f}", label, names[folder]) for f in _files(base / folder))
    return items


def read_imagenet_folders(spec: DatasetSpec, dataset_dir: Path, root: Path) -> RawSplits:
    """ImageNet: labels = sorted wnid folders of images/train; val is the ImageNet val set (= test)."""
    names, names_path = _imagenet_names(spec, dataset_dir, root)
    image_root = dataset_dir / spec.image_dir
    train_folders = _subdirs(image_root / "train", spec, root)
    val_folders = _subdirs(image_root / "val", spec, root)
    if val_folders != train_folders:
        raise DatasetNotFoundError(
            f"ImageNet: {image_root / 'val'} must hold the same wnid folders as {image_root / 'train'} "
            f"({len(val_folders)} vs {len(train_folders)} folders); sort the val images into class folders"
        )
    train = _folder_items(image_root / "train", "train/", train_folders, names, names_path)
    test = _folder_items(image_root / "val", "val/", val_folders, names, names_path)
    return RawSplits(train, list(test), test, names_path, listed=True)


def read_imagenet_numbered(spec: DatasetSpec, dataset_dir: Path, root: Path) -> RawSplits:
    """ImageNet-V2: folder <i> holds images of ImageNet label i; names in classnames.txt order."""
    names, names_path = _imagenet_names(spec, dataset_dir, root)
    ordered = list(names.values())
    image_root = dataset_dir / spec.image_dir
    folders = _subdirs(image_root, spec, root)
    expected = [str(i) for i in range(len(ordered))]
    if sorted(folders, key=lambda f: (len(f), f)) != expected:
        raise DatasetNotFoundError(f"{spec.display_name}: {image_root} must hold folders 0..{len(ordered) - 1}")
    items = [Item(f"{i}/{f}", i, ordered[i]) for i in range(len(ordered)) for f in _files(image_root / str(i))]
    return RawSplits([], [], items, names_path, listed=True)


def read_imagenet_wnids(spec: DatasetSpec, dataset_dir: Path, root: Path) -> RawSplits:
    """ImageNet-Sketch/-A/-R: labels = sorted wnid folders (200 for A and R), names from classnames.txt."""
    names, names_path = _imagenet_names(spec, dataset_dir, root)
    image_root = dataset_dir / spec.image_dir
    items = _folder_items(image_root, "", _subdirs(image_root, spec, root), names, names_path)
    return RawSplits([], [], items, names_path, listed=True)


Reader = Callable[[DatasetSpec, Path, Path], RawSplits]

READERS: dict[str, Reader] = {
    "coop_json": read_coop_json,
    "fgvc_txt": read_fgvc_txt,
    "imagenet_folders": read_imagenet_folders,
    "imagenet_numbered": read_imagenet_numbered,
    "imagenet_wnids": read_imagenet_wnids,
}
