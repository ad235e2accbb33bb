"""Accuracy figures from the tables: HM per dataset (bars, radar), base vs novel, open-world HM and
OpenworldAUC, open-world ratio sweep, domain generalisation. Datasets keep the tables' order (the
config's); methods style.yaml's.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bmip.report.display import is_average
from bmip.report.figures.inputs import Inputs
from bmip.report.figures.common import (
    AVERAGE, GRID, bar_style, dataset_label, empty, fit_xticklabels, line_style, method_legend, new_figure,
    panel_grid,
)
from bmip.report.style import ordered

PANEL_COLUMNS = 4  # small multiples per row on a page-wide figure
PANEL_HEIGHT = 1.45  # inches per row of small multiples


def _is_average(table: pd.DataFrame) -> pd.Series:
    return is_average(table["dataset"])


def _datasets(table: pd.DataFrame) -> list[str]:
    """Datasets in table order, without the average rows."""
    return list(dict.fromkeys(table.loc[~_is_average(table), "dataset"].astype(str)))


def _panels(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows): the average over datasets first, then each dataset."""
    panels = [(AVERAGE, table[_is_average(table)])] if _is_average(table).any() else []
    return panels + [(dataset_label(d), table[table["dataset"].astype(str) == d]) for d in _datasets(table)]


def _value(rows: pd.DataFrame, method: str, column: str) -> float:
    found = rows.loc[rows["method"] == method, column] if column in rows else pd.Series(dtype=float)
    return float(found.iloc[0]) if len(found) and pd.notna(found.iloc[0]) else math.nan


def _title(ax, title: str) -> None:
    ax.set_title(title, fontweight="bold" if title == AVERAGE else "normal")


def _label_outer(axes: list, columns: int, xlabel: str, ylabel: str) -> None:
    """Axis labels once per row (left) and per column (lowest panel)."""
    for i, ax in enumerate(axes):
        if i % columns == 0:
            ax.set_ylabel(ylabel)
        if i + columns >= len(axes):
            ax.set_xlabel(xlabel)


# ---------------------------------------------------------------- bars
def _bars(ax, table: pd.DataFrame, value: str, ylabel: str, labels: bool = True) -> None:
    """Into `ax`: one group of bars per dataset (and the average, set apart), one bar per method;
    the groups named under the axis when `labels`."""
    methods = ordered(table["method"])
    datasets = _datasets(table)
    average = table[_is_average(table)]
    groups = [(dataset_label(d), table[table["dataset"].astype(str) == d]) for d in datasets]
    positions = list(np.arange(len(groups), dtype=float))
    if not average.empty:
        groups.append((AVERAGE, average))
        positions.append(len(datasets) + 0.4)
    width = 0.84 / len(methods)
    for i, method in enumerate(methods):
        heights = [_value(rows, method, value) for _, rows in groups]
        ax.bar(np.array(positions) + (i - (len(methods) - 1) / 2) * width, heights, width, **bar_style(method))
    if not average.empty and datasets:
        ax.axvline(len(datasets) - 0.3, color="#9a9a9a", linewidth=0.6, linestyle=":", zorder=1)
    ax.set_xticks(positions, [title for title, _ in groups] if labels else [])
    known = value in table and table[value].notna().any()
    top = float(np.nanmax(table[value].to_numpy(dtype=float))) if known else 100.0
    ax.set(ylabel=ylabel, ylim=(0, min(100.0, math.ceil(top * 1.08 / 10) * 10) or 10),
           xlim=(positions[0] - 0.5, positions[-1] + 0.5))
    ax.grid(axis="x", visible=False)


def grouped_bars(table: pd.DataFrame, value: str, ylabel: str, what: str) -> Figure:
    """One group of bars per dataset (and the average, set apart), one bar per method."""
    fig = new_figure("page", 2.6)
    if table.empty:
        return empty(fig, what)
    ax = fig.add_subplot()
    _bars(ax, table, value, ylabel)
    method_legend(fig, ordered(table["method"]), "page", kind="bar")
    fit_xticklabels(ax)
    return fig


def hm_per_dataset(inputs: Inputs) -> Figure:
    """HM of base and novel accuracy per dataset and method, and the average over datasets."""
    return grouped_bars(inputs.table("base2novel"), "hm", "HM of base and novel accuracy (%)", "base-to-novel results")


def open_world(inputs: Inputs) -> Figure:
    """Open-world HM of base-part and novel-part accuracy and, beside it, OpenworldAUC (which also
    asks whether the model tells base images from novel ones), per dataset and method."""
    table = inputs.table("open_world")
    fig = new_figure("page", 4.2)
    if table.empty:
        return empty(fig, "open-world results")
    top, bottom = fig.subplots(2, 1, sharex=True)
    _bars(top, table, "hm", "HM of base and novel (%)", labels=False)
    _bars(bottom, table, "openworld_auc", "OpenworldAUC (%)")
    method_legend(fig, ordered(table["method"]), "page", kind="bar")
    fit_xticklabels(bottom)
    return fig


def domain_generalization(inputs: Inputs) -> Figure:
    """Accuracy of the source-trained model on each shifted target, and the average over targets."""
    return grouped_bars(inputs.table("domain_generalization"), "accuracy", "accuracy (%)",
                        "domain-generalisation results")


# ---------------------------------------------------------------- radar
def _spoke_range(values: np.ndarray) -> tuple[float, float]:
    """Whole-number HM at the centre and at the rim of one spoke, a margin beyond its values."""
    values = values[~np.isnan(values)]
    if not len(values):
        return 0.0, 100.0
    low, high = float(values.min()), float(values.max())
    margin = max(1.0, 0.25 * (high - low))
    return max(0.0, math.floor(low - margin)), min(100.0, math.ceil(high + margin / 2))


