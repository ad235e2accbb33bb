"""`scripts/run.sh` after a hard kill: a stale lock is removed, a live run's lock is left alone."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bmip.workflow_lock import LIVE, NOT_LOCKED, STALE, lock_files, status
from tests.workflow.reduced import REPO

VENV = Path(sys.executable).parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "results", "resources", ".snakemake", "__pycache__", "*.egg-info")


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of this checkout whose scripts/setup.sh finds the running venv up to date."""
    stamp = hashlib.sha256(b"".join(
        f"{hashlib.sha256((REPO / name).read_bytes()).hexdigest()}  {name}\n".encode()
        for name in ("requirements.lock", "pyproject.toml"))).hexdigest()
    recorded = (VENV / ".bmip-lock-sha256").read_text().strip() if (VENV / ".bmip-lock-sha256").is_file() else None
    assert recorded == stamp, f"{VENV} was not set up from this checkout's requirements: run scripts/setup.sh"
    copy = tmp_path / "bmip"
    shutil.copytree(REPO, copy, ignore=SKIP)
    return copy


def run_script(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BMIP_VENV": str(VENV)}
    return subprocess.run(["bash", "scripts/run.sh", *args], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_stale_lock_is_removed_and_the_run_proceeds(checkout):
    locks = checkout / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text(f"{checkout}/results/miniworld/splits/toys/shot_16-seed_1.json\n")
    (locks / "0.output.lock").write_text(f"{checkout}/results/miniworld/tables/base2novel.csv\n")
    assert status(checkout)[0] == STALE
    done = run_script(checkout, "-n", "--cores", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interrupted" in done.stderr and "unlocking" in done.stderr
    assert "LockException" not in done.stderr + done.stdout
    assert lock_files(checkout) == [] and status(checkout)[0] == NOT_LOCKED
    assert "train" in done.stdout  # the dry run listed the jobs still to do


def test_a_live_run_keeps_its_lock_and_is_named(checkout):
    (checkout / "sleep.smk").write_text('rule all:\n    output: "slept"\n    shell: "sleep 120 && touch {output}"\n')
    sleeper = subprocess.Popen([sys.executable, "-m", "snakemake", "--snakefile", "sleep.smk", "--cores", "1"],
                               cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not lock_files(checkout):
            assert sleeper.poll() is None and time.monotonic() < deadline, "the sleeping workflow did not lock"
            time.sleep(0.2)
        held = lock_files(checkout)
        assert status(checkout)[0] == LIVE
        done = run_script(checkout, "-n", "--cores", "1")
        assert done.returncode != 0
        assert f"pid {sleeper.pid}" in done.stderr and "running workflow" in done.stderr
        assert lock_files(checkout) == held  # untouched
    finally:
        os.killpg(sleeper.pid, signal.SIGKILL)
        sleeper.wait()
    assert status(checkout)[0] == STALE  # killed hard: now the lock is stale


def test_a_yaml_error_in_a_config_is_named_with_its_line_before_snakemake_reads_it(checkout):
    bad = checkout / "my.yaml"
    bad.write_text("experiment: mine\nseeds: [1, 2\nshots: 4\n")
    done = run_script(checkout, "-n", "--configfile", "my.yaml")
    assert done.returncode != 0
    assert "my.yaml, line 3, column 6: expected ',' or ']'" in done.stderr, done.stderr[-2000:]
    assert "Config file is not valid JSON or YAML" not in done.stderr + done.stdout  # stopped before Snakemake
