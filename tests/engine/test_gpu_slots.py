"""The GPU slot allocator, on fake GPUs (BMIP_GPUS names the GPUs to share out, as a user restricting
the pool would): concurrent jobs never share a slot, a killed job's slot is reused at once, and a
scheduler's CUDA_VISIBLE_DEVICES is used as it is."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bmip.engine import gpu_slots
from tests.workflow.reduced import REPO

# A job: claim a slot, note what it got and when, hold it until the file `release` exists, exit
# (which frees the slot).
JOB = """
import json, os, sys, time
from bmip.engine.gpu_slots import claim_gpu
record, per_gpu, release = sys.argv[1:]
label = claim_gpu("auto", int(per_gpu))
start = time.time()
assert "torch" not in sys.modules
open(record + ".claimed", "w").close()
while not os.path.exists(release):
    time.sleep(0.05)
time.sleep(0.1)
with open(record, "w") as fh:
    json.dump({"pid": os.getpid(), "slot": label, "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
               "start": start, "end": time.time()}, fh)
"""


def _env(lock_dir: Path, gpus: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(BMIP_GPUS=gpus, BMIP_GPU_LOCK_DIR=str(lock_dir), PYTHONPATH=str(REPO))
    return env


def _job(record: Path, env: dict[str, str], per_gpu: int, release: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", JOB, str(record), str(per_gpu), str(release)], env=env,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def _claimed(folder: Path) -> int:
    return len(list(folder.glob("*.claimed")))


def test_eight_concurrent_jobs_on_two_gpus_with_two_slots_each_never_share_a_slot(tmp_path):
    env, release = _env(tmp_path / "locks", "fake0,fake1"), tmp_path / "release"
    jobs = [_job(tmp_path / f"job{i}.json", env, 2, release) for i in range(8)]
    end = time.monotonic() + 60
    while _claimed(tmp_path) < 4:
        assert time.monotonic() < end and all(job.poll() is None for job in jobs), "4 jobs never got a slot"
        time.sleep(0.05)
    time.sleep(1.5)
    assert _claimed(tmp_path) == 4  # the other four wait for a free slot
    release.touch()
    for job in jobs:
        _, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
    records = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(8)]
    assert sorted(r["slot"] for r in records) == ["fake0/0", "fake0/0", "fake0/1", "fake0/1",
                                                 "fake1/0", "fake1/0", "fake1/1", "fake1/1"]
    for r in records:
        assert r["visible"] == r["slot"].split("/")[0]  # the process sees exactly its slot's GPU
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            if a["slot"] == b["slot"]:
                assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)


def test_a_sigkilled_jobs_slot_goes_to_the_next_job(tmp_path):
    env, release = _env(tmp_path / "locks", "fake0"), tmp_path / "release"
    holder = _job(tmp_path / "holder.json", env, 1, tmp_path / "never")
    _wait_for(tmp_path / "holder.json.claimed")
    lock = tmp_path / "locks" / "gpu-fake0-slot0.lock"
    assert lock.read_text().strip() == str(holder.pid)
    waiter = _job(tmp_path / "waiter.json", env, 1, release)
    time.sleep(1.5)
    assert waiter.poll() is None and not (tmp_path / "waiter.json.claimed").exists()  # the only slot is taken
    killed = time.time()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    _wait_for(tmp_path / "waiter.json.claimed")
    assert lock.read_text().strip() == str(waiter.pid)  # the dead owner's pid was replaced
    release.touch()
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    record = json.loads((tmp_path / "waiter.json").read_text())
    assert record["slot"] == "fake0/0" and record["start"] >= killed
    assert "no free GPU slot (GPU fake0 slot 0: pid" in err and "--resources gpu=1" in err


def test_a_schedulers_cuda_visible_devices_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("BMIP_GPUS", "fake0,fake1")
    monkeypatch.setenv("BMIP_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert gpu_slots.claim_gpu("cuda", 2) == "CUDA_VISIBLE_DEVICES=3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and gpu_slots.SLOT_ENV not in os.environ
    assert not (tmp_path / "locks").exists()


@pytest.mark.parametrize("device", ["cpu", "cuda:1"])
def test_cpu_jobs_and_jobs_that_name_their_gpu_take_no_slot(tmp_path, monkeypatch, device):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("BMIP_GPUS", "fake0")
    monkeypatch.setenv("BMIP_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert gpu_slots.claim_gpu(device) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and not (tmp_path / "locks").exists()


def test_the_gpus_are_read_from_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\nprintf '0, GPU-aaa, NVIDIA H200, 143771\\n1, GPU-bbb, NVIDIA H200, 143771\\n'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("BMIP_GPUS", raising=False)
    assert gpu_slots.gpu_pool() == [
        gpu_slots.Gpu(id="GPU-aaa", index=0, uuid="GPU-aaa", name="NVIDIA H200", memory_mib=143771),
        gpu_slots.Gpu(id="GPU-bbb", index=1, uuid="GPU-bbb", name="NVIDIA H200", memory_mib=143771),
    ]
    monkeypatch.setenv("BMIP_GPUS", "1")
    assert gpu_slots.gpu_pool() == [gpu_slots.Gpu(id="1")]
