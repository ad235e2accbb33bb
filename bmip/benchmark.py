"""Measure, per method, the training-step time and the evaluation throughput (not a test).

One step = forward (text features for all classes + images), backward, optimiser update, on
random images and labels, exactly as in training; evaluation = logits for a batch with the
text features computed once beforehand, as `bmip evaluate` does.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from tqdm import tqdm

from bmip.backbone import load_backbone
from bmip.engine.provenance import hardware
from bmip.methods import build_model, method_names


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def benchmark(
    model: str = "ViT-B-16",
    pretrained: str = "none",
    methods: list[str] | None = None,
    n_classes: int = 50,
    batch_size: int = 4,
    eval_batch_size: int = 32,
    steps: int = 5,
    warmup: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """Time every method on one backbone; returns a JSON-ready record with the machine."""
    dev = torch.device(device)
    backbone = load_backbone(model, pretrained, device=dev)
    size = backbone.image_size
    classnames = [f"class number {i}" for i in range(n_classes)]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, size, size, generator=gen).to(dev)
    labels = torch.randint(0, n_classes, (batch_size,), generator=gen).to(dev)
    eval_images = torch.randn(eval_batch_size, 3, size, size, generator=gen).to(dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    results: dict[str, Any] = {}
    for name in tqdm(methods or method_names(), desc="benchmark", unit="method"):
        torch.manual_seed(0)
        net = build_model(backbone, name, classnames)
        params = net.learnable_parameters()
        optimiser = torch.optim.SGD(params, lr=1e-3, momentum=0.9) if params else None

        views = [images] * (len(net.train_transforms(size)) - 1)  # CoPrompt's second view

        def train_step() -> None:
            with autocast:
                loss, _ = net.loss(images, labels, views)
            if optimiser is not None:
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()

        def evaluate() -> None:
            with torch.no_grad(), autocast:
                net(eval_images, net.text_features())

        net.train()
        step = _timed(train_step, dev, steps, warmup)
        net.eval()
        ev = _timed(evaluate, dev, max(steps // 2, 1), warmup)
        results[name] = {
            "learnable_parameters": sum(p.numel() for p in params),
            "train_step_s": statistics.median(step),
            "train_step_s_all": step,
            "eval_images_per_s": eval_batch_size / statistics.median(ev),
            "eval_batch_s_all": ev,
        }
        del net, optimiser
    ratios = {}
    if "bmip" in results and "maple" in results:
        ratios["bmip_over_maple_train_step"] = results["bmip"]["train_step_s"] / results["maple"]["train_step_s"]
    return {
        "settings": {
            "model": model, "pretrained": pretrained, "n_classes": n_classes, "batch_size": batch_size,
            "eval_batch_size": eval_batch_size, "steps": steps, "warmup": warmup,
            "autocast": "bf16" if dev.type == "cuda" else "off (fp32)",
        },
        "machine": hardware(dev),
        "methods": results,
        "ratios": ratios,
    }
