"""What the workflow wrote: the content of every file a job produced, to tell a result changed
afterwards from one the workflow made.

Each workflow job ends with `python -m bmip.ledger EXPERIMENT --rule RULE FILE...`, which records
the rule that declared the files and each output file's sha256, size and modification time in
`<experiment>/.ledger/<key>.json`, one file per job (`key`: a hash of its output paths, so a rerun
replaces its record). Hidden: no result, left out of the manifest and the crate. The audit names
the rule of each file from it (`rules`), the workflow's own declaration.

When the workflow starts, `changed_files` compares every recorded file that is still there with its
record (size and modification time first, the content hash where they differ): a file whose
content is no longer what its job wrote (edited, truncated, overwritten by hand) is *changed*.
Snakemake touches a job's outputs once it ends, after the record: the first start after a job
hashes its outputs once and brings the record's times up to date.
A run moves each changed file aside into `<experiment>/.set_aside/<time>/` (kept, never deleted)
and Snakemake rebuilds it, with everything downstream, like a deleted one. A file only touched
(same content) is left alone.

Standard library only: it runs after every job and must start fast.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

FOLDER = ".ledger"
SET_ASIDE = ".set_aside"
FORMAT = "bmip-ledger/1"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _name(experiment: Path, path: Path) -> str:
    """A file's name in the ledger: its path relative to the experiment folder (`../` for one
    beside it, as the miniworld CLIP's weights), so that a working folder copied elsewhere keeps
    its ledger."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(experiment))).as_posix()


def _path(experiment: Path, name: str) -> Path:
    return Path(experiment) / name


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def record(experiment: Path, files: list[Path], rule: str | None = None) -> Path:
    """Record what a job of `rule` wrote (its output files that exist: a directory output is skipped)."""
    experiment = Path(experiment)
    names = sorted(_name(experiment, Path(f)) for f in files)
    entries = {}
    for name in names:
        path = _path(experiment, name)
        if path.is_file():
            st = path.stat()
            entries[name] = {"sha256": _sha256(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:24]
    out = experiment / FOLDER / f"{key}.json"
    _write(out, {"format": FORMAT, "rule": rule, "recorded": dt.datetime.now(dt.timezone.utc).isoformat(),
                 "files": entries})
    return out


def _records(experiment: Path) -> list[tuple[Path, dict]]:
    folder = Path(experiment) / FOLDER
    out = []
    for path in sorted(folder.glob("[!.]*.json")) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("files"), dict):
            out.append((path, doc))
    return sorted(out, key=lambda r: str(r[1].get("recorded", "")))  # the latest record of a file wins


def rules(experiment: Path) -> dict[str, str]:
    """The rule that wrote each recorded file (ledger name: relative to the experiment folder)."""
    return {name: doc["rule"] for _, doc in _records(Path(experiment)) if isinstance(doc.get("rule"), str)
            for name in doc["files"]}


def changed_files(experiment: Path, write: bool = True) -> dict[str, str]:
    """Files whose content differs from what the job that wrote them recorded, by ledger name,
    with what differs. A touched file (same content) has its record's stamp brought up to date
    (unless `write` is False: a dry run changes no file)."""
    experiment = Path(experiment)
    latest: dict[str, tuple[Path, dict, dict]] = {}
    for path, doc in _records(experiment):
        for name, entry in doc["files"].items():
            latest[name] = (path, doc, entry)
    changed: dict[str, str] = {}
    touched: dict[Path, dict] = {}
    for name, (record_path, doc, entry) in latest.items():
        path = _path(experiment, name)
        try:
            st = path.stat()
        except OSError:
            continue  # deleted: the workflow rebuilds what it needs
        if st.st_size == entry.get("size") and st.st_mtime_ns == entry.get("mtime_ns"):
            continue
        digest = _sha256(path)
        if digest == entry.get("sha256"):
            entry.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
            touched[record_path] = doc
        else:
            changed[name] = (f"{st.st_size} bytes, sha256 {digest[:12]}… where its job wrote {entry.get('size')} "
                             f"bytes, sha256 {str(entry.get('sha256'))[:12]}…")
    for record_path, doc in touched.items() if write else ():
        try:
            _write(record_path, doc)
        except OSError:
            pass  # only a speed-up
    return changed


def set_aside(experiment: Path, names: list[str]) -> Path:
    """Move changed files into `<experiment>/.set_aside/<UTC time>/` (their relative layout kept);
    returns that folder."""
    experiment = Path(experiment)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = experiment / SET_ASIDE / stamp
    for name in names:
        source = _path(experiment, name)
        target = folder / name.replace("../", "outside/")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    return folder


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    rule = None
    if len(args) > 2 and args[1] == "--rule":
        rule = args.pop(2)
        args.pop(1)
    if len(args) < 2:
        print("usage: python -m bmip.ledger EXPERIMENT_FOLDER [--rule RULE] OUTPUT_FILE...", file=sys.stderr)
        return 2
    record(Path(args[0]), [Path(a) for a in args[1:]], rule)
    return 0


if __name__ == "__main__":
    sys.exit(main())
