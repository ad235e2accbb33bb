"""`bmip audit`: trace every table number back to its runs and check nothing changed since.

An audit (1) verifies every output file against the manifest, (2) checks that every run the
config's grid asks for is there, (3) checks each run's provenance against the files it names,
(4) recomputes every table from the metrics files and compares it with the CSVs, and (5) states
the code versions, packages and hardware the runs record. Problems fail the audit; warnings
(uncommitted code, several commits, runs made with another config than the current one, files
added after the manifest) are stated and fail it only when asked to be strict.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bmip.audit.captions import check_captions
from bmip.audit.findings import Finding, Findings
from bmip.audit.layout import CONFIG, TABLES_DIR, Experiment, Run
from bmip.audit.manifest import verify_manifest
from bmip.audit.recompute import check_tables
from bmip.audit.records import RunRecord, code_label, evaluations, hardware_label, read_json
from bmip.audit.runs import check_evaluation, check_training
from bmip.audit.volatile import describe
from bmip.engine import paths as P

log = logging.getLogger(__name__)
RUNS = "(provenance records)"  # what a finding about the runs as a whole is about


class NotAnExperiment(ValueError):
    """The folder given is not an experiment folder of the results layout."""


@dataclass
class AuditReport:
    """What an audit checked and found, and the versions and hardware the runs record."""

    experiment: Path
    findings: Findings
    environment: dict[str, Any] = field(default_factory=dict)
    strict: bool = False

    @property
    def failures(self) -> list[Finding]:
        return self.findings.items if self.strict else self.findings.problems

    @property
    def passed(self) -> bool:
        return not self.failures

    def text(self) -> str:
        """The report a user reads: environment, counts, every finding, and the verdict."""
        env, counts = self.environment, self.findings.counts
        lines = [f"bmip audit of {self.experiment}", f"audited with: {env.get('auditor', '?')}", "code the runs record:"]
        lines += [f"  {label}: {n} run(s)" for label, n in env.get("code", {}).items()] or ["  (no readable run)"]
        lines.append("packages:")
        lines += [f"  {label}: {n} run(s)" for label, n in env.get("packages", {}).items()]
        lines.append("hardware:")
        lines += [f"  {label}: {n} run(s)" for label, n in env.get("hardware", {}).items()]
        lines.append("backbone:")
        lines += [f"  {label}: {n} run(s)" for label, n in env.get("backbone", {}).items()]
        lines.append("checked: " + ", ".join(f"{n} {what}" for what, n in sorted(counts.items())))
        lines.append("files are checked against manifest.json byte for byte; between two runs of this experiment "
                     "only these may differ (bmip compare, bmip/audit/volatile.py):")
        lines += [f"  {line}" for line in describe()]
        if self.findings.skipped:
            lines.append("not checked: " + ", ".join(f"{n} {what}" for what, n in sorted(self.findings.skipped.items())))
        lines += [finding.line() for finding in self.findings.items]
        problems, warnings = len(self.findings.problems), len(self.findings.warnings)
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"{verdict}: {problems} problem(s), {warnings} warning(s)"
                     + (" (strict: warnings count as problems)" if self.strict and warnings else ""))
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": str(self.experiment),
            "passed": self.passed,
            "strict": self.strict,
            "counts": self.findings.counts,
            "skipped": self.findings.skipped,
            "environment": self.environment,
            "findings": [{"severity": f.severity, "file": f.file, "message": f.message} for f in self.findings.items],
        }


def _environment(records: list[RunRecord], findings: Findings) -> dict[str, Any]:
    """Counts of each commit, package set, hardware and backbone the runs record; mixed code is stated."""
    from bmip.engine.provenance import code_version

    readable = [r for r in records if r.provenance is not None]
    code = Counter(code_label(r) for r in readable)
    packages = Counter(", ".join(f"{k} {v}" for k, v in sorted((r.get("packages") or {}).items())) for r in readable)
    backbone = Counter(f"{r.get('backbone', 'model')} / {r.get('backbone', 'pretrained')} "
                       f"(weights sha256 {r.get('backbone', 'weights_sha256') or 'none: random init'})" for r in readable)
    now = code_version()
    if len({r.get("code", "git_commit") for r in readable}) > 1:
        findings.warning(RUNS, f"runs were made from {len(code)} different code versions (listed above)")
    dirty = [r for r in readable if r.get("code", "git_dirty")]
    if dirty:
        findings.warning(RUNS, f"{len(dirty)} run(s) were made from a checkout with uncommitted changes: "
                               "their code cannot be recovered from the commit alone")
    if len(backbone) > 1:
        findings.problem(RUNS, f"runs used {len(backbone)} different backbones (listed above)")
    return {
        "auditor": f"bmip {now['package']} at {now['git_commit'] or 'no git commit'}"
                   + (" (dirty)" if now["git_dirty"] else ""),
        "code": dict(code.most_common()),
        "packages": dict(packages.most_common()),
        "hardware": dict(Counter(hardware_label(r) for r in readable).most_common()),
        "backbone": dict(backbone.most_common()),
    }


def _check_grid(exp: Experiment, findings: Findings) -> None:
    """Every run the config's grid asks for exists; runs outside it are stated."""
    if exp.config is None:
        findings.problem(CONFIG, "missing: the experiment's grid is unknown, so the runs on disk are audited as found")
        return
    expected = set(exp.expected_evaluations())
    for run in sorted(expected):
        if not (exp.run_dir(run) / P.METRICS).is_file():
            findings.problem(exp.rel(exp.run_dir(run) / P.METRICS),
                             "missing: the config's grid has this run, and the tables need it")
    extra = set(exp.found_evaluations()) - expected
    extra |= set(exp.found_trainings()) - set(exp.expected_trainings())
    for run in sorted(extra):
        findings.warning(run.relpath, "not in config.yaml's grid: no table uses it")


