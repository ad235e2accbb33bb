"""Is a Snakemake working directory locked by a live run, or by one that was killed?

A Snakemake run killed hard (SIGKILL, a lost session, the OOM killer, a shutdown) leaves its lock
files in `.snakemake/locks/`, and the next run stops with a LockException. `scripts/run.sh` asks
this module before it starts: a lock with no live Snakemake (or job of it) working in the
directory is stale and safe to remove with `snakemake --unlock`; a lock held by a live process is
left alone, naming the process.

    python -m bmip.workflow_lock DIR    exit 0: not locked; 3: stale lock; 4: held by a live process
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    code, message = status(Path(args[0] if args else "."))
    if code != NOT_LOCKED:
        print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
