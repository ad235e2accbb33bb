"""The provenance record written beside every result: enough to audit where a number came from."""
from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bmip
from bmip.config import config_hash

if TYPE_CHECKING:  # the audit reads code versions without torch
    import torch

PACKAGES = ("torch", "torchvision", "open_clip_torch", "numpy", "pillow", "safetensors", "pandas", "pyyaml")


def code_version() -> dict[str, Any]:
    """Package version, and the git commit and dirtiness of the checkout it runs from, if any."""
    root = Path(bmip.__file__).resolve().parent.parent
    record: dict[str, Any] = {"package": bmip.__version__, "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(
                # Untracked files count too: a run may import code that was never committed.
                ["git", "-C", str(root), "status", "--porcelain", "--", "bmip", "workflow", "config"],
                capture_output=True, text=True, timeout=10,
            )
            record["git_commit"] = commit.stdout.strip()
            record["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return record


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def gpu_record(device: "torch.device") -> dict[str, Any]:
    """Which GPU a run used: name, UUID, and the index nvidia-smi gives it on the host (the one
    people and schedulers see, not torch's index among the visible ones)."""
    import torch

    from bmip.engine.gpu_slots import detect_gpus

    props = torch.cuda.get_device_properties(device)
    uuid = str(getattr(props, "uuid", "") or "") or None
    if uuid and not uuid.startswith(("GPU-", "MIG-")):
        uuid = f"GPU-{uuid}"
    host_index = next((gpu.index for gpu in detect_gpus() if uuid and gpu.uuid == uuid), None)
    return {
        "gpu": props.name,
        "gpu_uuid": uuid,
        "gpu_index": host_index,
        "gpu_memory_mib": props.total_memory // 2**20,
        "gpu_capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
    }


def hardware(device: "torch.device", precision: str | None = None) -> dict[str, Any]:
    """What a run or benchmark was measured on, and at which compute precision."""
    import torch

    from bmip.engine.gpu_slots import SLOT_ENV

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "precision": precision,
        # How the GPU was chosen: a scheduler's CUDA_VISIBLE_DEVICES, or a slot of bmip's allocator.
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpu_slot": os.environ.get(SLOT_ENV),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), None)
    except OSError:
        info["cpu_model"] = None
    if device.type == "cuda":
        info.update(gpu_record(device))
    return info


class RunClock:
    """Start/end time, wall time and peak memory of a run, on the device and at the precision it
    computes with; `extra` adds other measurements of this execution (a training's per-epoch
    seconds, the epoch it resumed from), which like the rest of `time` differ between two runs of
    the same config (bmip.audit.volatile)."""

    def __init__(self, device: "torch.device", precision: str | None = None):
        import torch

        self.device = device
        self.precision = precision
        self.start = dt.datetime.now(dt.timezone.utc)
        self._t0 = time.perf_counter()
        self.extra: dict[str, Any] = {}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def record(self) -> dict[str, Any]:
        peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        out = {
            "start": self.start.isoformat(),
            "end": dt.datetime.now(dt.timezone.utc).isoformat(),
            "wall_seconds": round(time.perf_counter() - self._t0, 3),
            "peak_rss_mib": round(peak_rss_kib / 1024, 1),
        }
        if self.device.type == "cuda":
            import torch

            out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return {**out, **self.extra}


def provenance(
    kind: str,
    run: dict[str, Any],
    *,
    clock: RunClock,
    inputs: dict[str, Any],
    backbone: dict[str, Any],
    work: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The full record: code, config (+ hash), data hashes, backbone, environment, timing, command;
    for an evaluation also `work`, what it computed: the image-tower forwards it ran and the image
    features it reused (bmip.engine.evaluate), which `bmip audit` checks and cost.md sums."""
    record = {
        "kind": kind,
        "code": code_version(),
        "config": run,
        "config_sha256": config_hash(run),
        "seed": run["seed"],
        "shots": run["shots"],
        "inputs": inputs,
        "backbone": backbone,
        "packages": package_versions(),
        "hardware": hardware(clock.device, clock.precision),
        "time": clock.record(),
        "command": sys.argv,
    }
    if work is not None:
        record["work"] = work
    return record
