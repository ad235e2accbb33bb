"""BMIP's gates: the learned mixing weight w per tower and deep block, per dataset and BMIP variant,
and how much w varies across inputs.

w is the share of a block's own prompt in its prompt slots (1 - w comes from the other tower);
the gates start at w = 0.5. The top rows pool statistics exactly over the test images (vision) or
class prompts (text), the prompt slots, the seeds and the label spaces of the gate files given.
The bottom row is the range of w across the inputs of one evaluation (max - min, the largest of
any record; log scale): a gate that cannot tell inputs apart draws ~1e-3 or less there. The same
numbers are in the gate table (bmip.report.gates), written beside the figure.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from bmip.engine.gates import FORMAT, STATS, TOWERS, pool
from bmip.report.figures.inputs import Inputs
from bmip.report.figures.common import dataset_label, empty, line_style, new_figure
from bmip.report.style import method_style, ordered

DATASET_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")
TOWER_LINES = {"vision": "-", "text": "--"}  # the range row: one line per tower
RANGE_FLOOR = 1e-7  # the range row draws smaller ranges (a constant gate's 0) here: w is float32, spacing 6e-8 near 0.5
COLUMNS = ["protocol", "method", "dataset", "seed", "part", "tower", "block", "n",
           *(f"w_{s}" for s in STATS), *(f"s_{s}" for s in STATS)]


class GateFileError(ValueError):
    """A gate file given to the figures is not one."""


def read_gates(files: Iterable[Path]) -> pd.DataFrame:
    """One row per (gate file, label space, tower, block), files read in path order."""
    rows = []
    for path in sorted((Path(f) for f in files), key=lambda p: p.as_posix()):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise GateFileError(f"{path}: cannot read the gate file ({err}); rerun its evaluation") from err
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise GateFileError(f"{path}: not a {FORMAT} file (written by `bmip evaluate` for BMIP runs)")
        for part, towers in sorted((doc["parts"] or {}).items()):  # None: a method without gates
            for tower in TOWERS:
                for block, entry in sorted(towers.get(tower, {}).items(), key=lambda kv: int(kv[0])):
                    s = entry.get("s") or {}
                    rows.append([doc["protocol"], doc["method"], doc["dataset"], doc["seed"], part, tower, int(block),
                                 entry["n"], *(entry["w"][k] for k in STATS), *(s.get(k, np.nan) for k in STATS)])
    return pd.DataFrame(rows, columns=COLUMNS)


def _pooled(rows: pd.DataFrame) -> dict[str, float] | None:
    return pool({"n": int(r.n), "w": {k: getattr(r, f"w_{k}") for k in STATS}} for r in rows.itertuples())


def _dataset_order(inputs: Inputs, present: Iterable[str]) -> list[str]:
    """The base-to-novel table's dataset order (the config's), then any others by name."""
    table = inputs.table("base2novel")
    known = list(dict.fromkeys(table["dataset"].astype(str))) if "dataset" in table else []
    present = set(present)
    return [d for d in known if d in present] + sorted(present - set(known))


def _ranges(part: pd.DataFrame, blocks: list[int]) -> np.ndarray:
    """Per block, the largest max - min of w across the inputs of one gate record (NaN: none)."""
    spread = (part["w_max"] - part["w_min"]).groupby(part["block"]).max()
    return np.array([max(float(spread[b]), RANGE_FLOOR) if b in spread.index else np.nan for b in blocks])


def _range_axis(ax, part: pd.DataFrame, blocks: list[int], style: dict, top: float) -> None:
    """The bottom row: per tower, the range of w across inputs per block, on a log scale."""
    for tower in TOWERS:
        ax.plot(blocks, _ranges(part[part["tower"] == tower], blocks), color=style["color"],
                linestyle=TOWER_LINES[tower], marker="o" if tower == "vision" else "s", markersize=3.0,
                markerfacecolor=style["color"] if tower == "vision" else "white", linewidth=1.0, zorder=3,
                gid=style["gid"])
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())  # decades only: the row is read to an order of magnitude
    ax.set(ylim=(RANGE_FLOOR / 2.5, top), xlim=(blocks[0] - 0.5, blocks[-1] + 0.5))  # the floor's markers whole
    ax.set_xticks(blocks)
    ax.grid(axis="x", visible=False)


def bmip_gates(inputs: Inputs) -> Figure:
    """Mean w (marker), ± one standard deviation (thick bar) and min-max (thin line), per block and
    dataset; below, the range of w across the inputs of one evaluation, per tower and block."""
    gates = inputs.gates
    if gates is None or gates.empty:
        return empty(new_figure("page", 2.0), "BMIP runs (gate statistics)")
    methods = ordered(gates["method"])
    datasets = _dataset_order(inputs, gates["dataset"].astype(str))
    blocks = sorted(gates["block"].unique())
    # One w axis for every panel, centred on the gates' start (0.5) and zoomed to what is drawn:
    # gates that barely moved stay readable, and panels stay comparable.
    reach = float(np.nanmax(np.abs(gates[["w_min", "w_max"]].to_numpy(dtype=float) - 0.5)))
    half = min(0.5, max(0.01, reach * 1.15))
    ranges = (gates["w_max"] - gates["w_min"]).to_numpy(dtype=float)
    top = min(1.0, 10 ** math.ceil(math.log10(max(float(np.nanmax(ranges)), RANGE_FLOOR) * 1.5)))
    fig = new_figure("page", 4.4 + 0.25 * (len(datasets) > 6))
    grid = fig.add_gridspec(len(TOWERS) + 1, len(methods), height_ratios=[1.0] * len(TOWERS) + [0.9])
    step = 0.7 / max(len(datasets), 1)
    for c, method in enumerate(methods):
        style = line_style(method)
        for r, tower in enumerate(TOWERS):
            ax = fig.add_subplot(grid[r, c])
            ax.axhline(0.5, color="#9a9a9a", linewidth=0.6, linestyle="--", zorder=1)
            part = gates[(gates["method"] == method) & (gates["tower"] == tower)]
            for j, dataset in enumerate(datasets):
                for block in blocks:
                    stats = _pooled(part[(part["dataset"].astype(str) == dataset) & (part["block"] == block)])
                    if stats is None:
                        continue
                    x = block + (j - (len(datasets) - 1) / 2) * step
                    ax.vlines(x, stats["min"], stats["max"], color=style["color"], linewidth=0.5, zorder=2,
                              gid=style["gid"])
                    ax.vlines(x, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=style["color"],
                              linewidth=1.6, zorder=3, gid=style["gid"])
                    ax.plot(x, stats["mean"], marker=DATASET_MARKERS[j % len(DATASET_MARKERS)], markersize=4.5,
                            color=style["color"], markeredgecolor="white", markeredgewidth=0.5, linestyle="none",
                            zorder=4, gid=style["gid"])
            ax.set_xticks(blocks)
            ax.set(ylim=(0.5 - half, 0.5 + half), xlim=(blocks[0] - 0.5, blocks[-1] + 0.5))
            ax.grid(axis="x", visible=False)
            if r == 0:  # a variant's or a regulariser's part on a line of its own: titles stay in their column
                ax.set_title(method_style(method).label.replace("@", "\n@").replace("+", "\n+"))
            ax.tick_params(axis="x", labelbottom=False)
            if c == 0:
                ax.set_ylabel(f"w, {tower} tower")
            else:  # one w axis for every panel: its numbers once, at the left
                ax.tick_params(axis="y", labelleft=False)
        ax = fig.add_subplot(grid[len(TOWERS), c])
        _range_axis(ax, gates[gates["method"] == method], blocks, style, top)
        ax.set_xlabel("deep block k")
        if c == 0:
            ax.set_ylabel("range of w\nacross inputs")
        else:
            ax.tick_params(axis="y", labelleft=False)
    handles = [Line2D([], [], color="#4d4d4d", marker=DATASET_MARKERS[j % len(DATASET_MARKERS)], linestyle="none",
                      markersize=4.5) for j in range(len(datasets))]
    handles += [Line2D([], [], color="#4d4d4d", linestyle=TOWER_LINES[t], marker="o" if t == "vision" else "s",
                       markersize=3.0, markerfacecolor="#4d4d4d" if t == "vision" else "white") for t in TOWERS]
    labels = [dataset_label(d) for d in datasets] + [f"range, {t}" for t in TOWERS]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 8), frameon=False,
               title="dataset (means); tower (range of w across inputs)", handletextpad=0.3, columnspacing=1.2)
    return fig
