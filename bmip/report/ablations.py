"""Ablation tables: per variant, the metrics over seeds and the paired difference to a reference.

Per ablation (bmip.ablations), one table: per variant, per dataset and averaged over datasets, the
protocol's metrics (base, novel, HM, and OpenworldAUC for open-world; accuracy for the transfer
protocols) as mean ± population std over seeds, like the main tables, and each variant's paired
difference to the ablation's reference (bmip.report.statistics): Δ, the difference of the HM (or
accuracy) columns shown; per dataset each seed's paired difference; averaged over datasets the
interval over seeds (datasets as strata) with its Holm-adjusted p-value, and on every row the
paired bootstrap interval over the test images, each with its n. The same comparison of every
method against BMIP (or the first method) is `paired_base2novel`, for the main table.

Written as CSV, Markdown and LaTeX (bmip.report.latex), with each ablation's figure
(bmip.report.figures.ablation); `ablation_outputs` names those files for the workflow. Every run's
per-image predictions are read from beside its metrics.json (bmip.engine.predictions).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from bmip.engine.paths import PREDICTIONS
from bmip.engine.predictions import part_correctness, read_predictions
from bmip.io import atomic_write
from bmip.report.display import average_label, display_dataset
from bmip.report.latex import plain_table
from bmip.report.statistics import (
    BOOTSTRAP_SEED, IMAGE_RESAMPLES, ImageBootstrap, estimand, holm, mean_and_std, percentile_interval,
    seed_interval,
)
from bmip.report.style import label
from bmip.metrics import harmonic_mean
from bmip.report.tables import caption_notes, long_table, read_metrics

log = logging.getLogger(__name__)
PRIMARY = {"base2novel": "hm", "open_world": "hm", "cross_dataset": "accuracy", "domain_generalization": "accuracy"}
METRICS = {"base2novel": ("base", "novel", "hm"), "open_world": ("accuracy", "base", "novel", "hm", "openworld_auc"),
           "cross_dataset": ("accuracy",), "domain_generalization": ("accuracy",)}
# The part accuracies a protocol's primary number is made of, as bmip.engine.predictions.part_correctness reads them.
PARTS = {"base2novel": ("base", "novel"), "open_world": ("base", "novel"), "cross_dataset": ("accuracy",),
         "domain_generalization": ("accuracy",)}
PAIRED = "paired_base2novel"  # the main table's paired comparison
COLUMNS = ("delta", "seed_deltas", "pairs", "seed_low", "seed_high", "p", "p_holm", "image_low", "image_high",
           "images", "identical")


def per_run(long: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """One row per (method, dataset, seed) of a protocol, its metrics as columns (HM per run)."""
    part = long[long["protocol"] == protocol]
    wide = part.pivot_table(index=["method", "dataset", "seed"], columns="metric", values="value", aggfunc="first")
    wide = wide.reset_index()
    if {"base", "novel"} <= set(wide.columns):
        wide["hm"] = harmonic_mean(wide["base"], wide["novel"])
    return wide


class RunImages:
    """Each run's per-image correctness, read from the predictions file beside its metrics.json
    (the long table's `source`), once per run."""

    def __init__(self, long: pd.DataFrame, protocol: str) -> None:
        part = long[long["protocol"] == protocol].drop_duplicates(["method", "dataset", "seed"])
        self.protocol = protocol
        self.sources = {(m, d, int(s)): Path(src) for m, d, s, src in
                        zip(part["method"], part["dataset"], part["seed"], part["source"])}
        self.docs: dict[tuple[str, str, int], dict] = {}

    def __call__(self, method: str, dataset: str, seed: int, part: str) -> tuple[np.ndarray, np.ndarray]:
        key = (method, dataset, int(seed))
        if key not in self.docs:
            self.docs[key] = read_predictions(self.sources[key].with_name(PREDICTIONS))
        return part_correctness(self.docs[key], part)


def _shown(rows: pd.DataFrame, parts: tuple[str, ...]) -> dict[str, float]:
    """A method's part accuracies as one table row shows them: the means over its seeds."""
    return {p: float(rows[p].mean()) for p in parts}


def _comparison(runs: pd.DataFrame, method: str, reference: str, datasets: list[str], parts: tuple[str, ...],
                boot: ImageBootstrap) -> dict[str, Any]:
    """Δ of `method` to `reference` over `datasets` (one: a dataset row; several: the averaged
    row), with the per-seed differences, the seed interval (several datasets) and the image interval."""
    mine, ref = runs[runs["method"] == method], runs[runs["method"] == reference]

    def shown(rows: pd.DataFrame) -> float:  # the primary number the row shows: of dataset means, averaged
        per_dataset = [_shown(rows[rows["dataset"] == d], parts) for d in datasets]
        return estimand({p: float(np.mean([x[p] for x in per_dataset])) for p in parts})

    seeds = sorted(set(mine["seed"]) & set(ref["seed"]))
    complete = [s for s in seeds if all(((mine["dataset"] == d) & (mine["seed"] == s)).any()
                                        and ((ref["dataset"] == d) & (ref["seed"] == s)).any() for d in datasets)]
    if not complete:
        return {"pairs": 0}
    delta = shown(mine) - shown(ref)
    per_seed = [shown(mine[mine["seed"] == s]) - shown(ref[ref["seed"] == s]) for s in complete]
    pairs = len(complete) * len(datasets)
    row: dict[str, Any] = {"delta": delta, "seed_deltas": ";".join(f"{d:+.4f}" for d in per_seed), "pairs": pairs}
    primary = PRIMARY_OF[parts]
    both = pd.concat([mine, ref])
    both = both[both["dataset"].isin(datasets) & both["seed"].isin(complete)]
    paired = both.pivot_table(index=["dataset", "seed"], columns="method", values=primary, aggfunc="first")
    row["identical"] = bool((paired[method] == paired[reference]).all())
    if len(datasets) > 1:
        row["seed_low"], row["seed_high"], row["p"] = seed_interval(per_seed, delta)
    arms = {m: [boot.arm(m, d, complete) for d in datasets] for m in (method, reference)}
    resampled = {m: estimand({p: np.mean([a[p] for a in arms[m]], axis=0) for p in parts}) for m in arms}
    row["image_low"], row["image_high"] = percentile_interval(resampled[method] - resampled[reference])
    row["images"] = boot.images_in(datasets)
    return row


PRIMARY_OF = {("base", "novel"): "hm", ("accuracy",): "accuracy"}


def comparison_table(runs: pd.DataFrame, methods: list[str], reference: str, protocol: str,
                     datasets: list[str], images: Any) -> pd.DataFrame:
    """Per method and dataset (then the average): metrics as mean and std over seeds, and the
    paired difference to `reference` (bmip.report.statistics). `images(method, dataset, seed,
    part)`: a run's per-image (rows, correct), for the image-level intervals."""
    metrics = [m for m in METRICS[protocol] if m in runs.columns]
    derived_hm = {"base", "novel"} <= set(metrics)
    parts = PARTS[protocol]
    boot = ImageBootstrap(images, parts)
    for dataset in datasets:
        present = runs[(runs["dataset"] == dataset) & runs["method"].isin(methods)]
        if not present.empty:
            boot.add(dataset, list(zip(present["method"], present["seed"].astype(int))))
    rows = []
    for method in methods:
        mine = runs[runs["method"] == method]
        own = []
        for dataset in datasets:
            part = mine[mine["dataset"] == dataset]
            row: dict[str, Any] = {"method": method, "dataset": dataset}
            for m in metrics:
                row[m], row[f"{m}_std"] = mean_and_std(part[m])
            if derived_hm:  # the table's HM: of seed-averaged base and novel, as tables.py; so no sd
                row["hm"] = harmonic_mean(row["base"], row["novel"])
                del row["hm_std"]
            row["seeds"] = len(part)
            if method != reference and not part.empty:
                row.update(_comparison(runs, method, reference, [dataset], parts, boot))
            own.append(row)
        average: dict[str, Any] = {"method": method, "dataset": average_label(len(own))}
        for m in metrics:
            average[m] = float(np.mean([r[m] for r in own]))
        if derived_hm:
            average["hm"] = harmonic_mean(average["base"], average["novel"])
        if method != reference:
            average.update(_comparison(runs, method, reference, [r["dataset"] for r in own if r["seeds"]], parts, boot))
        rows += [*own, average]
    table = pd.DataFrame(rows)
    if "p" in table:  # Holm within the table: over its averaged rows
        table["p_holm"] = holm(table["p"])
    columns = ["method", "dataset", *[c for m in metrics for c in ((m,) if m == "hm" and derived_hm else (m, f"{m}_std"))],
               "seeds", *COLUMNS]
    return table.reindex(columns=columns)


def ablation_table(long: pd.DataFrame, ablation: Any) -> pd.DataFrame:
    """An ablation's table, one block per protocol: the variants in declared order, the sweep's
    value as a column (empty for named variants)."""
    parts = []
    for protocol in ablation.protocols:
        runs = per_run(long, protocol)
        if runs.empty:
            continue
        table = comparison_table(runs, ablation.names, ablation.reference, protocol, list(ablation.datasets[protocol]),
                                 RunImages(long, protocol))
        by_name = {v.name: v for v in ablation.variants}
        table.insert(0, "protocol", protocol)
        table.insert(2, "variant", table["method"].map(lambda n: by_name[n].label))
        table.insert(3, "value", table["method"].map(lambda n: "" if by_name[n].swept is None else by_name[n].swept))
        table.insert(4, "reference", table["method"].eq(ablation.reference))
        parts.append(table)
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    table["p_holm"] = holm(table["p"])  # within the table: every protocol's averaged rows together
    return table


def _number(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _interval(low: float, high: float, n: str) -> str:
    return "" if _missing(low) or _missing(high) else f"[{low:+.2f}, {high:+.2f}], {n}"


def _p(p: float, adjusted: float) -> str:
    return "" if _missing(p) else f"{p:.3f} ({adjusted:.3f})"


def _comparison_cells(row: pd.Series) -> dict[str, str]:
    """A row's paired-difference cells: Δ, per seed (or the pairs' count), the two intervals, p."""
    cells = dict.fromkeys((DELTA, PER_SEED, SEED_CI, P, IMAGE_CI), "")
    if _missing(row["delta"]):
        return {**cells, DELTA: "reference" if _missing(row["pairs"]) else "no pairs"}
    pairs = int(row["pairs"])
    cells[DELTA] = f"{row['delta']:+.2f}"
    seeds = [float(v) for v in str(row["seed_deltas"]).split(";") if v]
    if row["identical"] in (True, "True"):
        cells[DELTA] += f" (identical in all {pairs} runs)"
    cells[PER_SEED] = ", ".join(f"{v:+.2f}" for v in seeds) + (" (n = 1)" if pairs == 1 else "")
    cells[SEED_CI] = _interval(row["seed_low"], row["seed_high"], f"n = {len(seeds)} seeds")
    cells[P] = _p(row["p"], row["p_holm"])
    cells[IMAGE_CI] = _interval(row["image_low"], row["image_high"], f"n = {int(row['images'])} images")
    return cells


DELTA, PER_SEED, SEED_CI, P, IMAGE_CI = "Δ", "Δ per seed", "95% CI, seeds", "p (Holm)", "95% CI, test images"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """Rounded cells, display dataset names, the paired difference's cells; an empty frame for a
    table without results."""
    if table.empty:
        return pd.DataFrame()
    shown = pd.DataFrame({"Method": table["method"].map(label), "Dataset": table["dataset"].map(display_dataset)})
    if "protocol" in table:
        shown.insert(0, "Protocol", table["protocol"])
    metrics = [c for c in ("accuracy", "base", "novel", "hm", "openworld_auc") if c in table]
    names = {"hm": "HM", "openworld_auc": "OpenworldAUC"}
    for m in metrics:
        std = table.get(f"{m}_std")
        shown[names.get(m, m)] = [
            _number(v) + (f" ± {_number(s)}" if std is not None and not pd.isna(s) and not d.startswith("Average") else "")
            for v, s, d in zip(table[m], std if std is not None else [None] * len(table), table["dataset"])]
    cells = pd.DataFrame([_comparison_cells(row) for _, row in table.iterrows()])
    return pd.concat([shown.reset_index(drop=True), cells], axis=1)


def markdown(title: str, table: pd.DataFrame, note: str) -> str:
    if table.empty:
        return f"## {title}\n\n(no results)\n"
    return f"## {title}\n\n{note}\n\n" + _display(table).to_markdown(index=False, disable_numparse=True) + "\n"


def latex(caption: str, table: pd.DataFrame) -> str:
    """A booktabs table (bmip.report.latex): one row per (method, dataset), the paired difference's
    cells last, under shorter headers."""
    return plain_table(caption, _display(table), headers={SEED_CI: "CI seeds", IMAGE_CI: "CI images"})


def csv_text(table: pd.DataFrame) -> str:
    """A table's CSV as written (what the audit recomputes and compares)."""
    return table.to_csv(index=False, float_format="%.4f")


NOTE = ("Mean ± population std over seeds. Δ: the difference of the {metric} column to {reference}'s ({metric} of "
        "the mean base and novel accuracy; for accuracy, of the mean). Per dataset, Δ per seed is each seed's "
        "paired difference (no interval from so few seeds); averaged over datasets, Δ per seed is seed s's Δ over "
        "every dataset, and the 95% interval over seeds is Student's t on those n values (datasets as strata), "
        "with its p-value for Δ = 0, Holm-adjusted within this table in brackets. The 95% interval over test images "
        "is a paired bootstrap of each dataset's test images, the same resample for both arms and every seed "
        "({resamples} resamples, seed {seed}): the noise of the fixed test set. \"identical in all n runs\": every "
        "paired difference is 0 (bmip.report.statistics).")


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
        note = NOTE.format(metric=metric, reference=ablation.reference, resamples=IMAGE_RESAMPLES, seed=BOOTSTRAP_SEED)
        out[_ablation_name(ablation)] = (ablation_table(long, ablation), f"Ablation {ablation.name}", note)
    if _has_paired(config):
        methods, reference = paired_methods(config)
        runs = per_run(long, "base2novel")
        runs = runs[runs["method"].isin(methods)]
        table = comparison_table(runs, methods, reference, "base2novel", list(config["protocols"]["base2novel"]["datasets"]),
                                 RunImages(long, "base2novel"))
        note = NOTE.format(metric="HM", reference=reference, resamples=IMAGE_RESAMPLES, seed=BOOTSTRAP_SEED)
        out[PAIRED] = (table, "Base-to-novel, paired against " + reference, note)
    return out


def _write(out_dir: Path, name: str, table: pd.DataFrame, title: str, note: str) -> Path:
    """A table as `<name>.csv`, `.md` and `.tex` (each written atomically); returns the CSV's path."""
    csv = out_dir / f"{name}.csv"
    atomic_write(csv, lambda tmp: tmp.write_text(csv_text(table)))
    atomic_write(out_dir / f"{name}.md", lambda tmp: tmp.write_text(markdown(title, table, note)))
    caption = " ".join(f"{title}. {note}".split("\n\n"))  # a LaTeX caption is one paragraph
    atomic_write(out_dir / f"{name}.tex", lambda tmp: tmp.write_text(latex(caption, table)))
    return csv


def _with_captioners(note: str, records: Iterable[dict], methods: set[str], protocols: set[str]) -> str:
    """`note`, then, each in its own paragraph, who wrote the captions that the table's runs
    (`methods` under `protocols`) read, and how (their metrics records name the captioner:
    bmip.report.tables.caption_notes)."""
    notes = caption_notes(r for r in records if r["method"] in methods and r["protocol"] in protocols)
    return "\n\n".join([note, *dict.fromkeys(line for lines in notes.values() for line in lines)])


def write_ablations(config: dict[str, Any], metric_files: Iterable[Path], tables_dir: Path,
                    figures_dir: Path) -> list[Path]:
    """Every ablation's table and figure, and `paired_base2novel` (every method against BMIP)."""
    from bmip.ablations import ablations
    from bmip.report.figures.ablation import draw_ablation
    from bmip.report.figures.common import figure_style, save

    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    records = read_metrics(metric_files)
    built = build_ablation_tables(config, long_table(records))
    runs = {_ablation_name(a): (set(a.names), set(a.protocols)) for a in ablations(config)}  # each table's
    if PAIRED in built:
        runs[PAIRED] = (set(paired_methods(config)[0]), {"base2novel"})
    written = [_write(tables_dir, name, table, title, _with_captioners(note, records.values(), *runs[name]))
               for name, (table, title, note) in built.items()]
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
