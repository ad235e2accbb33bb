"""The SLURM profile against a real scheduler: a private single-node SLURM cluster on this machine
(scripts/slurm/start-local-cluster.sh, Debian's slurm 22.05 with two fake GPUs) runs the reduced
experiment's jobs through snakemake-executor-plugin-slurm, exactly as on a cluster's login node.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.engine.toy import make_toy_dataset
from tests.workflow.reduced import REPO, reduced_config, snakemake_command
from tests.workflow.test_cluster_generic import assert_results_match_local, bounded, cluster_config

SCRIPTS = REPO / "scripts" / "slurm"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
SKIP_EXIT = 77  # start-local-cluster.sh: the packages could not be installed
RUN_TIMEOUT = 600
# Test-only: a first status check 10 s after submission instead of the plugin's 40 s (our jobs take
# tens of seconds, not hours). Each SLURM job costs three Python start-ups (batch step, srun step,
# the bmip command), so the runs stop at the metrics; the light rules after them (tables, figures,
# provenance) run in the cluster-generic test, and the splits job is a light job here.
FAST = ("--slurm-init-seconds-before-status-checks", "10")
METRICS = tuple(f"results/reduced/base2novel/coop/toy/seed{seed}/metrics.json" for seed in (1, 2))
GPU_RULES = {"train", "image_features", "evaluate_base2novel"}  # coop reads frozen image features
# The paper config: base2novel and open_world of one model share a job (bmip.engine.paths.evaluate_rule).
PAPER_GPU_RULES = {"train", "evaluate_base_trained"}
ACTIVE = "PENDING,RUNNING,CONFIGURING,COMPLETING"
T = TypeVar("T")


@dataclass
class LocalSlurm:
    """A running private cluster; `env` reaches it (SLURM_CONF) and names partition and account
    the way a user does, through SBATCH_PARTITION / SBATCH_ACCOUNT."""

    env: dict[str, str]

    def command(self, *args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=30)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (finished jobs stay visible for the cluster's MinJobAge, 1 h)."""
        return dict(re.findall(r"(\S+?)=(\S*)", self.command("scontrol", "show", "job", "--oneliner", job_id)))

    def active(self, run_id: str) -> list[str]:
        """'<job id> <state> <comment>' for each job of one Snakemake run still queued or running."""
        return self.command("squeue", "--noheader", "--name", run_id, "--states", ACTIVE, "--format", "%A %T %k")\
            .splitlines()


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    # Under /tmp, not pytest's 0700 tmp folders: munged wants every folder above its socket
    # searchable by all users.
    cluster = Path(tempfile.mkdtemp(prefix="bmip-slurm-", dir="/tmp"))
    try:
        started = subprocess.run(["bash", str(SCRIPTS / "start-local-cluster.sh"), str(cluster)],
                                 capture_output=True, text=True, timeout=1200)
        if started.returncode == SKIP_EXIT:
            pytest.skip(f"Debian's slurm packages could not be installed: {started.stderr[-2000:]}")
        assert started.returncode == 0, started.stdout + started.stderr
        yield LocalSlurm(env={**os.environ, "SLURM_CONF": str(cluster / "etc" / "slurm.conf"),
                              "SBATCH_PARTITION": "debug", "SBATCH_ACCOUNT": "bmip-ci"})
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop-local-cluster.sh"), str(cluster), "--purge"],
                       capture_output=True, timeout=180)


def _run(slurm: LocalSlurm, workdir: Path, config: Path, log: Path, *extra: str) -> int:
    """One bounded `snakemake --profile workflow/profiles/slurm` run; its output goes to `log`."""
    command = snakemake_command(workdir, config, "--profile", str(PROFILE), *FAST, *extra)
    with log.open("w") as out:
        return subprocess.run(bounded(command, RUN_TIMEOUT), stdout=out, stderr=subprocess.STDOUT, env=slurm.env,
                              timeout=RUN_TIMEOUT + 60).returncode


def _wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `condition` every second until it returns something truthy, for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"gave up after {timeout} s waiting for {what}")


def _slurm_jobs(log: str) -> list[str]:
    return re.findall(r"has been submitted with SLURM jobid (\d+)", log)


def _rule(job: dict[str, str]) -> str:
    """The rule of a job from the comment the plugin gives it: rule_<rule>[_wildcards_<values>]."""
    return re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", job["Comment"]).group(1)


def _job_total(log: str) -> int:
    return int(re.search(r"^total\s+(\d+)$", log, re.MULTILINE).group(1))


def _steps_done(log: str) -> int:
    return max((int(done) for done in re.findall(r"^(\d+) of \d+ steps", log, re.MULTILINE)), default=0)


