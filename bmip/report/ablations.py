"""Ablation tables: per variant, the metrics over seeds and the paired difference to a reference.

Per ablation (bmip.ablations), one table: per variant, per dataset and averaged over datasets, the
protocol's metrics (base, novel, HM; accuracy for the transfer protocols) as mean ± population
std over seeds, like the main tables, and each variant's paired difference of the per-run primary
metric (HM of that run's base and novel accuracy; accuracy) to the ablation's reference, with its
seeded bootstrap interval (bmip.report.statistics). Per-dataset rows pair over seeds only, the
average row over datasets × seeds; a single pair's row shows the difference with "n = 1" and leaves
the bounds empty. The same comparison of every method against BMIP (or the first method) is
`paired_base2novel`, for the main table.

Written as CSV, Markdown and LaTeX (bmip.report.latex), with each ablation's figure
(bmip.report.figures.ablation); `ablation_outputs` names those files for the workflow.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from bmip.io import atomic_write
from bmip.report.display import average_label, display_dataset
from bmip.report.latex import plain_table
from bmip.report.statistics import BOOTSTRAP_SEED, RESAMPLES, mean_and_std, paired_difference
from bmip.report.style import label
from bmip.metrics import harmonic_mean
from bmip.report.tables import load_metrics

log = logging.getLogger(__name__)
PRIMARY = {"base2novel": "hm", "open_world": "hm", "cross_dataset": "accuracy", "domain_generalization": "accuracy"}
METRICS = {"base2novel": ("base", "novel", "hm"), "open_world": ("accuracy", "base", "novel", "hm"),
           "cross_dataset": ("accuracy",), "domain_generalization": ("accuracy",)}
PAIRED = "paired_base2novel"  # the main table's paired comparison
DELTA = "Δ vs reference [95% CI]"  # the paired difference's display column


def per_run(long: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """One row per (method, dataset, seed) of a protocol, its metrics as columns (HM per run)."""
    part = long[long["protocol"] == protocol]
    wide = part.pivot_table(index=["method", "dataset", "seed"], columns="metric", values="value", aggfunc="first")
    wide = wide.reset_index()
    if {"base", "novel"} <= set(wide.columns):
        wide["hm"] = harmonic_mean(wide["base"], wide["novel"])
    return wide


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
                row[m], row[f"{m}_std"] = mean_and_std(part[m])
            if derived_hm:  # the table's HM: of seed-averaged base and novel, as tables.py; so no sd
                row["hm"] = harmonic_mean(row["base"], row["novel"])
                del row["hm_std"]
            row["seeds"] = len(part)
            if method != reference:
                row.update(paired_difference(runs, method, reference, primary, [dataset]))
            rows.append(row)
        own = [r for r in rows if r["method"] == method]
        average: dict[str, Any] = {"method": method, "dataset": average_label(len(own))}
        for m in metrics:
            average[m] = float(np.mean([r[m] for r in own]))
        if derived_hm:
            average["hm"] = harmonic_mean(average["base"], average["novel"])
        if method != reference:
            average.update(paired_difference(runs, method, reference, primary, datasets))
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
    """Rounded cells, display dataset names, the paired difference as `+1.23 [-0.40, +2.80]`; an
    empty frame for a table without results."""
    if table.empty:
        return pd.DataFrame()
    shown = pd.DataFrame({"Method": table["method"].map(label), "Dataset": table["dataset"].map(display_dataset)})
    if "protocol" in table:
        shown.insert(0, "Protocol", table["protocol"])
    metrics = [c for c in ("accuracy", "base", "novel", "hm") if c in table]
    for m in metrics:
        std = table.get(f"{m}_std")
        shown[m if m != "hm" else "HM"] = [
            _number(v) + (f" ± {_number(s)}" if std is not None and not pd.isna(s) and not d.startswith("Average") else "")
            for v, s, d in zip(table[m], std if std is not None else [None] * len(table), table["dataset"])]
    shown[DELTA] = list(map(_delta, table["delta"], table["delta_low"], table["delta_high"], table["pairs"]))
    return shown


def markdown(title: str, table: pd.DataFrame, note: str) -> str:
    if table.empty:
        return f"## {title}\n\n(no results)\n"
    return f"## {title}\n\n{note}\n\n" + _display(table).to_markdown(index=False, disable_numparse=True) + "\n"


def latex(caption: str, table: pd.DataFrame) -> str:
    """A booktabs table (bmip.report.latex): one row per (method, dataset), the paired interval in
    the last column, under a shorter header."""
    return plain_table(caption, _display(table), headers={DELTA: "Δ [95% CI]"})


def csv_text(table: pd.DataFrame) -> str:
    """A table's CSV as written (what the audit recomputes and compares)."""
    return table.to_csv(index=False, float_format="%.4f")


