"""What every figure shares: the matplotlib style (on seaborn's paper style), method legends, tick fitting, deterministic saving.

Figures are `matplotlib.figure.Figure` objects with constrained layout at a paper width (one
column or the full page, from style.yaml); legends sit outside the data area, below the panels.
Saving strips everything that varies between runs (the PDF creation date), and fonts are
embedded as TrueType (Type 42), so the same inputs give the same bytes.
"""
from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Iterable, Iterator

import matplotlib

matplotlib.use("Agg")
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bmip.io import atomic_write  # noqa: E402
from bmip.report.style import font, method_style, size  # noqa: E402

DPI = 200  # PNG; the PDF is vector
logging.getLogger("fontTools").setLevel(logging.WARNING)  # it logs every glyph of every font subset at INFO
AVERAGE = "Average"  # how the "Average over N datasets" rows are labelled in figures
GRID = "#e6e6e6"
MUTED = {"linewidth": 1.0, "markersize": 3.5, "zorder": 2, "alpha": 0.95}
EMPHASIS = {"linewidth": 1.8, "markersize": 5.0, "zorder": 4, "alpha": 1.0}


def rc() -> dict[str, object]:
    """matplotlib settings of every figure: seaborn's "ticks" style in its "paper" context, then
    the project's sizes, fonts and grid."""
    import seaborn as sns

    f = font()
    base = float(f["size"])
    return {
        **sns.axes_style("ticks"), **sns.plotting_context("paper"),
        "font.family": f["family"], "font.size": base, "axes.titlesize": base, "axes.labelsize": base,
        "xtick.labelsize": base - 0.5, "ytick.labelsize": base - 0.5, "legend.fontsize": base - 0.5,
        "legend.title_fontsize": base, "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
        "axes.spines.top": False, "axes.spines.right": False, "axes.linewidth": 0.6, "axes.edgecolor": "#4d4d4d",
        "axes.grid": True, "axes.axisbelow": True, "grid.color": GRID, "grid.linewidth": 0.5,
        "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.major.size": 2.5, "ytick.major.size": 2.5,
        "lines.linewidth": 1.0, "patch.linewidth": 0.4, "figure.dpi": 100, "savefig.dpi": DPI,
        "figure.constrained_layout.h_pad": 0.03, "figure.constrained_layout.w_pad": 0.03,
        "path.simplify": False,
    }


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """The style every figure is built, drawn and saved in."""
    with matplotlib.rc_context(rc()):
        yield


def new_figure(width: str, height: float) -> Figure:
    """An empty figure of a paper width ("column" or "page") and `height` inches."""
    fig = Figure(figsize=(size(width), height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def line_style(method: str) -> dict[str, object]:
    """Keyword arguments of a method's lines and markers: its colour, marker and emphasis."""
    s = method_style(method)
    return {"color": s.color, "marker": s.marker, "gid": f"method:{method}", **(EMPHASIS if s.emphasis else MUTED)}


def bar_style(method: str) -> dict[str, object]:
    """Keyword arguments of a method's bars: baselines flat, emphasised methods outlined and on top."""
    s = method_style(method)
    edge = {"edgecolor": "#1a1a1a", "linewidth": 0.5, "zorder": 3} if s.emphasis else {"edgecolor": "none", "zorder": 2}
    return {"color": s.color, "gid": f"method:{method}", **edge}


def legend_columns(labels: list[str], width: str) -> int:
    """How many legend columns fit in the figure width at the legend's font size."""
    points = float(font()["size"]) - 0.5
    longest = max((len(label) for label in labels), default=1)
    item = (longest * 0.6 * points + 28) / 72  # text + handle + padding, inches
    return max(1, min(len(labels), math.floor(size(width) * 0.95 / item)))


def method_legend(fig: Figure, methods: Iterable[str], width: str, kind: str = "line") -> Legend:
    """One entry per method (in display order) below all panels, outside every data area; `kind`
    is what the figure draws: "line" (lines with markers), "marker" or "bar"."""
    methods = list(methods)
    handles: list[Artist] = []
    for m in methods:
        s = method_style(m)
        st = line_style(m)
        if kind == "bar":
            handles.append(Patch(facecolor=s.color, edgecolor="#1a1a1a" if s.emphasis else "none", linewidth=0.5))
        else:
            handles.append(Line2D([], [], color=s.color, marker=s.marker, markersize=st["markersize"],
                                  linewidth=st["linewidth"], linestyle="-" if kind == "line" else "none"))
    labels = [method_style(m).label for m in methods]
    return fig.legend(handles, labels, loc="outside lower center", ncol=legend_columns(labels, width),
                      frameon=False, handlelength=1.8, columnspacing=1.2)


def dataset_label(name: str) -> str:
    """A dataset's display name; "Average over N datasets" rows become "Average"."""
    from bmip.report.display import display_dataset, is_average

    return AVERAGE if is_average(name) else display_dataset(str(name))


def fit_xticklabels(ax: Axes) -> None:
    """Rotate an axis' category labels if, set flat, any two of them would touch."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    if any(a.x1 + 2 > b.x0 for a, b in zip(boxes, boxes[1:])):
        for text in ax.get_xticklabels():
            text.set(rotation=30, ha="right", rotation_mode="anchor")


def empty(fig: Figure, what: str) -> Figure:
    """A figure saying there is nothing to draw (a protocol this experiment did not run)."""
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, f"no {what} in this experiment", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def panel_grid(fig: Figure, n: int, columns: int) -> list[Axes]:
    """`n` panels in rows of `columns`; unused cells stay empty."""
    rows = math.ceil(n / columns)
    grid = fig.add_gridspec(rows, min(n, columns))
    return [fig.add_subplot(grid[i // columns, i % columns]) for i in range(n)]


def save(fig: Figure, stem: Path) -> list[Path]:
    """`<stem>.png` and `<stem>.pdf`, atomically and byte-reproducibly."""
    out = []
    for suffix, metadata in ((".png", {"Software": None}), (".pdf", {"CreationDate": None, "Producer": None})):
        path = Path(stem).with_suffix(suffix)
        atomic_write(path, lambda tmp, s=suffix, m=metadata: fig.savefig(tmp, format=s[1:], dpi=DPI, metadata=m))
        out.append(path)
    return out
