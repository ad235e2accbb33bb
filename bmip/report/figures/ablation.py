"""An ablation's figure: the primary metric per variant (every dataset and the average) and each
variant's paired difference Δ to the reference with its 95% intervals over seeds and over test
images, and each seed's Δ (bmip.report.statistics).

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
    # Right: each variant's Δ to the reference (averaged over datasets), its 95% interval over seeds
    # (thick; none for one seed) and over test images (thin), and each seed's Δ (small dots).
    others = average[~average["method"].eq(ablation.reference)]
    pos = np.array([x[order[m]] for m in others["method"]])
    shift = 0.18 if not swept else 0.0

    def bars(ax_pos, low, high, offset, **kw):
        err = [(others["delta"] - low).to_numpy(), (high - others["delta"]).to_numpy()]
        if swept:
            right.errorbar(ax_pos + offset, others["delta"], yerr=err, fmt="none", **kw)
        else:
            right.errorbar(others["delta"], ax_pos + offset, xerr=err, fmt="none", **kw)

    bars(pos, others["seed_low"], others["seed_high"], 0.0, ecolor="#4d4d4d", elinewidth=1.8, capsize=2.5, zorder=3)
    bars(pos, others["image_low"], others["image_high"], -shift, ecolor="#8c8c8c", elinewidth=0.8, capsize=1.5,
         zorder=3)
    for p_, seeds in zip(pos, others["seed_deltas"].astype(str)):
        values = [float(v) for v in seeds.split(";") if v and v != "nan"]
        plot(right, [p_ + shift] * len(values), values, linestyle="none", marker=".", markersize=3, color="#7a7a7a",
             zorder=2)
    plot(right, pos, others["delta"], linestyle="none", marker=style.marker, markersize=5, color=style.color, zorder=4)
    (right.axhline if swept else right.axvline)(0, color="#4d4d4d", linewidth=0.6, linestyle=":", zorder=1)
    ref = x[order[ablation.reference]]
    plot(right, [ref], [0], marker="o", markersize=4, markerfacecolor="white", markeredgecolor="#4d4d4d", zorder=3)
    reference = next(v.label for v in ablation.variants if v.name == ablation.reference)
    delta_label = f"Δ {name} vs {reference} (points)"
    left.set_title(f"{name} per variant ({protocol})")
    n_seeds = max((len([v for v in str(d).split(";") if v]) for d in others["seed_deltas"]), default=0)
    right.set_title(f"Δ, 95% CI: seeds (thick, n = {n_seeds}" + (": none" if n_seeds < 2 else "")
                    + "), images (thin)")
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
