"""How methods look in tables and figures, read from `style.yaml`: order, label, family, colour.

Every figure and table takes a method's label, colour, marker and position from here, so a
method looks the same everywhere. Names the file does not list (a new method, a combination
added later) still render: after the listed ones, sorted by name, in a fallback grey chosen by
a stable hash of the name. No matplotlib here: the tables and the workflow read it too.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

STYLE_FILE = Path(__file__).with_name("style.yaml")
OTHER = "other"  # the family of a method style.yaml does not list


@dataclass(frozen=True)
class MethodStyle:
    name: str
    label: str
    family: str
    color: str
    marker: str
    emphasis: bool
    rank: tuple[int, str]  # sort key: position in style.yaml, unknown names after, by name


@lru_cache(maxsize=1)
def _style() -> dict[str, Any]:
    return yaml.safe_load(STYLE_FILE.read_text())


def families() -> list[str]:
    """Method families in display order; `other` last."""
    return [*_style()["families"], OTHER]


@lru_cache(maxsize=None)
def method_style(name: str) -> MethodStyle:
    style = _style()
    listed = list(style["methods"])
    if name in style["methods"]:
        entry = style["methods"][name]
        return MethodStyle(name, entry["label"], entry["family"], entry["color"], entry["marker"],
                           bool(entry.get("emphasis", False)), (listed.index(name), ""))
    greys = style["fallback_colors"]
    grey = greys[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(greys)]
    return MethodStyle(name, name, OTHER, grey, "o", False, (len(listed), name))


def label(name: str) -> str:
    return method_style(name).label


def ordered(methods: Iterable[str]) -> list[str]:
    """Distinct method names in display order."""
    return sorted(set(methods), key=lambda m: method_style(m).rank)


def size(width: str) -> float:
    """A figure width in inches: "column" (one column of a two-column paper) or "page"."""
    return float(_style()["sizes"][width])


def font() -> dict[str, Any]:
    return dict(_style()["font"])
