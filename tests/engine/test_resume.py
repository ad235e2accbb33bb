"""A run killed with SIGKILL in its second epoch resumes and ends with the uninterrupted numbers."""
import os
import signal
import subprocess
import sys
import time

import torch

from bmip.engine import paths
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train


def _train_cmd(config_path, out):
    return [sys.executable, "-m", "bmip.cli", "train", str(config_path), "--method", "bmip", "--dataset", "toy",
            "--seed", "1", "--out", str(out), "--set", "recipes.default.bmip.epochs=4", "--set", "shots=6"]


def test_sigkill_in_second_epoch_then_resume(toy_setup, tmp_path):
    config, config_path = toy_setup
    out = tmp_path / "killed"
    state = out / paths.STATE
    proc = subprocess.Popen(_train_cmd(config_path, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not state.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.load(state, weights_only=True)["next_epoch"] == 1  # killed during epoch 2
    assert not (out / paths.PROMPTS).exists()

    resumed = subprocess.run(_train_cmd(config_path, out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "from epoch 1 of 4" in resumed.stderr

    from bmip.config import apply_overrides, validate

    straight = validate(apply_overrides(config, ["recipes.default.bmip.epochs=4", "shots=6"]))
    reference = train(straight, "base2novel", "bmip", "toy", 1, tmp_path / "straight")
    assert (out / paths.PROMPTS).read_bytes() == (reference / paths.PROMPTS).read_bytes()
    m1 = evaluate(straight, "base2novel", "bmip", "toy", 1, out / paths.PROMPTS, tmp_path / "e1")
    m2 = evaluate(straight, "base2novel", "bmip", "toy", 1, reference / paths.PROMPTS, tmp_path / "e2")
    assert (m1 / paths.METRICS).read_bytes() == (m2 / paths.METRICS).read_bytes()
    drop_seconds = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731
    assert drop_seconds((out / paths.TRAIN_LOG).read_text()) == drop_seconds((reference / paths.TRAIN_LOG).read_text())
