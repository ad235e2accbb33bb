"""The captions rule in the workflow's job grid: one job per dataset read, a GPU job for an MLLM."""
from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.workflow.reduced import REPO, reduced_config, snakemake_command


def _dry_run(command: list[str], **kwargs) -> str:
    done = subprocess.run([*command, "-n"], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _captions_jobs(output: str) -> dict[str, str]:
    """dataset -> the resources line of each planned captions job."""
    jobs = {}
    for block in re.split(r"\n(?=\[|rule |localrule )", output):
        if block.startswith("rule captions:"):
            dataset = re.search(r"wildcards: dataset=(\S+)", block).group(1)
            jobs[dataset] = re.search(r"resources: (.*)", block).group(1)
    return jobs


def test_the_reduced_workflow_plans_one_captions_job_per_dataset_only_when_asked(tmp_path):
    config = reduced_config(tmp_path)
    assert _captions_jobs(_dry_run(snakemake_command(tmp_path, config))) == {}
    config = reduced_config(tmp_path, captions={"captioner": "file", "file": "captions.csv"})
    jobs = _captions_jobs(_dry_run(snakemake_command(tmp_path, config)))
    assert sorted(jobs) == ["toy", "toy_b"]
    assert all("gpu=0" in resources for resources in jobs.values())  # a file needs no GPU


def test_the_paper_config_plans_the_captions_as_gpu_jobs(tmp_path):
    """config/paper.yaml with an MLLM captioner: a captions job for each of its 15 datasets, each
    asking for the GPU of an evaluate job."""
    extra = tmp_path / "captions.yaml"
    extra.write_text(yaml.safe_dump({"captions": {"captioner": "mllm", "model": "Qwen/Qwen2-VL-2B-Instruct"}}))
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    configfiles = ["config/paper.yaml"] if "captions" in paper else ["config/paper.yaml", str(extra)]
    output = _dry_run([sys.executable, "-m", "snakemake", "--configfile", *configfiles], cwd=REPO)
    jobs = _captions_jobs(output)
    assert len(jobs) == 15 and "imagenet" in jobs and "imagenet_sketch" in jobs
    asked = (paper.get("captions") or {}).get("resources") or paper["workflow"]["resources"]["evaluate"]
    gpus = asked["gpu"]
    assert gpus >= 1 and all(f"gpu={gpus}" in resources for resources in jobs.values()), jobs
