"""A run killed with SIGKILL in its second epoch resumes and ends with the uninterrupted numbers.

`bmip+coprompt` also draws a class description at every step and loads a second, RandAugment-ed
view of every image: both are part of the seeded state. The toy dataset gets a description file
with three sentences per class (registered in `sources.DESCRIPTIONS`), so the draw matters.
"""
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bmip.data.sources import DESCRIPTIONS, Source
from bmip.engine import paths
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train
from tests.engine.toy import COLOURS

# The command line, with the toy dataset's description file registered first.
LAUNCH = ("import json, sys\n"
          "from bmip.data.sources import DESCRIPTIONS, Source\n"
          "DESCRIPTIONS['toy'] = Source(**json.loads(sys.argv[1]))\n"
          "from bmip.cli import main\n"
          "sys.exit(main(sys.argv[2:]))\n")


def _toy_descriptions(data_root) -> Source:
    sentences = {f"{c} colour": [f"a {c} square.", f"something painted {c}.", f"noise around {c}."] for c in COLOURS}
    body = json.dumps(sentences).encode()
    (data_root / "toy" / "toy_prompt.json").write_bytes(body)
    return Source(filename="toy_prompt.json", dest="toy/toy_prompt.json", size=len(body),
                  sha256=hashlib.sha256(body).hexdigest())


def _overrides(method):
    return [f"recipes.default.{method}.epochs=4", f"recipes.default.{method}.options.depth=3", "shots=6"]


def _train_cmd(config_path, out, method, source):
    sets = [arg for item in _overrides(method) for arg in ("--set", item)]
    return [sys.executable, "-c", LAUNCH, json.dumps(dataclasses.asdict(source)), "train", str(config_path),
            "--method", method, "--dataset", "toy", "--seed", "1", "--out", str(out), *sets]


@pytest.mark.parametrize("method", ["bmip", "bmip+coprompt"])
def test_sigkill_in_second_epoch_then_resume(toy_setup, toy_data, tmp_path, monkeypatch, method):
    config, config_path = toy_setup
    source = _toy_descriptions(toy_data)
    out = tmp_path / "killed"
    state = out / paths.STATE
    proc = subprocess.Popen(_train_cmd(config_path, out, method, source), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not state.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert torch.load(state, weights_only=True)["next_epoch"] == 1  # killed during epoch 2
    assert not (out / paths.PROMPTS).exists()

    resumed = subprocess.run(_train_cmd(config_path, out, method, source), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "from epoch 1 of 4" in resumed.stderr

    from bmip.config import apply_overrides, validate

    monkeypatch.setitem(DESCRIPTIONS, "toy", source)
    straight = validate(apply_overrides(config, _overrides(method)))
    reference = train(straight, "base2novel", method, "toy", 1, tmp_path / "straight")
    assert (out / paths.PROMPTS).read_bytes() == (reference / paths.PROMPTS).read_bytes()
    m1 = evaluate(straight, "base2novel", method, "toy", 1, out / paths.PROMPTS, tmp_path / "e1")
    m2 = evaluate(straight, "base2novel", method, "toy", 1, reference / paths.PROMPTS, tmp_path / "e2")
    assert (m1 / paths.METRICS).read_bytes() == (m2 / paths.METRICS).read_bytes()
    assert (out / paths.TRAIN_LOG).read_bytes() == (reference / paths.TRAIN_LOG).read_bytes()
    # Epoch times live in the provenance, those of the killed process's epoch included.
    timing = json.loads((out / paths.PROVENANCE).read_text())["time"]
    assert timing["resumed_from_epoch"] == 1 and len(timing["epoch_seconds"]) == 4
    assert all(isinstance(s, float) and s >= 0 for s in timing["epoch_seconds"])
    assert "resumed_from_epoch" not in json.loads((reference / paths.PROVENANCE).read_text())["time"]
    if method == "bmip+coprompt":
        record = json.loads((out / paths.PROVENANCE).read_text())["inputs"]["coprompt"]["descriptions"]
        assert record["origin"] == "coprompt" and record["sha256"] == source.sha256


class Interrupted(Exception):
    """Stands for a kill right after epoch 1's state was saved."""


def test_official_compat_run_resumes_with_its_alias_optimiser_states(toy_setup, tmp_path, monkeypatch):
    """The compat visual-prompt aliases each carry Adam moments; an interrupted run resumes with
    all of them and ends byte-identical to an uninterrupted one."""
    from bmip.config import apply_overrides, validate
    from bmip.engine import train as train_module

    config, _ = toy_setup
    config = validate(apply_overrides(config, ["recipes.default.bmip.options.official_compat=true",
                                               "recipes.default.bmip.warmup_epochs=0"]))
    out = tmp_path / "interrupted"
    write_log = train_module._write_log

    def interrupt(path, rows):
        write_log(path, rows)
        raise Interrupted

    monkeypatch.setattr(train_module, "_write_log", interrupt)
    try:
        train(config, "base2novel", "bmip", "toy", 1, out)
    except Interrupted:
        pass
    monkeypatch.undo()
    state = torch.load(out / paths.STATE, weights_only=True)
    assert state["next_epoch"] == 1 and not (out / paths.PROMPTS).exists()
    groups = state["optimizer"]["param_groups"]
    assert len(groups) == 2 and len(groups[1]["params"]) == 2  # depth 3: D-1 = 2 aliases
    assert all(i in state["optimizer"]["state"] for i in groups[1]["params"])

    train(config, "base2novel", "bmip", "toy", 1, out)
    reference = train(config, "base2novel", "bmip", "toy", 1, tmp_path / "straight")
    assert (out / paths.PROMPTS).read_bytes() == (reference / paths.PROMPTS).read_bytes()
    assert (out / paths.TRAIN_LOG).read_bytes() == (reference / paths.TRAIN_LOG).read_bytes()
