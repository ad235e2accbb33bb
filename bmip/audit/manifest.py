"""The experiment manifest: every output file with its sha256, size and the rule that wrote it.

The engine hashes its inputs (splits, images, checkpoints) but not its own outputs, so the
manifest, written once the tables and figures exist, is the record an audit verifies files
against: an edit after the run shows up as a hash mismatch naming the file.

What it lists:
* `files`: everything under the experiment folder except the manifest itself, the audit report and
  the RO-Crate (written after it) and hidden files (Snakemake's and atomic writes' temporaries).
* `logs`: the job logs, hashed for reference but not verified by the audit: Snakemake rewrites them
  on reruns, no number is read from them, and the manifest's and audit's own logs are still open
  while those rules run (so they are left out).

Two runs of one experiment write manifests that differ only in `created` and in the entries of
the files whose records of the execution differ (bmip/audit/volatile.py); the audit report
states those declarations.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import bmip
from bmip.audit.findings import Findings
from bmip.audit.layout import AUDIT_REPORT, CRATE, CRATE_LOG, LOGS, MANIFEST, Experiment, folder_files
from bmip.audit.records import read_json
from bmip.io import write_json

FORMAT = "bmip-manifest/1"
OWN_LOGS = (f"{LOGS}/manifest.log", f"{LOGS}/audit.log", CRATE_LOG)


def output_files(experiment: Experiment) -> tuple[list[str], list[str]]:
    """(files, logs): relative POSIX paths of what the manifest lists, sorted."""
    files, logs = [], []
    for name in folder_files(experiment.path):
        if name in (MANIFEST, AUDIT_REPORT, CRATE) or name in OWN_LOGS:
            continue
        (logs if name.split("/")[0] == LOGS else files).append(name)
    return files, logs


def _entry(experiment: Experiment, name: str) -> dict[str, Any]:
    path = experiment.path / name
    rule, wildcards = experiment.rule_of(name)
    return {"path": name, "size": path.stat().st_size, "sha256": experiment.sha256(path), "rule": rule,
            "wildcards": wildcards}


def build_manifest(experiment: Experiment) -> dict[str, Any]:
    """The manifest document for the experiment folder as it is now."""
    files, logs = output_files(experiment)
    entries = [_entry(experiment, name) for name in files]
    return {
        "format": FORMAT,
        "experiment": experiment.name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "bmip_version": bmip.__version__,
        "totals": {"files": len(entries), "bytes": sum(e["size"] for e in entries)},
        "files": entries,
        "logs": [_entry(experiment, name) for name in logs],
    }


def write_manifest(experiment: Experiment) -> Path:
    """Write `manifest.json` atomically into the experiment folder; returns its path."""
    out = experiment.path / MANIFEST
    write_json(out, build_manifest(experiment))
    return out


def verify_manifest(experiment: Experiment, findings: Findings) -> None:
    """Every listed file is there, unchanged; files added since are stated."""
    doc, error = read_json(experiment.path / MANIFEST)
    if error is not None or not isinstance(doc, dict) or doc.get("format") != FORMAT:
        why = error or f"not a {FORMAT} document"
        findings.problem(MANIFEST, f"{why}: output files cannot be verified (the workflow's manifest rule writes it)")
        return
    if doc.get("experiment") != experiment.name:
        findings.warning(MANIFEST, f"written for experiment {doc.get('experiment')!r}; this folder is {experiment.name!r}")
    listed = {entry["path"]: entry for entry in doc.get("files", [])}
    for name, entry in sorted(listed.items()):
        path = experiment.path / name
        findings.count("files against manifest.json")
        if name in experiment.listed and not path.is_file():
            digest, size = experiment.listed[name]
            if size != entry.get("size") or digest != entry.get("sha256"):
                findings.problem(name, f"recorded as sha256 {digest[:12]}…, {size} bytes, but manifest.json says "
                                       f"{str(entry.get('sha256'))[:12]}…, {entry.get('size')} bytes")
            continue
        if not path.is_file():
            findings.problem(name, "listed in manifest.json but missing")
            continue
        size, digest = path.stat().st_size, experiment.sha256(path)
        if size != entry.get("size") or digest != entry.get("sha256"):
            findings.problem(name, f"changed since manifest.json was written (sha256 {digest[:12]}…, "
                                   f"{size} bytes; recorded {str(entry.get('sha256'))[:12]}…, {entry.get('size')} bytes)")
    files, _ = output_files(experiment)
    for name in files:
        if name not in listed:
            findings.warning(name, "not listed in manifest.json (added after it was written)")
