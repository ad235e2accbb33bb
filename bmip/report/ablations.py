"""Ablation tables and the paired comparison: is a variant's difference larger than seed noise?

Per ablation (bmip.ablations), one table: per variant, per dataset and averaged over datasets, the
protocol's metrics (base, novel, HM; accuracy for the transfer protocols) as mean ± population
std over seeds, like the main tables, and each variant's **paired difference** to the ablation's
reference: runs are paired by (dataset, seed) — same few-shot split, same data seed — and the
difference of the per-run primary metric (HM of that run's base and novel accuracy; accuracy)
is averaged over the pairs, with a 95% percentile bootstrap interval over the pairs (10 000
resamples, numpy's PCG64 seeded with BOOTSTRAP_SEED: reruns give the same bytes). Per-dataset rows
pair over seeds only, the average row over datasets × seeds. A single pair has no interval (every
resample is that pair): its row shows the difference with "n = 1" and leaves the bounds empty. The
same comparison of every method against BMIP (or the first method) is `paired_base2novel`, for the
main table.

Interval, not a test: an interval that excludes 0 says the gap exceeds what these seeds and
datasets vary by, nothing about other seeds of torch's initialisation unless they are swept.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from bmip.io import atomic_write
from bmip.report.latex import escape
from bmip.report.display import average_label, display_dataset
from bmip.report.style import label
from bmip.report.tables import harmonic_mean, load_metrics

log = logging.getLogger(__name__)
BOOTSTRAP_SEED = 0
RESAMPLES = 10_000
LEVEL = 0.95
PRIMARY = {"base2novel": "hm", "open_world": "hm", "cross_dataset": "accuracy", "domain_generalization": "accuracy"}
METRICS = {"base2novel": ("base", "novel", "hm"), "open_world": ("accuracy", "base", "novel", "hm"),
           "cross_dataset": ("accuracy",), "domain_generalization": ("accuracy",)}


def paired_bootstrap(differences: Iterable[float], resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the mean of paired differences and its percentile bootstrap interval.
    Resamples the pairs with replacement in one (resamples × pairs) draw, seeded: deterministic.
    Fewer than 2 pairs give no interval (NaN bounds): resampling one pair only repeats it."""
    d = np.asarray(list(differences), dtype=np.float64)
    if d.size < 2:
        return (float(d.mean()) if d.size else float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(low), float(high)


def per_run(long: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """One row per (method, dataset, seed) of a protocol, its metrics as columns (HM per run)."""
    part = long[long["protocol"] == protocol]
    wide = part.pivot_table(index=["method", "dataset", "seed"], columns="metric", values="value", aggfunc="first")
    wide = wide.reset_index()
    if {"base", "novel"} <= set(wide.columns):
        wide["hm"] = harmonic_mean(wide["base"], wide["novel"])
    return wide


def _paired(runs: pd.DataFrame, method: str, reference: str, metric: str, datasets: list[str] | None) -> dict[str, float]:
    mine = runs[runs["method"] == method].set_index(["dataset", "seed"])[metric]
    ref = runs[runs["method"] == reference].set_index(["dataset", "seed"])[metric]
    joined = pd.concat([mine, ref], axis=1, keys=["a", "b"], join="inner").sort_index()
    if datasets is not None:
        joined = joined[joined.index.get_level_values(0).isin(datasets)]
    mean, low, high = paired_bootstrap((joined["a"] - joined["b"]).to_numpy())
    return {"delta": mean, "delta_low": low, "delta_high": high, "pairs": len(joined)}


def comparison_table(runs: pd.DataFrame, methods: list[str], reference: str, protocol: str,
                     datasets: list[str]) -> pd.DataFrame:
    """Per method and dataset (then the average): metrics as mean and std over seeds, and the paired
    difference of the primary metric to `reference` with its bootstrap interval."""
    metrics = [m for m in METRICS[protocol] if m in runs.columns]
    derived_hm = {"base", "novel"} <= set(metrics)
    primary = PRIMARY[protocol] if PRIMARY[protocol] in runs.columns else metrics[0]
    rows = []
    for method in methods:
        mine = runs[runs["method"] == method]
        for dataset in datasets:
            part = mine[mine["dataset"] == dataset]
            row: dict[str, Any] = {"method": method, "dataset": dataset}
            for m in metrics:
                row[m], row[f"{m}_std"] = part[m].mean(), part[m].std(ddof=0)
            if derived_hm:  # the table's HM: of seed-averaged base and novel, as tables.py; so no sd
                row["hm"] = harmonic_mean(row["base"], row["novel"])
                del row["hm_std"]
            row["seeds"] = len(part)
            if method != reference:
                row.update(_paired(runs, method, reference, primary, [dataset]))
            rows.append(row)
        own = [r for r in rows if r["method"] == method]
        average: dict[str, Any] = {"method": method, "dataset": average_label(len(own))}
        for m in metrics:
            average[m] = float(np.mean([r[m] for r in own]))
        if derived_hm:
            average["hm"] = harmonic_mean(average["base"], average["novel"])
        if method != reference:
            average.update(_paired(runs, method, reference, primary, datasets))
        rows.append(average)
    columns = ["method", "dataset", *[c for m in metrics for c in ((m,) if m == "hm" and derived_hm else (m, f"{m}_std"))],
               "seeds",
               "delta", "delta_low", "delta_high", "pairs"]
    return pd.DataFrame(rows).reindex(columns=columns)


def ablation_table(long: pd.DataFrame, ablation: Any) -> pd.DataFrame:
    """An ablation's table, one block per protocol: the variants in declared order, the sweep's
    value as a column (empty for named variants)."""
    parts = []
    for protocol in ablation.protocols:
        runs = per_run(long, protocol)
        if runs.empty:
            continue
        table = comparison_table(runs, ablation.names, ablation.reference, protocol, list(ablation.datasets[protocol]))
        by_name = {v.name: v for v in ablation.variants}
        table.insert(0, "protocol", protocol)
        table.insert(2, "variant", table["method"].map(lambda n: by_name[n].label))
        table.insert(3, "value", table["method"].map(lambda n: "" if by_name[n].swept is None else by_name[n].swept))
        table.insert(4, "reference", table["method"].eq(ablation.reference))
        parts.append(table)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _number(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


def _delta(delta: float, low: float, high: float, pairs: float) -> str:
    """The paired difference as `+1.23 [-0.40, +2.80]`; `+1.23 (n = 1)` where there is no interval."""
    if pd.isna(delta):
        return "reference" if pd.isna(pairs) else f"no pairs (n = {int(pairs)})"
    if pd.isna(low) or pd.isna(high):
        return f"{delta:+.2f} (n = {int(pairs)})"
    return f"{delta:+.2f} [{low:+.2f}, {high:+.2f}]"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """Rounded cells, display dataset names, the paired difference as `+1.23 [-0.40, +2.80]`."""
    shown = pd.DataFrame({"Method": table["method"].map(label), "Dataset": table["dataset"].map(display_dataset)})
    if "protocol" in table:
        shown.insert(0, "Protocol", table["protocol"])
    metrics = [c for c in ("accuracy", "base", "novel", "hm") if c in table]
    for m in metrics:
        std = table.get(f"{m}_std")
        shown[m if m != "hm" else "HM"] = [
            _number(v) + (f" ± {_number(s)}" if std is not None and not pd.isna(s) and not d.startswith("Average") else "")
            for v, s, d in zip(table[m], std if std is not None else [None] * len(table), table["dataset"])]
    shown["Δ vs reference [95% CI]"] = list(map(_delta, table["delta"], table["delta_low"], table["delta_high"],
                                               table["pairs"]))
    return shown


def markdown(title: str, table: pd.DataFrame, note: str) -> str:
    if table.empty:
        return f"## {title}\n\n(no results)\n"
    return f"## {title}\n\n{note}\n\n" + _display(table).to_markdown(index=False, disable_numparse=True) + "\n"


def latex(caption: str, table: pd.DataFrame) -> str:
    """A booktabs tabular: one row per (method, dataset), the paired interval in the last column."""
    if table.empty:
        return "% no results\n"
    shown = _display(table).rename(columns={"Δ vs reference [95% CI]": "$\\Delta$ [95\\% CI]"})
    header = " & ".join(c if c.startswith("$") else escape(c) for c in shown.columns)
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{escape(caption)}}}",
             f"\\begin{{tabular}}{{{'l' * 2 + 'r' * (len(shown.columns) - 2)}}}", "\\toprule", header + " \\\\", "\\midrule"]
    for _, row in shown.iterrows():
        lines.append(" & ".join(escape(str(v)).replace("±", "$\\pm$").replace("Δ", "$\\Delta$") for v in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def _write(out_dir: Path, name: str, table: pd.DataFrame, title: str, note: str) -> Path:
    csv = out_dir / f"{name}.csv"
    atomic_write(csv, lambda tmp: tmp.write_text(csv_text(table)))
    atomic_write(out_dir / f"{name}.md", lambda tmp: tmp.write_text(markdown(title, table, note)))
    atomic_write(out_dir / f"{name}.tex", lambda tmp: tmp.write_text(latex(f"{title}. {note}", table)))
    return csv


NOTE = ("Mean ± population std over seeds; Δ: mean paired difference of the per-run {metric} to {reference} over "
        "(dataset, seed) pairs, with a 95% percentile bootstrap interval ({resamples} resamples, seed {seed}); "
        "a difference from a single pair has no interval and is shown with n = 1.")


def paired_methods(config: dict[str, Any]) -> tuple[list[str], str]:
    methods = list(config["methods"])
    return methods, "bmip" if "bmip" in methods else methods[0]


def build_ablation_tables(config: dict[str, Any], long: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """(table, title, note) by file name: every ablation's, and `paired_base2novel` (every method
    against BMIP) where the config has base2novel and more than one method."""
    from bmip.ablations import ablations

    out = {}
    for ablation in ablations(config):
        metric = "/".join(sorted({PRIMARY[p].upper() if PRIMARY[p] == "hm" else PRIMARY[p] for p in ablation.protocols}))
        note = NOTE.format(metric=metric, reference=ablation.reference, resamples=RESAMPLES, seed=BOOTSTRAP_SEED)
        out[f"ablation_{ablation.name}"] = (ablation_table(long, ablation), f"Ablation {ablation.name}", note)
    if "base2novel" in config["protocols"] and len(config["methods"]) > 1:
        methods, reference = paired_methods(config)
        runs = per_run(long, "base2novel")
        runs = runs[runs["method"].isin(methods)]
        table = comparison_table(runs, methods, reference, "base2novel", list(config["protocols"]["base2novel"]["datasets"]))
        note = NOTE.format(metric="HM", reference=reference, resamples=RESAMPLES, seed=BOOTSTRAP_SEED)
        out["paired_base2novel"] = (table, "Base-to-novel, paired against " + reference, note)
    return out


def csv_text(table: pd.DataFrame) -> str:
    """A table's CSV as written (what the audit recomputes and compares)."""
    return table.to_csv(index=False, float_format="%.4f")


def write_ablations(config: dict[str, Any], metric_files: Iterable[Path], tables_dir: Path,
                    figures_dir: Path) -> list[Path]:
    """Every ablation's table and figure, and `paired_base2novel` (every method against BMIP)."""
    from bmip.ablations import ablations
    from bmip.report.figures.ablation import draw_ablation
    from bmip.report.figures.common import figure_style, save

    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    built = build_ablation_tables(config, load_metrics(metric_files))
    written = [_write(tables_dir, name, table, title, note) for name, (table, title, note) in built.items()]
    for ablation in ablations(config):
        with figure_style():
            written += save(draw_ablation(built[f"ablation_{ablation.name}"][0], ablation),
                            figures_dir / f"ablation_{ablation.name}")
    return written


def ablation_outputs(config: dict[str, Any]) -> dict[str, list[str]]:
    """Names of the files `write_ablations` writes (tables, figures), without extensions."""
    from bmip.ablations import ablations

    names = [f"ablation_{a.name}" for a in ablations(config)]
    paired = ["paired_base2novel"] if "base2novel" in config["protocols"] and len(config["methods"]) > 1 else []
    return {"tables": names + paired, "figures": names}


def run_cli(config_file: Path, metric_files: list[Path], tables_dir: Path, figures_dir: Path) -> int:
    import yaml

    from bmip.config import validate

    config = validate(yaml.safe_load(Path(config_file).read_text()), str(config_file))
    for path in write_ablations(config, metric_files, tables_dir, figures_dir):
        log.info("wrote %s", path)
    return 0
