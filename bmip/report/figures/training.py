"""Training curves: loss per epoch, one panel per (training protocol, method family)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator

from bmip.report.figures.inputs import Inputs
from bmip.report.figures.common import empty, line_style, method_legend, new_figure
from bmip.report.style import families, method_style, ordered

TRAININGS = {"base2novel": "base classes", "cross_dataset": "source, all classes"}
COLUMNS = ["protocol", "method", "dataset", "seed", "epoch", "loss"]


def read_train_logs(files: Iterable[Path]) -> pd.DataFrame:
    """`train_log.csv` files of .../train/<protocol>/<method>/<dataset>/seed<N>/, in path order."""
    frames = []
    for path in sorted((Path(f) for f in files), key=lambda p: p.as_posix()):
        frame = pd.read_csv(path)
        if frame.empty:
            continue
        seed_dir = path.parent
        frame["method"], frame["dataset"] = seed_dir.parent.parent.name, seed_dir.parent.name
        frame["protocol"], frame["seed"] = seed_dir.parent.parent.parent.name, seed_dir.name
        frames.append(frame[COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def training_curves(inputs: Inputs) -> Figure:
    """Mean training loss per epoch over datasets and seeds (band: ± one standard deviation)."""
    logs = inputs.train_logs
    if logs is None or logs.empty:
        return empty(new_figure("page", 2.0), "training logs")
    order = list(TRAININGS)
    protocols = sorted(logs["protocol"].unique(), key=lambda p: (order.index(p) if p in order else len(order), p))
    methods = ordered(logs["method"])
    shown = [f for f in families() if any(method_style(m).family == f for m in methods)]
    fig = new_figure("page", 1.35 * len(protocols) + 0.75)
    grid = fig.add_gridspec(len(protocols), len(shown))
    for r, protocol in enumerate(protocols):
        for c, family in enumerate(shown):
            ax = fig.add_subplot(grid[r, c])
            if r == 0:
                ax.set_title(family)
            if c == 0:
                ax.set_ylabel(f"loss ({TRAININGS.get(protocol, protocol)})")
            part = logs[(logs["protocol"] == protocol) & logs["method"].map(lambda m: method_style(m).family == family)]
            if part.empty:
                ax.set_axis_off()
                continue
            for method in ordered(part["method"]):
                curve = part[part["method"] == method].groupby("epoch")["loss"].agg(["mean", lambda v: v.std(ddof=0)])
                curve.columns = ["mean", "std"]
                epochs, mean, std = curve.index.to_numpy(), curve["mean"].to_numpy(), curve["std"].to_numpy()
                style = line_style(method)
                if len(epochs) == 1:  # a single epoch: its spread as an error bar
                    ax.errorbar(epochs, mean, yerr=std, fmt=style["marker"], color=style["color"],
                                markersize=style["markersize"], elinewidth=0.8, capsize=0, gid=style["gid"])
                    continue
                ax.fill_between(epochs, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0,
                                zorder=1, gid=style["gid"])
                ax.plot(epochs, mean, **style)
            epochs = sorted(int(e) for e in part["epoch"].unique())
            if len(epochs) <= 6:
                ax.xaxis.set_major_locator(FixedLocator(epochs))
            else:
                ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
            ax.set_xlim(epochs[0] - 0.4, epochs[-1] + 0.4)
            if r == len(protocols) - 1:
                ax.set_xlabel("epoch")
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    method_legend(fig, methods, "page")
    return fig
