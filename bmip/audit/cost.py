"""What a full reproduction costs: wall time per rule and in total, and the hardware it ran on.

Two sources. The runs' own provenance (`time.wall_seconds`, peak memory, hardware) covers training
and evaluation, is part of the results and survives copying them. Snakemake's `benchmark:` record
of every job (`logs/benchmarks/<rule>/….tsv`: wall seconds, peak memory; the file's time is the
job's end) adds every rule, process start-up included. The summary is written before the manifest,
audit and crate rules run, which keep no benchmark record.
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bmip.audit.layout import BENCHMARKS, Experiment, Run
from bmip.audit.records import RunRecord, all_records, hardware_label
from bmip.engine import paths as P
from bmip.io import atomic_write

log = logging.getLogger(__name__)

COLUMNS = ("rule", "jobs", "job_seconds", "runs", "run_seconds", "mean_run_seconds", "max_run_seconds",
           "peak_rss_mib", "hardware", "image_forwards", "image_features_reused")
_SAME_JOB_SECONDS = 1.0
PIPELINE_ORDER = ("write_config", "miniworld_generate", "miniworld_pretrain", "download", "fewshot_splits", "check_data",
                  "train", "image_features", "evaluate",
                  "evaluate_base_trained", "evaluate_base2novel", "evaluate_open_world", "evaluate_cross_dataset",
                  "evaluate_domain_generalization", "tables", "figures", "miniworld_figure", "provenance")


def benchmark_jobs(exp: Experiment) -> list[dict[str, Any]]:
    """Each job's Snakemake benchmark record: rule (its folder), start and end (the file's time is
    the end, less the wall seconds the record gives) and seconds."""
    jobs = []
    for path in sorted((exp.path / BENCHMARKS).rglob("*.tsv")):
        try:
            with path.open(newline="") as handle:
                row = next(csv.DictReader(handle, delimiter="\t"))
            seconds, end = float(row["s"]), path.stat().st_mtime
        except (OSError, StopIteration, KeyError, TypeError, ValueError):
            log.warning("%s is not a Snakemake benchmark record: its job is not counted", path)
            continue
        rule = path.relative_to(exp.path / BENCHMARKS).parts[0]
        jobs.append({"rule": rule, "start": end - seconds, "end": end, "seconds": max(seconds, 0.0)})
    return sorted(jobs, key=lambda j: (j["start"], j["rule"]))


def _order(rule: str) -> tuple[int, str]:
    return (PIPELINE_ORDER.index(rule) if rule in PIPELINE_ORDER else len(PIPELINE_ORDER), rule)


def cost_table(records: list[RunRecord], jobs: list[dict[str, Any]], rule_for: Callable[[Run], str],
               feature_rows: int | None = None) -> pd.DataFrame:
    """One row per rule and a `total` row: Snakemake job time and the runs' own wall time, and the
    image-tower forwards evaluations ran and the image features they reused (their provenance's
    `work`); `feature_rows`: the images of the frozen-feature files, the image_features rule's forwards."""
    runs: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.get("time", "wall_seconds") is not None:
            runs[rule_for(record.run)].append(record)
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_rule[job["rule"]].append(job)
    rows = []
    forwards = {"image_features": feature_rows} if feature_rows else {}
    for rule in sorted(set(runs) | set(by_rule) | set(forwards), key=_order):
        work = [r.get("work") for r in runs[rule] if isinstance(r.get("work"), dict)]
        seconds = [float(r.get("time", "wall_seconds")) for r in runs[rule]]
        peaks = [float(r.get("time", "peak_rss_mib")) for r in runs[rule] if r.get("time", "peak_rss_mib") is not None]
        rows.append({
            "rule": rule,
            "jobs": len(by_rule[rule]) if by_rule[rule] else None,
            "job_seconds": round(sum(j["seconds"] for j in by_rule[rule]), 3) if by_rule[rule] else None,
            "runs": len(seconds),
            "run_seconds": round(sum(seconds), 3) if seconds else None,
            "mean_run_seconds": round(sum(seconds) / len(seconds), 3) if seconds else None,
            "max_run_seconds": round(max(seconds), 3) if seconds else None,
            "peak_rss_mib": max(peaks) if peaks else None,
            "hardware": "; ".join(sorted({hardware_label(r) for r in runs[rule]})) or None,
            "image_forwards": sum(w.get("image_forwards", 0) for w in work) if work else forwards.get(rule),
            "image_features_reused": sum(w.get("image_features_reused", 0) for w in work) if work else None,
        })
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    total = {
        "rule": "total",
        "jobs": table["jobs"].sum(min_count=1),
        "job_seconds": table["job_seconds"].sum(min_count=1),
        "runs": table["runs"].sum(),
        "run_seconds": table["run_seconds"].sum(min_count=1),
        "mean_run_seconds": None,
        "max_run_seconds": table["max_run_seconds"].max(),
        "peak_rss_mib": table["peak_rss_mib"].max(),
        "hardware": "; ".join(sorted({hardware_label(r) for rs in runs.values() for r in rs})) or None,
        "image_forwards": table["image_forwards"].sum(min_count=1),
        "image_features_reused": table["image_features_reused"].sum(min_count=1),
    }
    table = pd.concat([table, pd.DataFrame([total], columns=list(COLUMNS))], ignore_index=True)
    return table.astype({"jobs": "Int64", "runs": "Int64", "image_forwards": "Int64", "image_features_reused": "Int64"})


