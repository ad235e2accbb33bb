"""Per-table provenance for the report: the runs behind each table, their code, config, hardware, time.

One CSV per table (`provenance/<table>.csv`), one row per evaluation the table averages, joined
with the training that produced the evaluated model, so a reader of the report sees where every
number came from without opening the results folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bmip.audit.layout import Experiment
from bmip.report.tables import TABLE_PROTOCOL
from bmip.audit.records import RunRecord, code_label, hardware_label, read_record, table_runs
from bmip.engine import paths as P
from bmip.io import atomic_write
from bmip.report.tables import TABLES

COLUMNS = (
    "method", "dataset", "seed", "metrics", "evaluation_code", "evaluation_config_sha256", "evaluation_wall_seconds",
    "evaluated_at", "checkpoint", "training_code", "training_config_sha256", "training_wall_seconds",
    "recipe", "shots", "backbone", "hardware", "torch", "captions", "captions_sha256", "captioner",
    "caption_instruction",
)


def _row(exp: Experiment, evaluation: RunRecord, training: RunRecord) -> dict[str, object]:
    run = evaluation.run
    config = evaluation.get("config") or training.get("config") or {}
    backbone = config.get("backbone") or {}
    return {
        "method": run.method,
        "dataset": run.dataset,
        "seed": run.seed,
        "metrics": f"{run.relpath}/{P.METRICS}",
        "evaluation_code": code_label(evaluation) if evaluation.provenance else "(no provenance)",
        "evaluation_config_sha256": evaluation.get("config_sha256"),
        "evaluation_wall_seconds": evaluation.get("time", "wall_seconds"),
        "evaluated_at": evaluation.get("time", "end"),
        "checkpoint": f"{training.run.relpath}/{P.PROMPTS}",
        "training_code": code_label(training) if training.provenance else "(no provenance)",
        "training_config_sha256": training.get("config_sha256"),
        "training_wall_seconds": training.get("time", "wall_seconds"),
        "recipe": json.dumps(config.get("recipe"), sort_keys=True, separators=(",", ":")) if config else None,
        "shots": config.get("shots"),
        "backbone": f"{backbone.get('model')} / {backbone.get('pretrained')}" if backbone else None,
        "hardware": hardware_label(evaluation) if evaluation.provenance else None,
        "torch": evaluation.get("packages", "torch"),
        **_captions(evaluation.get("inputs", "captions")),
    }


def _captions(entry: object) -> dict[str, object]:
    """The test images' captions an evaluation read (a method that reads captions; else blank):
    the file, its sha256, who wrote them (captioner / model @ revision) and with what instruction."""
    if not isinstance(entry, dict):
        return {}
    who = entry.get("captioner") or {}
    return {"captions": entry.get("file"), "captions_sha256": entry.get("sha256"),
            "captioner": f"{who.get('name')} / {who.get('model')} @ {who.get('revision')}",
            "caption_instruction": who.get("instruction")}


def provenance_table(exp: Experiment, table: str) -> pd.DataFrame:
    """The runs behind one table, one row per evaluation, joined with its training."""
    rows = []
    for evaluation in table_runs(exp, TABLE_PROTOCOL[table]):
        training = read_record(exp, exp.training_of(evaluation.run))
        rows.append(_row(exp, evaluation, training))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_provenance_tables(experiment_dir: Path, out_dir: Path) -> dict[str, Path]:
    """Write `<out_dir>/<table>.csv` for every table; returns the paths."""
    exp = Experiment.open(experiment_dir)
    written = {}
    for table in TABLES:
        frame = provenance_table(exp, table)
        path = Path(out_dir) / f"{table}.csv"
        atomic_write(path, lambda tmp, f=frame: f.to_csv(tmp, index=False))
        written[table] = path
    return written
