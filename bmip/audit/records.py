"""Reading the provenance records of an experiment's runs, tolerant of missing or broken files.

The audit reports a broken record as a problem; the provenance and cost summaries skip it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bmip.audit.layout import Experiment, Run
from bmip.engine import paths as P
from bmip.methods import VARIANT_MARK


@dataclass(frozen=True)
class RunRecord:
    """A run, its provenance record (None if missing or unreadable) and why it could not be read."""

    run: Run
    provenance: dict[str, Any] | None
    error: str | None = None

    def get(self, *keys: str) -> Any:
        """A nested value of the record, or None where any level is missing."""
        node: Any = self.provenance
        for key in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        return node


def read_json(path: Path) -> tuple[Any, str | None]:
    """(document, None), or (None, why) for a missing or invalid file."""
    if not path.is_file():
        return None, "missing"
    try:
        return json.loads(path.read_text()), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not valid JSON ({err})"


def read_record(experiment: Experiment, run: Run) -> RunRecord:
    doc, error = read_json(experiment.run_dir(run) / P.PROVENANCE)
    if error is None and not isinstance(doc, dict):
        doc, error = None, "not a JSON object"
    return RunRecord(run, doc, error)


def evaluations(experiment: Experiment) -> list[Run]:
    """The evaluations the tables are built from: the config's grid, or what is on disk without one."""
    return experiment.expected_evaluations() if experiment.config else experiment.found_evaluations()


def table_runs(experiment: Experiment, protocol: str) -> list[RunRecord]:
    """Each evaluation of `protocol` that feeds a main table (no ablation variant), with its
    provenance, in grid order."""
    return [read_record(experiment, run) for run in evaluations(experiment)
            if run.protocol == protocol and VARIANT_MARK not in run.method]


def all_records(experiment: Experiment) -> list[RunRecord]:
    """Every training and evaluation of the experiment, expected or found, with its provenance."""
    runs = set(experiment.found_evaluations()) | set(experiment.found_trainings())
    runs |= set(experiment.expected_evaluations()) | set(experiment.expected_trainings())
    return [read_record(experiment, run) for run in sorted(runs)]


def hardware_label(record: RunRecord) -> str:
    """One line naming what a run ran on: device, CPU or GPU model, threads."""
    hw = record.get("hardware") or {}
    parts = [str(hw.get("device") or "?")]
    model = hw.get("gpu") or hw.get("cpu_model")
    if model:
        parts.append(str(model))
    if hw.get("torch_threads"):
        parts.append(f"{hw['torch_threads']} threads")
    return ", ".join(parts)


def code_label(record: RunRecord) -> str:
    """The commit a run was made from and whether the checkout had uncommitted changes."""
    code = record.get("code") or {}
    commit = code.get("git_commit") or "no git commit"
    dirty = code.get("git_dirty")
    state = "dirty" if dirty else ("clean" if dirty is False else "unknown state")
    return f"{commit} ({state}), bmip {code.get('package', '?')}"
