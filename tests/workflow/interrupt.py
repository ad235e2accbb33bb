"""Kill a Snakemake run hard at a chosen moment, recover as `scripts/run.sh` does, and rerun.

A kill point names a bmip job (words of its command line) and a moment inside it (a file that
appears while it runs). The job is let run in slices of a few milliseconds, its whole process
tree stopped with SIGSTOP between slices, until the moment has come; then the whole Snakemake
process group is killed with SIGKILL, as a lost session, the OOM killer or a shutdown would. So
the kill lands at the same point of the job every time, however loaded the machine is.

The tests use it on the reduced experiment; by hand, on the default experiment, from the root of a
fresh clone with the venv active (README, "Comparing two runs"):

    python -m tests.workflow.interrupt --kill generate pretrain train evaluate figures -- --cores 2
    bmip compare ../uninterrupted/results/miniworld results/miniworld
"""
from __future__ import annotations

import argparse
import glob
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bmip.workflow_lock import STALE, live_processes


@dataclass(frozen=True)
class KillPoint:
    """Kill while a job whose command line holds `job` runs, once it has written a file matching
    `ready` ({exp}: the experiment folder, {data}: the data root; relative to the working folder),
    or, if `text` is given, once such a file contains `text`."""

    job: tuple[str, ...]
    ready: str
    text: str | None = None
    slice: float = 0.005  # seconds the stopped job runs before the moment is checked again

    def files(self, workdir: Path, config: dict) -> dict[str, int]:
        """The files matching `ready` now, with their modification times (ns)."""
        pattern = self.ready.format(exp=f"{config['results_dir']}/{config['experiment']}", data=config["data_root"])
        found = {}
        for path in glob.glob(str(workdir / pattern)):
            try:
                found[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue
        return found

    def reached(self, workdir: Path, config: dict, before: dict[str, int]) -> bool:
        """Whether the job has written a matching file (not in `before`, or changed since), or one
        contains `text`."""
        for path, mtime in self.files(workdir, config).items():
            if self.text is None and before.get(path) != mtime:
                return True
            try:
                if self.text is not None and self.text in Path(path).read_text(errors="replace"):
                    return True
            except OSError:
                continue
        return False


KILL_POINTS = {
    # The first miniworld dataset moved into place; the others still being drawn.
    "generate": KillPoint(("miniworld-generate",), "{data}/*/split.json", slice=0.05),
    # Pretraining past step 100 of the miniworld CLIP (its log says so every 50 steps).
    "pretrain": KillPoint(("miniworld-pretrain",), "{exp}/logs/miniworld_pretrain.log", "step 100/", slice=0.5),
    # BMIP's training job between two epochs of a run: its state after an epoch is saved.
    "train": KillPoint(("train", "--method", "bmip"), "{exp}/train/*/bmip/*/seed*/state.pt"),
    # BMIP's evaluation job after its first evaluation: some of its outputs exist, not all.
    "evaluate": KillPoint(("evaluate", "--method", "bmip"), "{exp}/*/bmip/*/seed*/metrics.json"),
    # Aggregation: the figures job after its first PDF.
    "figures": KillPoint(("figures",), "{exp}/figures/*.pdf"),
}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def find_job(workdir: Path, words: tuple[str, ...]) -> int | None:
    """The pid of a live bmip job in `workdir` whose command line holds every word of `words`."""
    for process in live_processes(workdir):
        argv = process.command.split()
        if "bmip.cli" in argv and all(word in argv for word in words):
            return process.pid
    return None


def kill_at(run: subprocess.Popen, workdir: Path, config: dict, point: KillPoint, timeout: float = 900) -> None:
    """Wait for the job of `point`, step it until its moment, then SIGKILL Snakemake's process group
    (started with start_new_session=True) and wait until nothing works in `workdir` any more."""
    deadline = time.monotonic() + timeout
    pid = None
    while pid is None:
        if run.poll() is not None:
            raise RuntimeError(f"the run ended (exit {run.returncode}) before a job {' '.join(point.job)} started")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no job {' '.join(point.job)} within {timeout} s")
        pid = find_job(workdir, point.job)
        if pid is None:
            time.sleep(0.05)
    tree = _tree(pid)
    _signal(tree, signal.SIGSTOP)
    before = point.files(workdir, config)  # a job writes nothing before torch and bmip are imported
    while not point.reached(workdir, config, before):
        if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            raise RuntimeError(f"job {' '.join(point.job)} (pid {pid}) ended before {point.ready} appeared")
        _signal(tree, signal.SIGCONT)
        time.sleep(point.slice)
        tree = _tree(pid)  # with any process it started meanwhile
        _signal(tree, signal.SIGSTOP)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    while live_processes(workdir):
        if time.monotonic() > deadline:
            raise RuntimeError(f"still working in {workdir} after the kill: {live_processes(workdir)}")
        time.sleep(0.05)


def recover(snakemake: list[str], workdir: Path) -> None:
    """What scripts/run.sh does before it starts: the lock the killed run left is stale; unlock."""
    state = subprocess.run([sys.executable, "-m", "bmip.workflow_lock", str(workdir)], capture_output=True, text=True)
    if state.returncode != STALE:
        raise RuntimeError(f"bmip.workflow_lock exited {state.returncode} ({state.stderr.strip()}), "
                           "not 3 (a stale lock)")
    unlocked = subprocess.run([*snakemake, "--unlock"], capture_output=True, text=True, timeout=600)
    if unlocked.returncode != 0:
        raise RuntimeError(f"snakemake --unlock failed: {unlocked.stderr[-3000:]}")


def start(snakemake: list[str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(snakemake, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def interrupted_run(snakemake: list[str], workdir: Path, config: dict, kills: list[str], log: Path,
                    timeout: float = 1800) -> None:
    """Run `snakemake`, killed hard at each kill point in turn and recovered, then to the end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    for name in kills:
        kill_at(start(snakemake, log), workdir, config, KILL_POINTS[name], timeout)
        with log.open("a") as out:
            out.write(f"\n=== killed at {name} ===\n")
        recover(snakemake, workdir)
    final = start(snakemake, log)
    if final.wait(timeout=timeout) != 0:
        raise RuntimeError(f"the rerun failed (exit {final.returncode}); see {log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kill", nargs="+", choices=sorted(KILL_POINTS), required=True,
                        help="kill points, in the order the run reaches them")
    parser.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--log", type=Path, default=Path("results/interrupted-run.log"),
                        help="where Snakemake's output goes (outside the experiment folder)")
    parser.add_argument("snakemake_args", nargs="*", help="after --: arguments for snakemake, e.g. --cores 2")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.configfile.read_text())
    snakemake = [sys.executable, "-m", "snakemake", "--configfile", str(args.configfile), *args.snakemake_args]
    interrupted_run(snakemake, Path.cwd(), config, args.kill, args.log)
    print(f"finished after {len(args.kill)} kill(s); Snakemake's output in {args.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