def _check_inputs(exp: Experiment, findings: Findings) -> None:
    """Each data check record was made from the experiment's record of its images (inputs/), and
    those images are still what the record says where the data is on this machine: results made
    from other images than the ones there now are older than their inputs."""
    from bmip.engine.inventory import FOLDER, inventory_path, inventory_problems

    checked = []
    for record in sorted((exp.path / "data_check").glob("[!.]*.json")):
        doc, error = read_json(record)
        if error is not None or not isinstance(doc, dict):
            continue  # the runs' own checks name an unreadable record
        made_from = doc.get("inventory_sha256")
        inventory = inventory_path(exp.path, record.stem)
        if made_from is None:
            findings.warning(exp.rel(record), "made without a record of the images (inputs/): run by hand, or by an "
                                              "older bmip")
            continue
        if not exp.has(inventory):
            findings.problem(exp.rel(inventory), f"missing: {exp.rel(record)} was made from it")
            continue
        if exp.sha256(inventory) != made_from:
            findings.problem(exp.rel(record), f"was made from other images than {FOLDER}/{record.stem}.json records "
                                              "now: the images changed after the check; run the workflow again")
            continue
        checked.append(record.stem)
    if not checked:
        return
    root = Path(str(exp.config.get("data_root"))) if exp.config else None
    if root is not None and not root.is_absolute():
        root = exp.root / root
    if root is None or not root.is_dir():
        findings.skip("image inventories (the data is not on this machine)")
        return
    config = {**exp.config, "data_root": str(root)}
    try:
        problems = inventory_problems(exp.path, config, checked)
    except Exception as err:  # noqa: BLE001 - a dataset that no longer loads is a finding, not a crash
        findings.problem(FOLDER, f"the datasets under {root} cannot be read to compare their images: {err}")
        return
    for problem in problems:
        findings.problem(problem.split(":", 1)[0], problem.split(": ", 1)[1])
    findings.count("image inventories", len(checked))


def audit(path: Path, strict: bool = False) -> AuditReport:
    """Audit the experiment folder `path` (results/<experiment>). The report names the folder as
    given, not resolved: the workflow's audit.txt is then the same wherever the workflow ran."""
    report = audit_experiment(Experiment.open(path), Findings(), strict)
    report.experiment = Path(path)
    return report


def audit_experiment(exp: Experiment, findings: Findings, strict: bool = False) -> AuditReport:
    """Audit an opened experiment, adding to `findings` (a crate's audit starts with its own)."""
    if not exp.path.is_dir() or not ((exp.path / CONFIG).is_file() or (exp.path / TABLES_DIR).is_dir()):
        raise NotAnExperiment(f"{exp.path} is not an experiment folder (no {CONFIG} or {TABLES_DIR}/ in it)")
    log.info("verifying files against the manifest")
    verify_manifest(exp, findings)
    _check_grid(exp, findings)
    _check_inputs(exp, findings)
    check_captions(exp, findings)
    evals = evaluations(exp)
    trainings = sorted(set(exp.expected_trainings()) | set(exp.found_trainings()) | {exp.training_of(r) for r in evals})
    log.info("checking %d trainings and %d evaluations", len(trainings), len(evals))
    trained: dict[Run, RunRecord] = {run: check_training(exp, run, findings) for run in trainings}
    evaluated = [check_evaluation(exp, run, trained, findings) for run in evals
                 if (exp.run_dir(run) / P.METRICS).is_file() or (exp.run_dir(run) / P.PROVENANCE).is_file()]
    log.info("recomputing the tables")
    check_tables(exp, evals, findings)
    environment = _environment([*trained.values(), *evaluated], findings)
    return AuditReport(exp.path, findings, environment, strict)
