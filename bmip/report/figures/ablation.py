"""An ablation's figure: the primary metric per variant (every dataset and the average) and each
variant's paired difference to the reference with its 95% bootstrap interval.

Variants are categories in declared order; a sweep over numbers is drawn as lines over the swept
value. The average is drawn in the ablation's method colour (style.yaml), datasets in greys with
one marker each; legends sit below the panels, outside the data.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bmip.report.display import is_average
from bmip.report.figures.common import AVERAGE, dataset_label, empty, fit_xticklabels, new_figure
from bmip.report.style import method_style

DATASET_GREYS = ["#4d4d4d", "#7a7a7a", "#a3a3a3", "#5c6b7a", "#7a6b5c", "#8c8c8c"]
DATASET_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p"]


def _positions(ablation: Any) -> tuple[list[float], list[str], bool]:
    """x of each variant: the swept values when every variant is a numeric sweep value, else 0..n-1."""
    values = [v.swept for v in ablation.variants]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and ablation.sweep_key is not None:
        return [float(v) for v in values], [str(v) for v in values], True
    return [float(i) for i in range(len(values))], [v.label for v in ablation.variants], False


def draw_ablation(table: pd.DataFrame, ablation: Any) -> Figure:
    """Left: the primary metric per variant; right: the paired differences with their intervals.
    Named variants are rows (a forest plot, the reference on top); a numeric sweep is lines over x."""
    rows_n = len(ablation.variants)
    x, ticks, swept = _positions(ablation)
    fig = new_figure("page", 2.5 if swept else max(1.9, 0.9 + 0.2 * rows_n))
    if table.empty:
        return empty(fig, f"results of ablation {ablation.name}")
    protocol = ablation.protocols[0]
    rows = table[table["protocol"] == protocol]
    metric = "hm" if "hm" in rows and rows["hm"].notna().any() else "accuracy"
    name = "HM" if metric == "hm" else "accuracy"
    if not swept:
        x = [float(-i) for i in range(rows_n)]  # top to bottom in declared order
    order = {v.name: i for i, v in enumerate(ablation.variants)}
    is_avg = is_average(rows["dataset"])
    datasets = list(dict.fromkeys(rows.loc[~is_avg, "dataset"].astype(str)))
    left, right = fig.subplots(1, 2, sharey=not swept)
    style = method_style(ablation.method)

    def plot(ax, pos, values, **kw):  # values along y for a sweep, along x for named variants
        return ax.plot(pos, values, **kw) if swept else ax.plot(values, pos, **kw)

    handles, labels = [], []
    linestyle = "-" if swept else "none"
    for i, dataset in enumerate(datasets):
        part = rows[rows["dataset"].astype(str) == dataset].sort_values("method", key=lambda s: s.map(order))
        colour, marker = DATASET_GREYS[i % len(DATASET_GREYS)], DATASET_MARKERS[i % len(DATASET_MARKERS)]
        kw = dict(color=colour, marker=marker, markersize=3, linewidth=0.7, linestyle=linestyle)
        plot(left, [x[order[m]] for m in part["method"]], part[metric], zorder=2, **kw)
        handles.append(Line2D([], [], **kw))
        labels.append(dataset_label(dataset))
    average = rows[is_avg].sort_values("method", key=lambda s: s.map(order))
    kw = dict(color=style.color, marker=style.marker, markersize=6, linewidth=1.8, linestyle=linestyle)
    plot(left, [x[order[m]] for m in average["method"]], average[metric], zorder=4, **kw)
    handles.append(Line2D([], [], **kw))
    labels.append(f"{AVERAGE} ({style.label})")
    # Right: each variant's paired difference to the reference, over datasets x seeds.
    others = average[~average["method"].eq(ablation.reference)]
    pos = np.array([x[order[m]] for m in others["method"]])
    err = [(others["delta"] - others["delta_low"]).to_numpy(), (others["delta_high"] - others["delta"]).to_numpy()]
    bars = dict(fmt=style.marker, color=style.color, markersize=5, ecolor="#4d4d4d", elinewidth=0.9, capsize=2, zorder=3)
    if swept:
        right.errorbar(pos, others["delta"], yerr=err, **bars)
        right.axhline(0, color="#4d4d4d", linewidth=0.6, linestyle=":", zorder=1)
    else:
        right.errorbar(others["delta"], pos, xerr=err, **bars)
        right.axvline(0, color="#4d4d4d", linewidth=0.6, linestyle=":", zorder=1)
    ref = x[order[ablation.reference]]
    plot(right, [ref], [0], marker="o", markersize=4, markerfacecolor="white", markeredgecolor="#4d4d4d", zorder=3)
    reference = next(v.label for v in ablation.variants if v.name == ablation.reference)
    delta_label = f"Δ {name} vs {reference} (points)"
    left.set_title(f"{name} per variant ({protocol})")
    single = others["delta_low"].isna().any()  # a row of one pair has no interval
    right.set_title("paired difference, 95% bootstrap CI" + (" (n = 1: no interval)" if single else ""))
    if swept:
        left.set(ylabel=f"{name} (%)", xlabel=ablation.sweep_key)
        right.set(ylabel=delta_label, xlabel=ablation.sweep_key)
        for ax in (left, right):
            ax.set_xticks(x, ticks)
            fit_xticklabels(ax)
    else:
        left.set(xlabel=f"{name} (%)")
        right.set(xlabel=delta_label)
        left.set_yticks(x, ticks)
        left.set_ylim(x[-1] - 0.6, x[0] + 0.6)
        right.tick_params(labelleft=False)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False,
               handlelength=1.8, columnspacing=1.2)
    return fig
