"""One GPU, or one slot on a GPU, per concurrently running job on a multi-GPU host.

Snakemake's `--resources gpu=N` caps how many GPU jobs run at once but not which GPU each one
uses: without this every job would take `cuda` = GPU 0. So a train or evaluate process claims a
free slot before it imports torch and exports that GPU as CUDA_VISIBLE_DEVICES; torch then sees
exactly one GPU. `workflow.jobs_per_gpu: k` gives each GPU k slots (small jobs packed onto a big
GPU); slots are taken one per GPU first, so jobs spread over the GPUs before they share one.

A slot is a lock file held with flock(2) for the life of the process. The kernel drops the lock
when its process ends, however it ends (a crash, SIGKILL, the OOM killer), so the slot of a dead
job is free for the next one at once and no stale lock ever needs a timeout; the owner's pid in
the file is for people and the log. A process that finds every slot taken waits for one.

Where a scheduler already chose the GPUs (SLURM, or anything else that sets CUDA_VISIBLE_DEVICES)
that choice is used as it is. Environment variables:

* `BMIP_GPUS` — the GPUs to share out, comma-separated as CUDA_VISIBLE_DEVICES takes them (indices
  or UUIDs), instead of every GPU `nvidia-smi` lists; e.g. `BMIP_GPUS=2,3` leaves 0 and 1 to others.
* `BMIP_GPU_LOCK_DIR` — the folder of the lock files (default `/tmp/bmip-gpu-slots`); every bmip
  process on the host must use the same one.

This module imports no torch: it must run before torch does.
"""
from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = Path("/tmp/bmip-gpu-slots")
SLOT_ENV = "BMIP_GPU_SLOT"  # set for the claiming process: which slot it holds (read by provenance)
POLL_SECONDS = 0.5
WAIT_LOG_SECONDS = 300.0

_held: tuple[int, str] | None = None  # (open lock file, slot label) of this process


@dataclasses.dataclass(frozen=True)
class Gpu:
    """A GPU as CUDA_VISIBLE_DEVICES names it (`id`), with what nvidia-smi says of it."""

    id: str
    index: int | None = None
    uuid: str | None = None
    name: str | None = None
    memory_mib: int | None = None


def detect_gpus() -> list[Gpu]:
    """The GPUs of this host as `nvidia-smi` lists them ([] without an NVIDIA driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    gpus = []
    for line in done.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        memory = fields[3]
        gpus.append(Gpu(id=fields[1], index=int(fields[0]), uuid=fields[1], name=fields[2],
                        memory_mib=int(memory) if memory.isdigit() else None))
    return gpus


def gpu_pool() -> list[Gpu]:
    """The GPUs jobs are shared out on: `BMIP_GPUS` if set, else every GPU nvidia-smi lists."""
    chosen = os.environ.get("BMIP_GPUS")
    if chosen is None:
        return detect_gpus()
    return [Gpu(id=part.strip()) for part in chosen.split(",") if part.strip()]


def lock_dir() -> Path:
    return Path(os.environ.get("BMIP_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR)


def wants_gpu(device: str) -> bool:
    """Whether a job with this `device` setting gets a slot: `auto` and `cuda` do; `cpu` does
    not, and `cuda:N` names its GPU itself."""
    return device in ("auto", "cuda")


def _slot_files(gpus: list[Gpu], per_gpu: int, folder: Path) -> list[tuple[Gpu, int, Path]]:
    """Every slot, one per GPU first: jobs spread over the GPUs before they share one."""
    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9.-]", "_", text)

    return [(gpu, slot, folder / f"gpu-{safe(gpu.id)}-slot{slot}.lock") for slot in range(per_gpu) for gpu in gpus]


def _try_lock(path: Path) -> int | None:
    """The open, locked lock file, or None if a live process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's slot: taken
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        os.fchmod(fd, 0o666)  # other users' jobs on the host can lock it too
    except PermissionError:
        pass
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holders(slots: list[tuple[Gpu, int, Path]]) -> str:
    parts = []
    for gpu, slot, path in slots:
        try:
            pid = path.read_text().strip() or "?"
        except OSError:
            pid = "?"
        parts.append(f"GPU {gpu.id} slot {slot}: pid {pid}")
    return "; ".join(parts)


def claim_gpu(device: str, jobs_per_gpu: int = 1) -> str | None:
    """Give this process a GPU slot before torch starts; returns what it uses, None if no GPU.

    Waits while every slot is taken. Idempotent: a process keeps the slot it claimed first.
    """
    global _held
    if _held is not None:
        return _held[1]
    if not wants_gpu(device):
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        log.info("using the GPUs the scheduler gave this job as they are: CUDA_VISIBLE_DEVICES=%r", visible)
        return f"CUDA_VISIBLE_DEVICES={visible}"
    gpus = gpu_pool()
    if not gpus:
        return None
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o1777)  # shared by every user's jobs, like /tmp
    except PermissionError:
        pass
    slots = _slot_files(gpus, jobs_per_gpu, folder)
    started, last_log = time.monotonic(), None
    while True:
        for gpu, slot, path in slots:
            fd = _try_lock(path)
            if fd is None:
                continue
            label = f"{gpu.id}/{slot}"
            _held = (fd, label)
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu.id
            os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # numeric ids mean what nvidia-smi shows
            os.environ[SLOT_ENV] = label
            waited = time.monotonic() - started
            log.info("GPU slot %d of GPU %s (lock %s)%s", slot, gpu.id, path,
                     f" after waiting {waited:.0f} s" if waited >= 1 else "")
            return label
        now = time.monotonic()
        if last_log is None or now - last_log >= WAIT_LOG_SECONDS:
            last_log = now
            log.warning(
                "no free GPU slot (%s); waiting for one. Run snakemake with --resources gpu=%d so that "
                "it queues the jobs itself", _holders(slots), len(slots),
            )
        time.sleep(POLL_SECONDS)


def claim_for(config: dict[str, Any]) -> str | None:
    """`claim_gpu` with a validated config's device and `workflow.jobs_per_gpu`."""
    return claim_gpu(config["device"], config["workflow"]["jobs_per_gpu"])


def release_gpu() -> None:
    """Give the slot back before the process ends (the end of the process does it anyway)."""
    global _held
    if _held is not None:
        os.close(_held[0])
        _held = None