def test_paper_jobs_ask_slurm_for_a_gpu_only_to_train_and_evaluate(tmp_path):
    """What the profile hands the SLURM plugin for the paper config (a dry run: no cluster needed):
    partition and account from the environment, and the config's per-rule requests."""
    env = {**os.environ, "SBATCH_PARTITION": "gpu-long", "SBATCH_ACCOUNT": "vision-lab"}
    targets = ["results/paper/train/base2novel/bmip/eurosat/seed1/prompts.safetensors",
               "results/paper/base2novel/bmip/eurosat/seed1/metrics.json"]
    command = snakemake_command(tmp_path, REPO / "config" / "paper.yaml", "--profile", str(PROFILE), "--dry-run",
                                *targets)
    done = subprocess.run(bounded(command, 300), capture_output=True, text=True, env=env, timeout=360)
    assert done.returncode == 0, done.stderr[-3000:]
    resources = dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", done.stdout, re.MULTILINE))
    # inventory: the record of the images, once downloaded (a local rule: it runs beside Snakemake).
    assert set(resources) == {"download", "weights", "inventory", "check_data", "fewshot_splits", *PAPER_GPU_RULES}, \
        done.stdout[-3000:]
    for rule, requested in resources.items():
        assert "slurm_partition=gpu-long, slurm_account=vision-lab" in requested, requested
        assert (f"gpu={1 if rule in PAPER_GPU_RULES else 0}") in requested.split(", "), f"{rule}: {requested}"
    assert "mem_mb=32000" in resources["train"].split(", ") and "runtime=720" in resources["train"].split(", ")


def test_downloads_and_the_weights_run_beside_snakemake_never_through_sbatch(tmp_path):
    """On a cluster, `download` and `weights` fetch where Snakemake runs (the login node: network,
    no job time limit); training never does. Snakemake's own list of local rules, for the paper
    config (its dry run prints local and submitted jobs alike)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import ConfigSettings, ResourceSettings\n"
        "repo = Path(sys.argv[1])\n"
        "with SnakemakeApi() as api:\n"
        "    workflow = api.workflow(resource_settings=ResourceSettings(), snakefile=repo / 'workflow' / 'Snakefile',\n"
        "        config_settings=ConfigSettings(configfiles=[repo / 'config' / 'paper.yaml']), workdir=Path.cwd())\n"
        "    workflow.dag()  # reads the Snakefile\n"
        "    print(json.dumps(sorted(workflow._workflow._localrules)))  # what `localrule: True` declares\n")
    done = subprocess.run([sys.executable, "-c", script, str(REPO)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    local = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert {"download", "weights", "inventory"} <= local
    assert not {"train", "evaluate", "check_data", "fewshot_splits"} & local


def test_a_download_job_runs_on_the_submit_host_not_through_sbatch(slurm, tmp_path):
    """A registry dataset already in place (a CoOp EuroSAT folder): its download job verifies it
    beside Snakemake, as on a login node, and nothing is submitted to SLURM."""
    import shutil

    from bmip.data.sources import BUNDLED_DIR

    config = cluster_config(tmp_path)
    (tmp_path / "data" / "eurosat" / "2750" / "Forest").mkdir(parents=True)
    shutil.copy(BUNDLED_DIR / "split_zhou_EuroSAT.json", tmp_path / "data" / "eurosat")
    log = tmp_path / "snakemake.log"
    record = "results/reduced/inputs/downloaded/eurosat.json"
    assert _run(slurm, tmp_path, config, log, record) == 0, log.read_text()[-5000:]
    text = log.read_text()
    assert "localrule download:" in text, text[-3000:]
    assert _slurm_jobs(text) == [], text[-3000:]
    assert json.loads((tmp_path / record).read_text())["datasets"] == {"eurosat": "data/eurosat"}


def test_killed_run_resumes_through_slurm_with_only_the_remaining_jobs(slurm, reduced_run, tmp_path):
    """Snakemake is killed (SIGKILL, as when a login session dies) while the training job runs in
    SLURM; after the documented recovery (cancel the run's jobs, --unlock, rerun) only the
    unfinished jobs run, each train/evaluate job asked SLURM for one GPU and the numbers are the
    local run's."""
    config = cluster_config(tmp_path, gpu=1)
    first_log = tmp_path / "first.log"
    command = snakemake_command(tmp_path, config, "--profile", str(PROFILE), *FAST, *METRICS)
    with first_log.open("w") as out:
        first = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=slurm.env, start_new_session=True)
    try:
        run_id = _wait_for(lambda: (re.findall(r"SLURM run ID: (\S+)", first_log.read_text()) or [None])[0], 120,
                           "the SLURM run ID")
        _wait_for(lambda: any(line.split()[1:] == ["RUNNING", "rule_train_wildcards_base2novel_coop_toy"]
                              for line in slurm.active(run_id)), 400, "the training job to run in SLURM")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    first_text = first_log.read_text()
    done_before_kill = _steps_done(first_text)
    assert done_before_kill >= 1, f"the splits job should have finished before the kill:\n{first_text[-3000:]}"
    splits = sorted((tmp_path / "results" / "reduced" / "splits").rglob("*.json"))
    assert splits, "the splits job left no output"
    splits_mtimes = [path.stat().st_mtime_ns for path in splits]

    # Recovery, as the profile documents it: the orphaned jobs still run in SLURM.
    assert slurm.active(run_id), "the killed run's training job should still be in SLURM"
    slurm.command("scancel", "--name", run_id)
    _wait_for(lambda: "cancelled" if not slurm.active(run_id) else None, 60, "the orphaned jobs to be cancelled")
    unlock = subprocess.run(bounded([*command, "--unlock"], 300), capture_output=True, text=True, env=slurm.env,
                            timeout=360)
    assert unlock.returncode == 0, unlock.stderr[-3000:]

    rerun_log = tmp_path / "rerun.log"
    assert _run(slurm, tmp_path, config, rerun_log, *METRICS) == 0, rerun_log.read_text()[-5000:]
    rerun_text = rerun_log.read_text()
    # What is left: the first plan less the jobs that finished, before the kill or as orphans
    # before the scancel (image_features can still be running when train starts; one that has
    # finished its work when the scancel comes is CANCELLED in SLURM, its outputs complete). The
    # training, running at the kill, and the evaluation after it are left.
    completed = [j for j in _slurm_jobs(first_text) if slurm.job(j)["JobState"] == "COMPLETED"]
    assert len(completed) >= done_before_kill
    assert _job_total(rerun_text) <= _job_total(first_text) - len(completed), rerun_text[:3000]
    assert "rule train:" in rerun_text and "rule evaluate_base2novel:" in rerun_text, rerun_text[:3000]
    assert "rule fewshot_splits:" not in rerun_text
    assert [path.stat().st_mtime_ns for path in splits] == splits_mtimes, "finished splits were rewritten"

    # Partition and account came from SBATCH_PARTITION / SBATCH_ACCOUNT through the profile.
    assert "slurm_partition=debug, slurm_account=bmip-ci" in rerun_text
    for job_id in _slurm_jobs(first_text) + _slurm_jobs(rerun_text):
        job = slurm.job(job_id)
        wants_gpu = _rule(job) in GPU_RULES
        assert ("gres:gpu:1" in job.get("TresPerJob", "")) == wants_gpu, f"job {job_id}: {job}"
        assert (job["Partition"], job["Account"]) == ("debug", "bmip-ci"), f"job {job_id}: {job}"
    for job_id in _slurm_jobs(rerun_text):
        assert slurm.job(job_id)["JobState"] == "COMPLETED", slurm.job(job_id)
    # image_features may have finished before the kill (it needs only the data).
    assert {"train", "evaluate_base2novel"} <= {_rule(slurm.job(job_id)) for job_id in _slurm_jobs(rerun_text)} <= GPU_RULES
    assert_results_match_local(tmp_path, reduced_run[0])


