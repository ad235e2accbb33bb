"""The cluster-generic profile: the reduced experiment runs to completion when every job goes
through a submit command and is polled with a status command, and its numbers are the local run's.
"""
from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

from tests.workflow.reduced import REPO, reduced_config, snakemake_command

PROFILE = REPO / "workflow" / "profiles" / "cluster-generic"
RUN_TIMEOUT = 900


def cluster_config(workdir: Path, gpu: int = 0) -> Path:
    """The reduced experiment cut to one method on one base-to-novel dataset (both seeds, batched
    as in the local run), so that each of its runs is also a run of the shared local reference."""
    return reduced_config(
        workdir, methods=["coop"], protocols={"base2novel": {"datasets": ["toy"]}},
        workflow={"batch_seeds": True, "resources": {
            "train": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": gpu},
            "evaluate": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": gpu},
            "light": {"threads": 1, "mem_mb": 1000, "runtime": 5, "gpu": 0},
        }})


def bounded(command: list[str], timeout: int) -> list[str]:
    """`command` under timeout(1): SIGINT first (Snakemake then cancels its jobs), SIGKILL 10 s later."""
    return ["timeout", "--signal=INT", "--kill-after=10", str(timeout), *command]


def _table_rows(path: Path) -> set[frozenset[tuple[str, str]]]:
    """A table's per-dataset rows (the average rows depend on which datasets a run has)."""
    with path.open(newline="") as handle:
        return {frozenset(row.items()) for row in csv.DictReader(handle) if not row["dataset"].startswith("Average")}


def assert_results_match_local(workdir: Path, reference: Path) -> None:
    """Every metrics.json of the run equals the local run's, and every per-dataset row of the
    run's tables (if it wrote any) appears verbatim in the local run's table."""
    exp, ref = workdir / "results" / "reduced", reference / "results" / "reduced"
    metrics = sorted(exp.rglob("metrics.json"))
    assert len(metrics) == 2, f"expected coop/toy metrics for seeds 1 and 2, got {metrics}"
    for path in metrics:
        relative = path.relative_to(exp)
        assert json.loads(path.read_text()) == json.loads((ref / relative).read_text()), f"{relative} differs"
    for path in sorted((exp / "tables").glob("*.csv")):
        missing = _table_rows(path) - _table_rows(ref / "tables" / path.name)
        assert not missing, f"{path.name}: rows not in the local run's table: {missing}"


def test_reduced_experiment_runs_to_completion_through_the_cluster_generic_profile(reduced_run, tmp_path):
    config = cluster_config(tmp_path)
    command = snakemake_command(tmp_path, config, "--profile", str(PROFILE))
    done = subprocess.run(bounded(command, RUN_TIMEOUT), capture_output=True, text=True, timeout=RUN_TIMEOUT + 60)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]

    # Every job but the target rule went through submit.sh and finished with exit status 0.
    submitted = re.findall(r"Submitted job \d+ with external jobid '([^']+)'", log)
    total = int(re.search(r"^total\s+(\d+)$", log, re.MULTILINE).group(1))
    assert len(submitted) == total - 1, f"{len(submitted)} of {total} jobs were submitted:\n{log[-3000:]}"
    jobs = tmp_path / ".snakemake" / "cluster-generic"
    assert sorted(p.name for p in jobs.iterdir()) == sorted(submitted)
    for job in submitted:
        assert (jobs / job / "exit_status").read_text().strip() == "0", (jobs / job / "log").read_text()[-3000:]

    again = subprocess.run(bounded([*command, "--dry-run"], 300), capture_output=True, text=True, timeout=360)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-3000:]
    assert _table_rows(tmp_path / "results" / "reduced" / "tables" / "base2novel.csv"), "no base2novel rows"
    assert_results_match_local(tmp_path, reduced_run[0])
