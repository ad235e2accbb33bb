"""Is a Snakemake working directory locked by a live run, or by one that was killed? And the
experiment lock that keeps a second run (or an `--unlock`) from damaging a live one.

Experiment lock: a run of the workflow (not a dry run, a report or a lint) holds an exclusive
`flock` on `.snakemake/bmip/<experiment>.lock` in its working directory from the moment the
workflow is read until its Snakemake process exits (the kernel releases it then, after a kill -9
too: it is never stale). A second run of the same experiment is refused before Snakemake does
anything (its rerun-incomplete clean-up would delete the files the live run is writing), and so
is `snakemake --unlock` while any run holds a lock in the directory (it would let such a second
run start). The lock file says which process holds it, for the message.

A Snakemake run killed hard (SIGKILL, a lost session, the OOM killer, a shutdown) leaves its lock
files in `.snakemake/locks/`, and the next run stops with a LockException. `scripts/run.sh` asks
this module before it starts: a lock with no live Snakemake (or job of it) working in the
directory is stale and safe to remove with `snakemake --unlock`; a lock held by a live process is
left alone, naming the process.

    python -m bmip.workflow_lock DIR    exit 0: not locked; 3: stale lock; 4: held by a live process
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Sequence

NOT_LOCKED, STALE, LIVE = 0, 3, 4


@dataclass(frozen=True)
class Process:
    pid: int
    command: str


def lock_files(directory: Path) -> list[Path]:
    """Snakemake's lock files (file persistence backend) in a working directory."""
    locks = Path(directory) / ".snakemake" / "locks"
    return sorted(locks.glob("*.lock")) if locks.is_dir() else []


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _works_in(pid: int, argv: list[str], directory: Path) -> bool:
    """The process works in `directory`: its `--directory`/`-d` argument if it has one, else its
    current directory."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    workdir = cwd
    for flag, value in zip(argv, argv[1:]):
        if flag in ("--directory", "-d"):
            workdir = cwd / value
    try:
        return workdir.resolve() == directory
    except OSError:
        return False


def _is_workflow_process(argv: list[str]) -> bool:
    """Snakemake itself (`snakemake ...`, `python -m snakemake ...`) or one of its bmip jobs."""
    names = [Path(a).name for a in argv[:3]]
    return "snakemake" in names or any(
        a == "-m" and b in ("snakemake", "bmip.cli") for a, b in zip(argv, argv[1:])
    ) or "bmip" in names[:2]


def live_processes(directory: Path) -> list[Process]:
    """Live Snakemake processes (and jobs they started) working in `directory`, this process excluded."""
    directory = Path(directory).resolve()
    own = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        argv = _argv(int(entry.name))
        if argv and _is_workflow_process(argv) and _works_in(int(entry.name), argv, directory):
            found.append(Process(int(entry.name), " ".join(argv)))
    return sorted(found, key=lambda p: p.pid)


def status(directory: Path) -> tuple[int, str]:
    """(exit code, one line for the user)."""
    locks = lock_files(directory)
    if not locks:
        return NOT_LOCKED, f"{directory} is not locked"
    alive = live_processes(directory)
    if alive:
        which = "; ".join(f"pid {p.pid}: {p.command[:160]}" for p in alive)
        return LIVE, (f"{directory} is locked by a running workflow ({which}); wait for it to finish or stop it, "
                      "then rerun")
    return STALE, (f"{directory} is locked by a workflow run that was interrupted (no Snakemake process works there "
                   "any more): unlocking; finished jobs are kept and incomplete ones rerun")


class ExperimentBusy(RuntimeError):
    """A live run holds the experiment (or, for --unlock, the working directory); the message says
    which process and what to do."""


# Snakemake options that only read the workflow's state (a deleting one, --delete-all-output, is a run).
_READ_ONLY = ("lint", "report", "summary", "detailed_summary", "list_rules", "list_target_rules", "dag", "rulegraph",
              "filegraph", "d3dag", "list_changes", "list_input_changes", "list_params_changes", "list_untracked",
              "print_compilation", "generate_unit_tests", "containerize", "archive", "list_conda_envs")


def invocation(argv: Sequence[str] | None = None) -> str:
    """What this `snakemake` command line does: "unlock", "dry-run", "run", or "other" (a report,
    lint, summary or listing, which writes no results)."""
    from snakemake.cli import get_argument_parser

    args, _ = get_argument_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(args, "unlock", False):
        return "unlock"
    if getattr(args, "dryrun", False):
        return "dry-run"
    if any(getattr(args, key, None) for key in _READ_ONLY):
        return "other"
    return "run"


def lock_folder(workdir: Path | str = ".") -> Path:
    return Path(workdir) / ".snakemake" / "bmip"


def experiment_lock(experiment: Path | str, workdir: Path | str = ".") -> Path:
    """The lock file of an experiment folder, in the working directory's .snakemake folder."""
    absolute = os.path.abspath(os.path.join(workdir, experiment))
    name = Path(absolute).name or "experiment"
    return lock_folder(workdir) / f"{name}-{hashlib.sha256(absolute.encode()).hexdigest()[:12]}.lock"


def _holder(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        doc = {}
    return doc if isinstance(doc, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a live run"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}: "
            f"{str(holder.get('command', ''))[:200]}")


def _held(path: Path) -> bool:
    """Whether a live process holds the lock file (tried without waiting; released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock it took
    return False


def hold(experiment: Path | str, workdir: Path | str = ".") -> IO[str]:
    """Take the experiment's lock for this process's lifetime (keep the returned file open);
    ExperimentBusy if a live run holds it."""
    path = experiment_lock(experiment, workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ExperimentBusy(
            f"{experiment} is being produced by a live run ({_describe(_holder(path))}). A second run now would "
            "delete the files that run is writing, so nothing was started. Wait for it to finish, or stop it "
            "(Ctrl-C in its terminal, or kill its pid), then run again: finished jobs are kept. `snakemake -n` "
            "shows the plan meanwhile without touching anything.") from None
    handle.seek(0)
    handle.truncate()
    json.dump({"pid": os.getpid(), "host": socket.gethostname(),
               "experiment": os.path.abspath(os.path.join(workdir, experiment)),
               "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
               "command": " ".join(sys.argv)}, handle)
    handle.flush()
    return handle


def live_holders(workdir: Path | str = ".") -> list[str]:
    """The live runs holding an experiment lock in the working directory, described."""
    folder = lock_folder(workdir)
    return [_describe(_holder(path)) for path in sorted(folder.glob("*.lock")) if _held(path)] if folder.is_dir() else []


def refuse_unlock(workdir: Path | str = ".") -> None:
    """ExperimentBusy if a live run works in the directory: its Snakemake locks are not stale."""
    holders = live_holders(workdir)
    if holders:
        raise ExperimentBusy(
            "--unlock refused: the lock is held by a live run (" + "; ".join(holders) + "), not left by a killed "
            "one. Removing it would let a second run delete the files that run is writing. Wait for it to finish "
            "or stop it; a lock left by a killed run is removed by `bash scripts/run.sh` or by `snakemake "
            "--unlock` once no run is live.")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    code, message = status(Path(args[0] if args else "."))
    if code != NOT_LOCKED:
        print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
