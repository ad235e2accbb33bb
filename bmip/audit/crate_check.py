"""`bmip audit CRATE.zip|CRATE_DIR`: verify an experiment crate received from someone else.

A zip is first extracted, all or nothing, into a temporary folder by the data layer's
traversal-safe extraction (an entry with `..`, an absolute path or a link is refused). Then:
(1) every file the crate's metadata lists is there with its recorded size and sha256, and every
file there is listed; (2) the experiment folder inside gets the audit of a results folder
(`check.audit_experiment`): files against its manifest, each run's config, split and checkpoint
hashes against the files and the other runs, and every table number recomputed from the
metrics files. Checkpoints the crate leaves out are known by their recorded sha256, which is
checked against the manifest and against each evaluation that read them. With `--profiles`, the
crate is also validated, offline, against the RO-Crate 1.1 and Provenance Run Crate profiles.
"""
from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from bmip.audit.check import AuditReport, NotAnExperiment, audit_experiment
from bmip.audit.crate import CHECKPOINTS, METADATA
from bmip.audit.findings import Findings
from bmip.audit.layout import Experiment
from bmip.io import file_sha256

CRATE = "(crate)"  # what a finding about the crate as a whole is about


def is_crate(path: Path) -> bool:
    """A zip file, or a folder with RO-Crate metadata (an experiment folder has none)."""
    path = Path(path)
    return (path.is_file() and path.suffix == ".zip") or (path / METADATA).is_file()


def _types(entity: dict[str, Any]) -> set[str]:
    kind = entity.get("@type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _ids(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value] if value is not None else []
    return [v["@id"] for v in values if isinstance(v, dict) and "@id" in v]


def _size(entity: dict[str, Any]) -> int:
    try:
        return int(entity.get("contentSize", -1))
    except (TypeError, ValueError):
        return -1


def read_metadata(root: Path) -> tuple[dict[str, dict[str, Any]], str]:
    """(entities by id, the experiment folder's path in the crate) of a bmip crate folder."""
    try:
        doc = json.loads((root / METADATA).read_text())
        entities = {e["@id"]: e for e in doc["@graph"]}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise NotAnExperiment(f"{root}: no readable {METADATA} ({err}): not an RO-Crate") from None
    descriptor = entities.get(METADATA, {})
    root_id = (_ids(descriptor.get("about")) or ["./"])[0]
    folders = [i for i in _ids(entities.get(root_id, {}).get("hasPart"))
               if "Dataset" in _types(entities.get(i, {})) and not i.startswith("#")]
    if len(folders) != 1:
        raise NotAnExperiment(f"{root}: an RO-Crate, but not of one bmip experiment (its root dataset should have "
                              f"one experiment folder, found {len(folders)})")
    return entities, unquote(folders[0]).rstrip("/")


def check_payload(root: Path, entities: dict[str, dict[str, Any]], prefix: str,
                  findings: Findings) -> dict[str, tuple[str, int]]:
    """Every listed file is there and unchanged, every file there is listed; returns the files the
    crate lists by hash only (experiment-relative path -> (sha256, size))."""
    listed: dict[str, tuple[str, int]] = {}
    files: dict[str, dict[str, Any]] = {}
    for identifier, entity in sorted(entities.items()):
        if "File" not in _types(entity) or "://" in identifier:
            continue
        if identifier.startswith("#"):
            path = unquote(identifier[1:])
            if path.startswith(f"{prefix}/"):
                if PurePosixPath(path).name not in CHECKPOINTS:
                    findings.problem(path, "left out of the crate, but bmip crate leaves out only checkpoints")
                elif (root / path).is_file():
                    findings.problem(path, "in the crate, though its metadata says it was left out")
                else:
                    listed[path[len(prefix) + 1:]] = (str(entity.get("sha256")), _size(entity))
            continue
        name = unquote(identifier)
        if name.startswith("/") or ".." in PurePosixPath(name).parts:
            findings.problem(name, f"{METADATA} lists a file outside the crate")
            continue
        files[name] = entity
    for name, entity in files.items():
        path = root / name
        findings.count("files against the crate's metadata")
        if not path.is_file():
            findings.problem(name, f"listed in {METADATA} but missing from the crate")
            continue
        size, digest = path.stat().st_size, file_sha256(path)
        recorded_size, recorded = entity.get("contentSize"), entity.get("sha256")
        if recorded is None:
            findings.problem(name, f"{METADATA} records no sha256 for it")
        elif digest != recorded or str(size) != str(recorded_size):
            findings.problem(name, f"changed since the crate was made (sha256 {digest[:12]}…, {size} bytes; "
                                   f"{METADATA} records {str(recorded)[:12]}…, {recorded_size} bytes)")
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_file() and name != METADATA and name not in files:
            findings.problem(name, f"in the crate but not listed in {METADATA}")
    return listed


def check_profiles(root: Path, cache: Path, findings: Findings) -> None:
    """The crate conforms to RO-Crate 1.1 and the Provenance Run Crate profile (roc-validator, offline)."""
    from bmip.audit.crate_profiles import validate_crate

    for result in validate_crate(root, cache):
        findings.count("RO-Crate profiles")
        for issue in result.issues:
            findings.problem(METADATA, f"{result.profile} {issue['check']}: {issue['message']} ({issue['entity']})")
        if not result.passed and not result.issues:
            findings.problem(METADATA, f"roc-validator did not pass it against {result.profile}")


def audit_crate(path: Path, strict: bool = False, profiles: bool = False) -> AuditReport:
    """Audit a crate (zip or folder) made by `bmip crate`; with `profiles`, validate it against the
    RO-Crate profiles too."""
    from bmip.data.errors import UnsafeArchiveError
    from bmip.data.extract import safe_extract

    path = Path(path)
    findings = Findings()
    with tempfile.TemporaryDirectory(prefix="bmip-crate-") as tmp:
        root = path
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise NotAnExperiment(f"{path} is not a zip file: not a crate")
            root = Path(tmp) / "crate"
            try:
                safe_extract(path, root)
            except UnsafeArchiveError as err:
                findings.problem(path.name, str(err).removeprefix(f"{path}: "))
                return AuditReport(path, findings, strict=strict)
        entities, prefix = read_metadata(root)
        listed = check_payload(root, entities, prefix, findings)
        if profiles:
            check_profiles(root, Path(tmp) / "validator" / "http-cache", findings)
        report = audit_experiment(Experiment.open(root / prefix, listed), findings, strict)
        report.experiment = path
        return report
