"""One reduced workflow run per test session, shared by the workflow tests."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.workflow.reduced import reduced_config, snakemake_command

TIMEOUT = 1500


@pytest.fixture(scope="session")
def reduced_run(tmp_path_factory) -> tuple[Path, Path]:
    """(workdir, config) after a complete `snakemake --cores 2` run of the reduced experiment."""
    workdir = tmp_path_factory.mktemp("reduced")
    config = reduced_config(workdir)
    done = subprocess.run(snakemake_command(workdir, config, "--cores", "2"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir, config
