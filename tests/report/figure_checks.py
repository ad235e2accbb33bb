"""Reading a drawn figure back: the texts and data it drew, where, and in which colours.

Texts are recorded as matplotlib draws them (tick labels outside the view are never drawn, so
they are not counted); data are the lines, patches and collections of every axes, clipped to
their axes as drawn.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from matplotlib.collections import Collection, LineCollection, PathCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from bmip.report.style import method_style


@dataclass
class DrawnText:
    artist: Text
    box: Bbox

    @property
    def text(self) -> str:
        return self.artist.get_text()


@contextmanager
def _recording_texts(drawn: list[DrawnText]):
    original = Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(DrawnText(self, self.get_window_extent(renderer)))
        return original(self, renderer)

    Text.draw = draw
    try:
        yield
    finally:
        Text.draw = original


def drawn_texts(fig: Figure) -> list[DrawnText]:
    """Every non-empty text the figure draws, with its box in display pixels."""
    drawn: list[DrawnText] = []
    with _recording_texts(drawn):
        fig.canvas.draw()
    return drawn


def _overlap(a: Bbox, b: Bbox, tolerance: float = 0.5) -> bool:
    return a.x0 + tolerance < b.x1 and b.x0 + tolerance < a.x1 and a.y0 + tolerance < b.y1 and b.y0 + tolerance < a.y1


def _hits(artist, box: Bbox) -> bool:
    """Whether a data artist's drawn geometry touches `box` (display pixels)."""
    if isinstance(artist, Line2D):
        xy = artist.get_transform().transform(artist.get_xydata())
        xy = xy[np.isfinite(xy).all(axis=1)]
        if artist.get_marker() not in (None, "None", "", " ") and len(xy):
            r = artist.get_markersize() * artist.figure.dpi / 72 / 2
            if any(_overlap(Bbox([[x - r, y - r], [x + r, y + r]]), box) for x, y in xy):
                return True
        if artist.get_linestyle() in ("None", "", " ") or len(xy) < 2:
            return False
        path = artist.get_transform().transform_path(artist.get_path())
        return path.intersects_bbox(box, filled=False)
    if isinstance(artist, Patch):
        path = artist.get_transform().transform_path(artist.get_path())
        return path.intersects_bbox(box, filled=True)
    if isinstance(artist, PathCollection):
        offsets = artist.get_offset_transform().transform(artist.get_offsets())
        sizes = artist.get_sizes()
        r = np.sqrt(sizes.max() if len(sizes) else 36) * artist.figure.dpi / 72 / 2
        return any(_overlap(Bbox([[x - r, y - r], [x + r, y + r]]), box) for x, y in offsets)
    if isinstance(artist, Collection):
        filled = not isinstance(artist, LineCollection)
        return any(artist.get_transform().transform_path(p).intersects_bbox(box, filled=filled)
                   for p in artist.get_paths())
    return False


def layout_problems(fig: Figure) -> list[str]:
    """Texts that overlap each other, overlap data, or leave the figure; legends over a data area."""
    texts = drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    problems = []
    for i, a in enumerate(texts):
        if not (canvas.x0 - 1 <= a.box.x0 and a.box.x1 <= canvas.x1 + 1 and canvas.y0 - 1 <= a.box.y0
                and a.box.y1 <= canvas.y1 + 1):
            problems.append(f"text {a.text!r} leaves the figure")
        for b in texts[i + 1:]:
            if _overlap(a.box, b.box):
                problems.append(f"texts {a.text!r} and {b.text!r} overlap")
    for ax in fig.axes:
        data = [a for a in (*ax.lines, *ax.patches, *ax.collections) if a.get_visible()]
        if not ax.get_visible() or not data:
            continue
        area = ax.get_window_extent(renderer)
        for t in texts:
            clipped = Bbox.intersection(t.box, area)  # data are clipped to their axes
            if clipped is None or clipped.width <= 0.5 or clipped.height <= 0.5:
                continue
            hit = next((artist for artist in data if _hits(artist, clipped)), None)
            if hit is not None:
                problems.append(f"text {t.text!r} overlaps plotted data ({type(hit).__name__} {hit.get_gid() or ''}) "
                                f"in panel {ax.get_title()!r}")
        for legend in [*fig.legends, *(other.get_legend() for other in fig.axes if other.get_legend())]:
            if _overlap(legend.get_window_extent(renderer), area):
                problems.append(f"a legend lies over the data area of panel {ax.get_title()!r}")
    return problems


def method_colours(fig: Figure) -> dict[str, set[tuple[float, ...]]]:
    """Method -> every colour its data artists are drawn in (artists tagged gid 'method:<name>')."""
    found: dict[str, set[tuple[float, ...]]] = {}
    for artist in fig.findobj(lambda a: str(a.get_gid() or "").startswith("method:")):
        method = artist.get_gid().split(":", 1)[1]
        if isinstance(artist, Line2D):
            colour = artist.get_color()
        elif isinstance(artist, Patch):
            colour = artist.get_facecolor()
        else:
            colour = artist.get_facecolor()[0] if len(artist.get_facecolor()) else artist.get_edgecolor()[0]
        found.setdefault(method, set()).add(tuple(round(c, 3) for c in to_rgb(colour)))
    return found


def legend_methods(fig: Figure) -> list[tuple[str, tuple[float, ...]]]:
    """(label, colour) of every legend entry naming a method, in legend order."""
    entries = []
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        assert isinstance(legend, Legend)
        for text, handle in zip(legend.get_texts(), legend.legend_handles):
            colour = handle.get_color() if isinstance(handle, Line2D) else handle.get_facecolor()
            entries.append((text.get_text(), tuple(round(c, 3) for c in to_rgb(colour))))
    return entries


def style_colour(method: str) -> tuple[float, ...]:
    return tuple(round(c, 3) for c in to_rgb(method_style(method).color))
