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
    fig = new_figure("page", 2.5)
    if table.empty:
        return empty(fig, f"results of ablation {ablation.name}")
    protocol = ablation.protocols[0]
    rows = table[table["protocol"] == protocol]
    metric = "hm" if "hm" in rows and rows["hm"].notna().any() else "accuracy"
    name = "HM" if metric == "hm" else "accuracy"
    x, ticks, swept = _positions(ablation)
    order = {v.name: i for i, v in enumerate(ablation.variants)}
    is_avg = rows["dataset"].astype(str).str.startswith("Average over")
    datasets = list(dict.fromkeys(rows.loc[~is_avg, "dataset"].astype(str)))
    left, right = fig.subplots(1, 2, width_ratios=[1.4, 1])
    style = method_style(ablation.method)
    handles, labels = [], []
    linestyle = "-" if swept else "none"
    for i, dataset in enumerate(datasets):
        part = rows[rows["dataset"].astype(str) == dataset].sort_values("method", key=lambda s: s.map(order))
        xs = [x[order[m]] for m in part["method"]]
        colour, marker = DATASET_GREYS[i % len(DATASET_GREYS)], DATASET_MARKERS[i % len(DATASET_MARKERS)]
        left.plot(xs, part[metric], color=colour, marker=marker, markersize=3, linewidth=0.7, linestyle=linestyle,
                  zorder=2)
        handles.append(Line2D([], [], color=colour, marker=marker, markersize=3, linewidth=0.7, linestyle=linestyle))
        labels.append(dataset_label(dataset))
    average = rows[is_avg].sort_values("method", key=lambda s: s.map(order))
    xs = [x[order[m]] for m in average["method"]]
    left.plot(xs, average[metric], color=style.color, marker=style.marker, markersize=6, linewidth=1.8,
              linestyle="-" if swept else "none", zorder=4)
    handles.append(Line2D([], [], color=style.color, marker=style.marker, markersize=6, linewidth=1.8,
                          linestyle="-" if swept else "none"))
    labels.append(f"{AVERAGE} ({style.label})")
    left.set(ylabel=f"{name} (%)", title=f"{name} per variant ({protocol})")
    # Right: the paired difference of each variant to the reference, average over datasets x seeds.
    others = average[~average["method"].eq(ablation.reference)]
    ox = np.array([x[order[m]] for m in others["method"]])
    low = (others["delta"] - others["delta_low"]).to_numpy()
    high = (others["delta_high"] - others["delta"]).to_numpy()
    right.errorbar(ox, others["delta"], yerr=[low, high], fmt=style.marker, color=style.color, markersize=5,
                   ecolor="#4d4d4d", elinewidth=0.9, capsize=2, zorder=3)
    ref_x = x[order[ablation.reference]]
    right.axhline(0, color="#4d4d4d", linewidth=0.6, linestyle=":", zorder=1)
    right.plot([ref_x], [0], marker="o", markersize=4, markerfacecolor="white", markeredgecolor="#4d4d4d", zorder=3)
    reference = next(v.label for v in ablation.variants if v.name == ablation.reference)
    right.set(ylabel=f"Δ {name} vs {reference} (points)", title="paired difference, 95% bootstrap CI")
    for ax in (left, right):
        ax.set_xticks(x, ticks)
        if swept:
            ax.set_xlabel(ablation.sweep_key)
        fit_xticklabels(ax)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False,
               handlelength=1.8, columnspacing=1.2)
    return fig
