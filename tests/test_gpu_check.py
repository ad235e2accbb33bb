"""scripts/gpu-check.sh: without a GPU it says so and exits 2; every part's machinery (child processes,
partial reports, concurrent workers, failures recorded while the rest goes on) rehearsed on CPU
with the tiny model. Its GPU figures come only from a GPU machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.workflow.reduced import REPO


def _gpu_check(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "BMIP_PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--out", str(out), *args],
                          capture_output=True, text=True, env=environ, timeout=900)


def test_without_a_gpu_it_says_so_and_exits_non_zero_without_a_traceback(tmp_path):
    done = _gpu_check(tmp_path, CUDA_VISIBLE_DEVICES="")  # no GPU visible, whatever the machine has
    assert done.returncode == 2
    assert ("gpu-check: no usable CUDA GPU on this machine (CUDA_VISIBLE_DEVICES is empty): nothing to validate. "
            "Run it on a GPU machine") in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["status"] == "no GPU" and report["parts"]["environment"]["result"]["torch"]
    assert "logits" not in report["parts"]


def test_rehearsal_on_cpu_runs_every_measuring_part_and_writes_the_report(tmp_path):
    done = _gpu_check(tmp_path, "--device", "cpu", "--model", "test-vit-tiny", "--classes", "5",
                      "--methods", "coop", "--parts", "logits", "benchmark_bf16", "decode", "concurrency",
                      "--workers", "1", "--decode-images", "16",
                      "--levels", "1", "2", "--window", "1", "--steps", "1", "--warmup", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["status"] == "passed"
    parts = report["parts"]
    assert [parts[p]["status"] for p in ("environment", "logits", "benchmark_bf16", "decode", "concurrency")] == ["ok"] * 5
    decode = parts["decode"]["result"]
    assert decode["images"] == 16 and decode["workers"] == 1 and decode["decode_images_per_s"] > 0
    logits = parts["logits"]["result"]["methods"]
    assert set(logits) == {"coop"}
    assert all(r["finite"] and r["max_abs_diff"] < 0.25 for r in logits.values())
    bench = parts["benchmark_bf16"]["result"]
    assert bench["settings"]["precision"] == "bf16"
    assert bench["methods"]["coop"]["batch_size"] == 32  # CoOp's paper batch size, not the default 4
    assert parts["concurrency"]["result"]["method"] == "bmip"
    levels = parts["concurrency"]["result"]["levels"]
    assert set(levels) == {"1", "2"} and all(level["total_images_per_s"] > 0 for level in levels.values())
    summary = (tmp_path / "gpu-check.md").read_text()
    assert summary.startswith("# GPU check (passed)") and "## Concurrent jobs on one GPU" in summary
    bound = "decoding" if decode["decode_images_per_s"] < bench["methods"]["coop"]["eval_images_per_s"] else "the model"
    eval_rate, decode_rate = bench["methods"]["coop"]["eval_images_per_s"], decode["decode_images_per_s"]
    assert f"| coop | {eval_rate:.4g} | {decode_rate:.4g} | {bound} |" in summary
    assert (tmp_path / "gpu-check-logs.tar.gz").stat().st_size > 0


def test_a_failing_part_is_recorded_and_the_next_part_still_runs(tmp_path):
    done = _gpu_check(tmp_path, "--device", "cpu", "--model", "no-such-model", "--parts", "logits", "benchmark_bf16")
    assert done.returncode == 1
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["status"] == "incomplete"
    for part in ("logits", "benchmark_bf16"):
        assert report["parts"][part]["status"] == "failed", part
    assert "no-such-model" in report["parts"]["logits"]["error"]
    assert "Traceback" not in done.stderr
