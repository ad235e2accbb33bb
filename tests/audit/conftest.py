"""One reduced workflow run (including the audit rules) per test session; tests tamper with copies."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.workflow.reduced import reduced_config, snakemake_command

TIMEOUT = 1500
# Two methods (one without and one with learned tensors), every protocol, two seeds: every
# table, a real checkpoint to corrupt, and seed means/spreads to recompute, in a few minutes.
METHODS = ["zsclip", "coop"]
SEEDS = [1, 2]


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory) -> Path:
    """The working folder of a complete `snakemake --cores 2` run of the reduced experiment."""
    workdir = tmp_path_factory.mktemp("audited")
    config = reduced_config(workdir, methods=METHODS, seeds=SEEDS)
    done = subprocess.run(snakemake_command(workdir, config, "--cores", "2"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir


@pytest.fixture(scope="session")
def experiment(workflow_run) -> Path:
    """The fresh experiment folder, results/reduced (read-only: tamper with `experiment_copy`)."""
    return workflow_run / "results" / "reduced"


@pytest.fixture
def experiment_copy(workflow_run, tmp_path) -> Path:
    """A private copy of the run (data and results, not Snakemake's records) to tamper with."""
    copy = tmp_path / "run"
    shutil.copytree(workflow_run, copy, ignore=shutil.ignore_patterns(".snakemake"))
    return copy / "results" / "reduced"