NOTE = ("Mean ± population std over seeds; Δ: mean paired difference of the per-run {metric} to {reference} over "
        "(dataset, seed) pairs, with a 95% percentile bootstrap interval ({resamples} resamples, seed {seed}); "
        "a difference from a single pair has no interval and is shown with n = 1.")


def paired_methods(config: dict[str, Any]) -> tuple[list[str], str]:
    methods = list(config["methods"])
    return methods, "bmip" if "bmip" in methods else methods[0]


def _has_paired(config: dict[str, Any]) -> bool:
    """Whether the config gets the main table's paired comparison: base2novel and two methods or more."""
    return "base2novel" in config["protocols"] and len(config["methods"]) > 1


def _ablation_name(ablation: Any) -> str:
    """An ablation's table and figure file name, without extension."""
    return f"ablation_{ablation.name}"


def ablation_outputs(config: dict[str, Any]) -> dict[str, list[str]]:
    """Names of the files `write_ablations` writes (tables, figures), without extensions: the
    workflow's declared outputs."""
    from bmip.ablations import ablations

    names = [_ablation_name(a) for a in ablations(config)]
    return {"tables": names + ([PAIRED] if _has_paired(config) else []), "figures": names}


def build_ablation_tables(config: dict[str, Any], long: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """(table, title, note) by file name: every ablation's, and `paired_base2novel` (every method
    against BMIP) where the config has base2novel and more than one method."""
    from bmip.ablations import ablations

    out = {}
    for ablation in ablations(config):
        metric = "/".join(sorted({PRIMARY[p].upper() if PRIMARY[p] == "hm" else PRIMARY[p] for p in ablation.protocols}))
        note = NOTE.format(metric=metric, reference=ablation.reference, resamples=RESAMPLES, seed=BOOTSTRAP_SEED)
        out[_ablation_name(ablation)] = (ablation_table(long, ablation), f"Ablation {ablation.name}", note)
    if _has_paired(config):
        methods, reference = paired_methods(config)
        runs = per_run(long, "base2novel")
        runs = runs[runs["method"].isin(methods)]
        table = comparison_table(runs, methods, reference, "base2novel", list(config["protocols"]["base2novel"]["datasets"]))
        note = NOTE.format(metric="HM", reference=reference, resamples=RESAMPLES, seed=BOOTSTRAP_SEED)
        out[PAIRED] = (table, "Base-to-novel, paired against " + reference, note)
    return out


def _write(out_dir: Path, name: str, table: pd.DataFrame, title: str, note: str) -> Path:
    """A table as `<name>.csv`, `.md` and `.tex` (each written atomically); returns the CSV's path."""
    csv = out_dir / f"{name}.csv"
    atomic_write(csv, lambda tmp: tmp.write_text(csv_text(table)))
    atomic_write(out_dir / f"{name}.md", lambda tmp: tmp.write_text(markdown(title, table, note)))
    atomic_write(out_dir / f"{name}.tex", lambda tmp: tmp.write_text(latex(f"{title}. {note}", table)))
    return csv


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
        name = _ablation_name(ablation)
        with figure_style():
            written += save(draw_ablation(built[name][0], ablation), figures_dir / name)
    return written


def run_cli(config_file: Path, metric_files: list[Path], tables_dir: Path, figures_dir: Path) -> int:
    """`bmip ablations` (bmip.report.cli): the tables and figures of a resolved config's ablations."""
    import yaml

    from bmip.config import validate

    config = validate(yaml.safe_load(Path(config_file).read_text()), str(config_file))
    for path in write_ablations(config, metric_files, tables_dir, figures_dir):
        log.info("wrote %s", path)
    return 0
