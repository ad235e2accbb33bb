"""The reduced workflow once with `precision: bf16` (CPU autocast), its train and evaluate jobs asking
for a GPU on a host with two fake GPUs (BMIP_GPUS): every job takes a slot, concurrent jobs never
share one, and every run records bf16, its slot and fp32 checkpoints."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import torch

from bmip.checkpoint import read_checkpoint
from tests.workflow.reduced import REPO, reduced_config, snakemake_command

METHODS = ["coop", "bmip"]


def test_reduced_workflow_in_bf16_with_each_job_on_its_own_fake_gpu(tmp_path):
    job = {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 1}
    config = reduced_config(
        tmp_path, device="auto", precision="bf16", seeds=[1], methods=METHODS,
        protocols={"base2novel": {"datasets": ["toy"]}},
        workflow={"batch_seeds": True, "jobs_per_gpu": 1, "resources": {
            "train": job, "evaluate": job, "light": {"threads": 1, "mem_mb": 1000, "runtime": 5}}},
    )
    exp = tmp_path / "results" / "reduced"
    targets = [f"results/reduced/base2novel/{m}/toy/seed1/metrics.json" for m in METHODS]
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(BMIP_GPUS="fake0,fake1", BMIP_GPU_LOCK_DIR=str(tmp_path / "locks"), PYTHONPATH=str(REPO))
    done = subprocess.run(snakemake_command(tmp_path, config, "--resources", "gpu=2", "--cores", "2", *targets),
                          capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-5000:]

    runs = []
    for method in METHODS:
        train = exp / "train" / "base2novel" / method / "toy" / "seed1"
        tensors, _ = read_checkpoint(train / "prompts.safetensors")
        assert tensors and all(t.dtype == torch.float32 for t in tensors.values()), method
        evaluation = exp / "base2novel" / method / "toy" / "seed1"
        metrics = json.loads((evaluation / "metrics.json").read_text())
        assert 0 <= metrics["summary"]["base"] <= 100 and 0 <= metrics["summary"]["novel"] <= 100
        for folder in (train, evaluation):
            hw = json.loads((folder / "provenance.json").read_text())
            runs.append((folder, hw["hardware"], hw["time"]))
    for folder, hw, _ in runs:
        assert hw["device"] == "cpu" and hw["precision"] == "bf16", folder
        assert hw["gpu_slot"] in ("fake0/0", "fake1/0"), folder  # each job took a slot...
        assert hw["cuda_visible_devices"] == hw["gpu_slot"].split("/")[0]  # ...and saw only its GPU

    def interval(t):
        return dt.datetime.fromisoformat(t["start"]), dt.datetime.fromisoformat(t["end"])

    for i, (a, hw_a, t_a) in enumerate(runs):
        for b, hw_b, t_b in runs[i + 1:]:
            (s_a, e_a), (s_b, e_b) = interval(t_a), interval(t_b)
            if s_a < e_b and s_b < e_a:
                assert hw_a["gpu_slot"] != hw_b["gpu_slot"], (a, b)
