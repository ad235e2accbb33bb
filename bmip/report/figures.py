"""The paper's figures from the aggregated tables and the training logs (seaborn), as PNG and PDF."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bmip.io import atomic_write  # noqa: E402
from bmip.report.tables import METHOD_NAMES, display_dataset  # noqa: E402

FIGURES = ("hm_per_dataset", "base_vs_novel", "open_world_ratio", "domain_generalization", "training_curves")


def _names(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["Method"] = table["method"].map(lambda m: METHOD_NAMES.get(m, m))
    if "dataset" in table:
        table["Dataset"] = table["dataset"].map(display_dataset)
    return table


def _empty(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} results in this experiment", ha="center", va="center")
    ax.set_axis_off()


def hm_per_dataset(b2n: pd.DataFrame, ax: plt.Axes) -> None:
    if b2n.empty:
        return _empty(ax, "base-to-novel")
    sns.barplot(data=_names(b2n), x="Dataset", y="hm", hue="Method", ax=ax)
    ax.set(ylabel="HM of base and novel accuracy (%)", xlabel="", title="Base-to-novel generalisation: HM")
    ax.tick_params(axis="x", rotation=30)


def base_vs_novel(b2n: pd.DataFrame, ax: plt.Axes) -> None:
    if b2n.empty:
        return _empty(ax, "base-to-novel")
    table = _names(b2n)
    per_dataset = table[~table["dataset"].str.startswith("Average over")]
    sns.scatterplot(data=per_dataset, x="base", y="novel", hue="Method", style="Dataset", s=60, ax=ax)
    average = table[table["dataset"].str.startswith("Average over")]
    ax.scatter(average["base"], average["novel"], marker="*", s=250, c="black", label="average (per method)")
    for _, row in average.iterrows():
        ax.annotate(row["Method"], (row["base"], row["novel"]), textcoords="offset points", xytext=(5, 5))
    ax.set(xlabel="base accuracy (%)", ylabel="novel accuracy (%)", title="Base vs novel accuracy")
    ax.legend(fontsize="x-small", ncol=2)


def open_world_ratio(ratio: pd.DataFrame, ax: plt.Axes) -> None:
    if ratio.empty:
        return _empty(ax, "open-world ratio")
    table = _names(ratio)
    average = table[table["dataset"].str.startswith("Average over")]
    sns.lineplot(data=average, x="ratio", y="accuracy", hue="Method", marker="o", ax=ax)
    ax.invert_xaxis()
    ax.set(xlabel="share of base classes in the test label space, r (%)", ylabel="accuracy (%)",
           title="Open-world generalisation: accuracy against the base/novel mix")


def domain_generalization(dg: pd.DataFrame, ax: plt.Axes) -> None:
    if dg.empty:
        return _empty(ax, "domain-generalisation")
    sns.barplot(data=_names(dg), x="Dataset", y="accuracy", hue="Method", ax=ax)
    ax.set(xlabel="", ylabel="accuracy (%)", title="Domain generalisation")
    ax.tick_params(axis="x", rotation=30)


def training_curves(logs: pd.DataFrame, ax: plt.Axes) -> None:
    if logs.empty:
        return _empty(ax, "training")
    sns.lineplot(data=_names(logs), x="epoch", y="loss", hue="Method", errorbar="sd", ax=ax)
    ax.set(xlabel="epoch", ylabel="training loss (mean ± sd over datasets and seeds)", title="Training curves")


def read_train_logs(files: Iterable[Path]) -> pd.DataFrame:
    """Concatenate `train_log.csv` files of .../train/<protocol>/<method>/<dataset>/seed<N>/."""
    frames = []
    for path in files:
        path = Path(path)
        frame = pd.read_csv(path)
        if frame.empty:
            continue
        seed_dir = path.parent
        frame["method"], frame["dataset"] = seed_dir.parent.parent.name, seed_dir.parent.name
        frame["protocol"], frame["seed"] = seed_dir.parent.parent.parent.name, seed_dir.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["epoch", "loss", "method"])


def _save(fig: plt.Figure, stem: Path) -> list[Path]:
    out = []
    for suffix in (".png", ".pdf"):
        path = stem.with_suffix(suffix)
        atomic_write(path, lambda tmp, s=suffix: fig.savefig(tmp, format=s[1:], dpi=150, bbox_inches="tight"))
        out.append(path)
    plt.close(fig)
    return out


def write_figures(tables_dir: Path, train_logs: Iterable[Path], out_dir: Path) -> list[Path]:
    """Draw every figure from `<tables_dir>/<table>.csv` and the training logs."""
    tables_dir, out_dir = Path(tables_dir), Path(out_dir)

    def table(name: str) -> pd.DataFrame:
        path = tables_dir / f"{name}.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    sns.set_theme(style="whitegrid", context="paper")
    plots: dict[str, tuple[Callable, pd.DataFrame, tuple[float, float]]] = {
        "hm_per_dataset": (hm_per_dataset, table("base2novel"), (10, 4)),
        "base_vs_novel": (base_vs_novel, table("base2novel"), (6, 5)),
        "open_world_ratio": (open_world_ratio, table("open_world_ratio"), (6, 4)),
        "domain_generalization": (domain_generalization, table("domain_generalization"), (8, 4)),
        "training_curves": (training_curves, read_train_logs(train_logs), (6, 4)),
    }
    written = []
    for name, (draw, data, size) in plots.items():
        fig, ax = plt.subplots(figsize=size)
        draw(data, ax)
        written += _save(fig, out_dir / name)
    return written