def test_failing_job_is_reported_failed_and_the_run_stops(slurm, tmp_path):
    """A dataset with an image that does not decode: its first job, the data check, fails inside
    SLURM, Snakemake reports that SLURM job as failed and exits non-zero on its own, leaving nothing
    queued. (A corrupt split file is refused earlier, when the workflow starts.)"""
    make_toy_dataset(tmp_path / "data", "broken")
    (tmp_path / "data" / "broken" / "images" / "red" / "test_0.png").write_bytes(b"not an image")
    config = reduced_config(tmp_path, methods=["coop"], seeds=[1], protocols={"base2novel": {"datasets": ["broken"]}})
    log = tmp_path / "snakemake.log"
    started = time.monotonic()
    # No resubmission (the profile retries once): the same failure twice would only cost time.
    returncode = _run(slurm, tmp_path, config, log, "--retries", "0",
                      "results/reduced/base2novel/coop/broken/seed1/metrics.json")
    text = log.read_text()
    assert returncode not in (0, 124, 137), f"exit {returncode} after {time.monotonic() - started:.0f} s:\n{text[-3000:]}"
    jobs = _slurm_jobs(text)
    assert len(jobs) == 1, text[-3000:]
    assert f"SLURM-job '{jobs[0]}' failed, SLURM status is: 'FAILED'" in text
    job = slurm.job(jobs[0])
    assert (_rule(job), job["JobState"]) == ("check_data", "FAILED"), job
    run_id = re.search(r"SLURM run ID: (\S+)", text).group(1)
    assert slurm.active(run_id) == []