def _duration(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _elapsed(records: list[RunRecord], jobs: list[dict[str, Any]]) -> float | None:
    """First start to last end: the reproduction's elapsed time (parallel jobs overlap)."""
    if jobs:
        return max(j["end"] for j in jobs) - min(j["start"] for j in jobs)
    spans = [(dt.datetime.fromisoformat(r.get("time", "start")), dt.datetime.fromisoformat(r.get("time", "end")))
             for r in records if r.get("time", "start") and r.get("time", "end")]
    if not spans:
        return None
    return (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()


def cost_markdown(name: str, table: pd.DataFrame, records: list[RunRecord], jobs: list[dict[str, Any]]) -> str:
    """The summary a reader of the report needs: totals in words, the per-rule table, the hardware."""
    total = table[table["rule"] == "total"].iloc[0]
    lines = [f"# Cost of experiment {name}", ""]
    if jobs:
        lines.append(f"Compute summed over Snakemake jobs: **{_duration(total['job_seconds'])}** "
                     f"({int(total['jobs'])} jobs, process start-up and every rule included).")
    else:
        lines.append("Snakemake's job records (`logs/benchmarks/`) were not found in these results: only the runs' "
                     "own timings are shown.")
    lines += [
        f"Measured inside the training and evaluation runs: **{_duration(total['run_seconds'])}** "
        f"over {int(total['runs'])} runs; peak memory of one process {total['peak_rss_mib']} MiB.",
        f"Elapsed, first start to last end: **{_duration(_elapsed(records, jobs))}** (parallel jobs overlap).",
        *([f"Image-tower forward passes: **{int(total['image_forwards']):,}**, and "
           f"{int(total['image_features_reused']) if pd.notna(total['image_features_reused']) else 0:,} image features "
           "reused (frozen image features of a test set, or a model's score matrix shared by its evaluations)."]
          if pd.notna(total["image_forwards"]) else []),
        "",
        table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".1f", missingval=""),
        "",
        "## Hardware",
        "",
    ]
    per_hw: dict[str, list[float]] = defaultdict(list)
    for record in records:
        if record.get("time", "wall_seconds") is not None:
            per_hw[hardware_label(record)].append(float(record.get("time", "wall_seconds")))
    hardware = pd.DataFrame([{"hardware": hw, "runs": len(s), "run_seconds": sum(s)} for hw, s in sorted(per_hw.items())],
                            columns=["hardware", "runs", "run_seconds"])
    lines += [hardware.to_markdown(index=False, floatfmt=".1f"), ""]
    return "\n".join(lines)


def feature_rows(exp: Experiment) -> int | None:
    """Images held by the experiment's frozen-feature files (bmip.engine.features), if any."""
    from bmip.engine.features import FeatureCacheError, rows

    files = sorted((exp.path / "features").glob(f"*/{P.IMAGE_FEATURES}"))
    total = 0
    for path in files:
        try:
            total += rows(path)
        except (FeatureCacheError, KeyError, TypeError, IndexError, ValueError):
            log.warning("%s is not a readable features file: its image forwards are not counted", path)
    return total if files else None


def write_cost(experiment_dir: Path, csv_path: Path, md_path: Path) -> pd.DataFrame:
    """Write the cost summary as CSV and Markdown (atomically); returns the table."""
    exp = Experiment.open(experiment_dir)
    records = [r for r in all_records(exp) if r.provenance is not None]
    jobs = benchmark_jobs(exp)
    if not jobs:
        log.info("no Snakemake benchmark records under %s: cost from the runs' provenance only", exp.path)
    table = cost_table(records, jobs, exp.rule_for, feature_rows(exp))
    atomic_write(Path(csv_path), lambda tmp: table.to_csv(tmp, index=False, float_format="%.3f"))
    text = cost_markdown(exp.name, table, records, jobs)
    atomic_write(Path(md_path), lambda tmp: tmp.write_text(text))
    return table
