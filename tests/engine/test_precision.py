"""The bf16 path a GPU run takes, exercised on CPU through torch's CPU autocast: every method trains
and evaluates under it, learnable tensors, optimiser state and checkpoints stay fp32, and logits
agree with the fp32 run. Devices and precisions a machine cannot run stop `bmip check-config`."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import yaml

from bmip.checkpoint import read_checkpoint, save_checkpoint
from bmip.cli import main
from bmip.config import ConfigError
from bmip.recipes import recipe
from bmip.engine.runtime import autocast, resolve_precision
from bmip.engine.schedule import make_optimizer
from bmip.methods import build_model, method_names
from tests.shared import CLASSNAMES
from tests.workflow.reduced import REPO

CPU = torch.device("cpu")
# bf16 keeps 8 bits of mantissa (relative rounding 2^-9 per operation). Through the tiny model's 12
# blocks per tower, logits (cosine x logit scale 14.3) then differ from fp32 by at most 0.11 and
# 0.04 on average (measured: see the README); the bounds leave room for seeds and platforms.
MAX_LOGIT_DIFF = 0.25
MEAN_LOGIT_DIFF = 0.08


def _batch():
    gen = torch.Generator().manual_seed(3)
    return torch.randn(8, 3, 32, 32, generator=gen), torch.arange(8) % len(CLASSNAMES)


def logit_agreement(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 logits, bf16-autocast logits) of one batch, the way evaluation computes them."""
    model.eval()
    with torch.no_grad():
        reference = model(images, model.text_features())
        with autocast(CPU, "bf16"):
            low = model(images, model.text_features())
    return reference, low


@pytest.mark.parametrize("name", method_names())
def test_every_method_trains_and_evaluates_under_bf16_autocast_with_fp32_state(tiny_backbone, tmp_path, name):
    torch.manual_seed(0)
    model = build_model(tiny_backbone, name, CLASSNAMES)
    images, labels = _batch()
    views = [images.flip(-1)] * (len(model.train_transforms(images.shape[-1])) - 1)  # CoPrompt's second view
    params = model.learnable_parameters()
    if params:  # zero-shot CLIP has nothing to train
        optimiser = make_optimizer(params, recipe({}, "base2novel", name))
        before = [p.detach().clone() for p in params]
        model.train()
        for _ in range(2):
            with autocast(CPU, "bf16"):
                loss, logits = model.loss(images, labels, views)
            assert logits.dtype == torch.bfloat16 and torch.isfinite(loss)  # autocast really ran
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in params)
        assert any(not torch.equal(p.detach(), b) for p, b in zip(params, before))
        state = [v for s in optimiser.state.values() for v in s.values() if torch.is_tensor(v) and v.is_floating_point()]
        assert state and all(v.dtype == torch.float32 for v in state)
        save_checkpoint(tmp_path / "prompts.safetensors", model)
        tensors, _ = read_checkpoint(tmp_path / "prompts.safetensors")
        assert tensors and all(t.dtype == torch.float32 for t in tensors.values())
    reference, low = logit_agreement(model, images)
    assert reference.dtype == torch.float32 and low.dtype == torch.bfloat16
    # In the tiny model's logit units: MMRL scales its cosines by the release's literal 100.
    diff = (low.float() - reference).abs() * (tiny_backbone.clip.logit_scale.exp() / model.logit_scale()).item()
    assert diff.max() <= MAX_LOGIT_DIFF and diff.mean() <= MEAN_LOGIT_DIFF, (diff.max(), diff.mean())


def test_precision_auto_is_fp32_on_cpu_and_an_explicit_bf16_is_honoured():
    assert resolve_precision(CPU, "auto") == "fp32"
    assert resolve_precision(CPU, "bf16") == "bf16"
    assert resolve_precision(CPU, "fp32") == "fp32"
    with pytest.raises(ConfigError, match="precision: fp16 runs on a GPU only, and the jobs run on cpu"):
        resolve_precision(CPU, "fp16")


def test_bf16_on_a_gpu_without_native_bf16_is_refused_by_name(monkeypatch):
    # What torch reports for a V100 (compute capability 7.0), without one at hand.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(name="Tesla V100-SXM2-16GB", major=7, minor=0))
    cuda = torch.device("cuda")
    assert resolve_precision(cuda, "auto") == "fp32"
    with pytest.raises(ConfigError, match=r"precision: bf16 needs a GPU with native bf16 .* Tesla V100-SXM2-16GB has 7\.0"):
        resolve_precision(cuda, "bf16")


def _config_file(tmp_path, toy_setup, **changes):
    config, _ = toy_setup
    config = {**config, **changes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_check_config_stops_a_cuda_config_on_a_machine_without_a_usable_gpu(tmp_path, toy_setup):
    path = _config_file(tmp_path, toy_setup, device="cuda")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bmip.cli", "check-config", str(path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert ("device: cuda, but no CUDA GPU is usable on this machine (CUDA_VISIBLE_DEVICES is empty); "
            "run where the jobs get a GPU, or set device: auto or cpu") in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_stops_fp16_on_cpu_and_passes_bf16(tmp_path, toy_setup, caplog):
    caplog.set_level(logging.INFO)
    path = _config_file(tmp_path, toy_setup, device="cpu")
    assert main(["check-config", str(path), "--set", "precision=fp16"]) == 1
    assert "precision: fp16 runs on a GPU only" in caplog.text
    caplog.clear()
    assert main(["check-config", str(path), "--set", "precision=bf16"]) == 0
    assert "runs here compute on cpu in bf16" in caplog.text


def test_fp16_loss_scaling_leaves_the_training_unchanged_where_nothing_overflows(toy_setup, tmp_path, monkeypatch):
    """fp16 runs on a GPU only; its loss scaler is wired here with torch's CPU scaler. Scaling by
    a power of two is exact in fp32, so the scaled run must end with the very same prompts, and
    the scaler must have seen every optimiser step (its growth tracker counts them)."""
    from bmip.engine import train as train_module
    from bmip.engine.runtime import grad_scaler

    assert not grad_scaler(CPU, "fp32").is_enabled() and not grad_scaler(CPU, "bf16").is_enabled()
    config, _ = toy_setup
    plain = train_module.train(config, "base2novel", "bmip", "toy", 1, tmp_path / "plain")
    scalers = []

    def enabled(device, precision):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, enabled=True))
        return scalers[-1]

    monkeypatch.setattr(train_module, "grad_scaler", enabled)
    scaled = train_module.train(config, "base2novel", "bmip", "toy", 1, tmp_path / "scaled")
    a, b = read_checkpoint(plain / "prompts.safetensors"), read_checkpoint(scaled / "prompts.safetensors")
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    steps = sum(1 for _ in open(plain / "train_log.csv")) - 1  # epochs; at least one step each
    assert scalers[0].get_scale() == 2.0 ** 16 and scalers[0]._get_growth_tracker() >= steps > 0
