"""The two value types every other module speaks: `Item` (one labelled image) and `Dataset`."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import SplitFileError


@dataclass(frozen=True)
class Item:
    """One labelled image. `path` is relative to the dataset's image root, so splits are portable."""

    path: str
    label: int
    classname: str

    def as_list(self) -> list:
        """The CoOp split-file form: [path, label, classname]."""
        return [self.path, self.label, self.classname]


@dataclass
class Dataset:
    """A loaded dataset: the three CoOp lists, the class names by label, and its prompt template.

    `sample_val` is False for ImageNet, whose val list is its test set: CoOp few-shot samples only its
    train list. `test_only` datasets (ImageNet-V2/-Sketch/-A/-R) have empty train and val lists.
    """

    name: str
    image_root: Path
    train: list[Item]
    val: list[Item]
    test: list[Item]
    classnames: list[str]
    template: str = "a photo of a {}."
    split_file: Path | None = None
    display_name: str = ""
    sample_val: bool = True
    test_only: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def abspath(self, item: Item) -> Path:
        """The image file of `item` on this machine."""
        return self.image_root / item.path


def canonical_items(items: Iterable[Item]) -> list[list]:
    """Items as plain JSON-able [path, label, classname] lists, in order."""
    return [[it.path, int(it.label), it.classname] for it in items]


def items_hash(items: Iterable[Item]) -> str:
    """SHA-256 of the canonical list of (path, label, classname), order included.

    Canonical form: compact JSON (separators "," and ":", UTF-8, no ASCII escaping) of
    [[path, label, classname], ...]. Provenance records use it to pin the exact images a run saw.
    """
    text = json.dumps(canonical_items(items), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def items_from_lists(rows: Sequence, source: Path | str, key: str) -> list[Item]:
    """Parse CoOp rows [path, label, classname]; a bad row is refused naming the file, key and index."""
    items = []
    for i, row in enumerate(rows):
        if not (isinstance(row, (list, tuple)) and len(row) == 3):
            raise _split_error(source, f'"{key}"[{i}] is {row!r}, expected [relative_path, label, classname]')
        path, label, classname = row
        if not isinstance(path, str) or not isinstance(classname, str):
            raise _split_error(source, f'"{key}"[{i}] = {row!r}: path and classname must be strings')
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise _split_error(source, f'"{key}"[{i}] = {row!r}: label must be an integer >= 0')
        items.append(Item(normalise_relpath(path, source, f'"{key}"[{i}]'), label, classname))
    return items


def normalise_relpath(path: str, source: Path | str, where: str) -> str:
    """A POSIX relative path inside the image root; absolute paths and '..' are refused."""
    p = path.replace("\\", "/")
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if p.startswith("/") or (len(p) > 1 and p[1] == ":") or ".." in parts or not parts:
        raise _split_error(source, f"{where}: path {path!r} must be relative to the image root, without '..'")
    return "/".join(parts)


def class_names(splits: dict[str, Sequence[Item]], source: Path | str) -> list[str]:
    """Class names sorted by label, after checking labels and names agree one-to-one.

    Labels must be exactly 0..n-1 over the union of the lists, as Dassl's num_classes = max label + 1
    assumes. Disagreement means the split file does not describe one labelling: it is refused.
    """
    by_label: dict[int, tuple[str, str]] = {}
    by_name: dict[str, tuple[int, str]] = {}
    for key, items in splits.items():
        for it in items:
            seen = by_label.setdefault(it.label, (it.classname, key))
            if seen[0] != it.classname:
                raise _split_error(
                    source,
                    f"label {it.label} is {seen[0]!r} in {seen[1]} but {it.classname!r} in {key} ({it.path})",
                )
            seen_name = by_name.setdefault(it.classname, (it.label, key))
            if seen_name[0] != it.label:
                raise _split_error(
                    source,
                    f"class {it.classname!r} has label {seen_name[0]} in {seen_name[1]} "
                    f"but {it.label} in {key} ({it.path})",
                )
    if not by_label:
        raise _split_error(source, "no items in any split")
    labels = sorted(by_label)
    if labels != list(range(len(labels))):
        missing = sorted(set(range(labels[-1] + 1)) - set(labels))
        raise _split_error(source, f"labels must be 0..{labels[-1]} without gaps; missing {missing[:10]}")
    return [by_label[y][0] for y in labels]


def _split_error(source: Path | str, what: str) -> SplitFileError:
    return SplitFileError(f"split file {source}: {what}. Fix or replace this file.")