def hm_radar(inputs: Inputs) -> Figure:
    """HM per dataset, one spoke per dataset, each on its own scale (centre and rim under its name)."""
    table = inputs.table("base2novel")
    fig = new_figure("column", 3.9)
    rows = table[~_is_average(table)] if not table.empty else table
    if rows.empty:
        return empty(fig, "base-to-novel results")
    datasets, methods = _datasets(rows), ordered(rows["method"])
    angles = np.linspace(0, 2 * np.pi, len(datasets), endpoint=False)
    ranges = [_spoke_range(rows.loc[rows["dataset"].astype(str) == d, "hm"].to_numpy(dtype=float)) for d in datasets]
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_offset(np.pi / 2)
    ax.set_theta_direction(-1)
    for method in methods:
        part = rows[rows["method"] == method]
        radii = []
        for d, (low, high) in zip(datasets, ranges):
            value = _value(part[part["dataset"].astype(str) == d], method, "hm")
            radii.append((value - low) / (high - low) if high > low else 0.5)
        style = line_style(method)
        style["markersize"] = float(style["markersize"]) * 0.7
        ax.plot([*angles, angles[0]], [*radii, radii[0]], **style)
    labels = [f"{dataset_label(d)}\n{low:g}–{high:g}" for d, (low, high) in zip(datasets, ranges)]
    ax.set_xticks(angles, labels)
    ax.tick_params(axis="x", pad=6)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0], [])
    ax.set_ylim(0, 1)
    ax.grid(color=GRID, linewidth=0.5)
    ax.spines["polar"].set(color="#bdbdbd", linewidth=0.5)
    method_legend(fig, methods, "column")
    # Constrained layout underestimates how far polar tick labels reach: keep room around them.
    fig.get_layout_engine().set(h_pad=0.15, w_pad=0.1)
    return fig


# ---------------------------------------------------------------- small multiples
def _hm_curves(ax, low: float, high: float) -> None:
    """Light curves of equal HM (every 5 points) under the points of a base-vs-novel panel."""
    base = np.linspace(max(low, 1e-3), high, 200)
    for h in range(5, 100, 5):
        novel = h * base / np.maximum(2 * base - h, 1e-9)
        novel[(2 * base - h) <= 0] = np.nan
        ax.plot(base, novel, color="#dcdcdc", linewidth=0.5, linestyle=(0, (2, 2)), zorder=1, gid="hm-curve")


def base_vs_novel(inputs: Inputs) -> Figure:
    """Base against novel accuracy (mean ± sd over seeds), one panel per dataset after the average."""
    table = inputs.table("base2novel")
    if table.empty:
        return empty(new_figure("page", 2.0), "base-to-novel results")
    panels, methods = _panels(table), ordered(table["method"])
    columns = min(PANEL_COLUMNS, len(panels))
    fig = new_figure("page", PANEL_HEIGHT * math.ceil(len(panels) / columns) + 0.65)
    axes = panel_grid(fig, len(panels), columns)
    for ax, (title, rows) in zip(axes, panels):
        values = rows[["base", "novel"]].to_numpy(dtype=float)
        spread = rows.reindex(columns=["base_std", "novel_std"]).fillna(0).to_numpy(dtype=float)
        values = np.concatenate([values - spread, values + spread])
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
        pad = max(1.5, 0.12 * (high - low))
        low, high = max(0.0, low - pad), high + pad
        _hm_curves(ax, low, high)
        for method in methods:
            style = line_style(method)
            errors = {k: _value(rows, method, f"{k}_std") for k in ("base", "novel")}
            ax.errorbar(_value(rows, method, "base"), _value(rows, method, "novel"),
                        xerr=None if math.isnan(errors["base"]) else errors["base"],
                        yerr=None if math.isnan(errors["novel"]) else errors["novel"],
                        fmt=style["marker"], color=style["color"], markersize=style["markersize"],
                        elinewidth=0.6, capsize=0, zorder=style["zorder"], gid=style["gid"])
        ax.set(xlim=(low, high), ylim=(low, high))
        _title(ax, title)
        ax.set_aspect("equal", adjustable="box")
    _label_outer(axes, columns, "base (%)", "novel (%)")
    method_legend(fig, methods, "page", kind="marker")
    return fig


def _ratio_ticks(ratios: list[int]) -> list[int]:
    return ratios if len(ratios) <= 5 else [r for r in (0, 25, 50, 75, 100) if min(ratios) <= r <= max(ratios)]


def open_world_ratio(inputs: Inputs) -> Figure:
    """Accuracy against the share r of base classes in the test label space: the average, then per dataset."""
    table = inputs.table("open_world_ratio")
    if table.empty:
        return empty(new_figure("page", 2.0), "open-world results")
    panels, methods = _panels(table), ordered(table["method"])
    ratios = sorted({int(r) for r in table["ratio"]})
    columns = min(PANEL_COLUMNS, len(panels))
    fig = new_figure("page", PANEL_HEIGHT * math.ceil(len(panels) / columns) + 0.65)
    axes = panel_grid(fig, len(panels), columns)
    for ax, (title, rows) in zip(axes, panels):
        for method in methods:
            part = rows[rows["method"] == method].sort_values("ratio")
            if not part.empty:
                ax.plot(part["ratio"].astype(int), part["accuracy"], **line_style(method))
        ax.set_xticks(_ratio_ticks(ratios))
        ax.set(xlim=(max(ratios) + 8, min(ratios) - 8))
        _title(ax, title)
    _label_outer(axes, columns, "base classes r (%)", "accuracy (%)")
    method_legend(fig, methods, "page")
    return fig
