"""Kill anywhere, same result: the reduced experiment killed hard (SIGKILL of Snakemake's process
group) during a training job, an evaluation job and aggregation, each time recovered as
scripts/run.sh does, ends with the bytes of an uninterrupted run made in another folder (so a
clean run elsewhere gives the same bytes too: a difference of folder or of kill would both fail
it); and a rerun of a finished experiment rewrites nothing."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from bmip.audit.compare import compare
from tests.workflow.interrupt import interrupted_run
from tests.workflow.reduced import reduced_config, snakemake_command

TIMEOUT = 1500


def _experiment(workdir: Path) -> Path:
    return workdir / "results" / "reduced"


def _assert_same_results(reference: Path, run: Path) -> None:
    result = compare(_experiment(reference), _experiment(run))
    assert result.same, result.text()
    # What differs is only the record of the execution (bmip.audit.volatile); every result file is identical.
    assert {d.declared.files for d in result.differences} <= {
        "**/provenance.json", "provenance/*.csv", "cost.csv", "cost.md", "logs/**/*", "manifest.json", "crate.zip",
        "data_check/*.json"}
    assert (_experiment(run) / "audit.txt").read_text().rstrip().splitlines()[-1].startswith("PASSED")


def test_killed_in_training_evaluation_and_aggregation_ends_with_the_uninterrupted_bytes(reduced_run, tmp_path):
    config = reduced_config(tmp_path)
    log = tmp_path / "snakemake.log"
    interrupted_run(snakemake_command(tmp_path, config, "--cores", "2"), tmp_path, yaml.safe_load(config.read_text()),
                    ["train", "evaluate", "figures"], log, timeout=TIMEOUT)
    text = log.read_text()
    assert text.count("=== killed at") == 3, text[-3000:]
    # The training killed between its epochs went on from its saved state, not from scratch.
    resumed = [p for p in (_experiment(tmp_path) / "logs" / "train").rglob("*.log") if "resuming" in p.read_text()]
    assert resumed, "no training job resumed from its saved state"
    assert not list(_experiment(tmp_path).rglob("state.pt"))
    _assert_same_results(reduced_run[0], tmp_path)


def test_a_rerun_of_a_finished_experiment_rewrites_nothing(reduced_run):
    workdir, config = reduced_run
    # Snakemake's records, and bmip's ledger of what each job wrote: Snakemake touches a job's
    # outputs after it ends, so the first start after it brings the ledger's times up to date.
    files = [p for p in workdir.rglob("*") if p.is_file() and not {".snakemake", ".ledger"} & set(p.parts)]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    again = subprocess.run(snakemake_command(workdir, config, "--cores", "2"), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-3000:]
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in workdir.rglob("*")
             if p.is_file() and not {".snakemake", ".ledger"} & set(p.parts)}
    assert after.keys() == before.keys(), sorted(map(str, after.keys() ^ before.keys()))
    rewritten = [str(p.relative_to(workdir)) for p in files if after[p] != before[p]]
    assert not rewritten, rewritten
