"""Measure, per method, the training-step time, the evaluation throughput and (on a GPU) the peak
GPU memory (not a test).

One step = forward (text features for all classes + images), backward, optimiser update, on
random images and labels, exactly as in training; evaluation = logits for a batch with the
text features computed once beforehand, as `bmip evaluate` does. For prompt methods the same
evaluation is timed again with the mechanism record's hooks attached (`bmip.engine.mechanism`),
without and with object masks (the foreground share and its zero-shot reference pass): the
record's overhead on the evaluation pass (the three timed in turn, medians compared).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from tqdm import tqdm

from bmip.backbone import load_backbone
from bmip.config import load_config
from bmip.recipes import recipe
from bmip.engine import mechanism
from bmip.engine.provenance import hardware
from bmip.engine.runtime import autocast, resolve_device, resolve_precision
from bmip.methods import MethodConfigError, build_model, method_names


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


def _build(backbone: Any, name: str, classnames: list[str], options: dict[str, Any], source: str):
    try:
        return build_model(backbone, name, classnames, options=options)
    except MethodConfigError as err:
        raise MethodConfigError(f"{err}; the recipe is {source}'s: for a model it does not fit, give a "
                                f"config whose recipes do (--config, e.g. config/config.yaml for mini-vit)") from None


def benchmark(
    model: str = "ViT-B-16",
    pretrained: str = "none",
    methods: list[str] | None = None,
    n_classes: int = 50,
    batch_size: int | None = 4,
    eval_batch_size: int = 32,
    steps: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    precision: str = "auto",
    progress: Callable[[dict[str, Any]], None] | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Time every method on one backbone; returns a JSON-ready record with the machine.

    Each method is built with its base-to-novel recipe's options: bmip/recipes.yaml's (the
    paper's), or with `config` (a config file) that config's, e.g. the default config's depths
    for its 4-block miniworld model. `batch_size=None` trains each method at its recipe's batch
    size, e.g. 32 for CoOp, 1 for CoCoOp, 4 for the deep-prompt methods in the paper's recipes. `precision` is a
    config's (auto: bf16 on a GPU that has it, fp32 on CPU). `progress` gets the record so far
    after every method (the command line writes it, so that an interrupted run keeps its figures).
    """
    recipes = load_config(config) if config else {}
    dev = resolve_device(device)
    precision = resolve_precision(dev, precision)
    backbone = load_backbone(model, pretrained, device=dev)
    size = backbone.image_size
    classnames = [f"class number {i}" for i in range(n_classes)]
    gen = torch.Generator().manual_seed(0)
    eval_images = torch.randn(eval_batch_size, 3, size, size, generator=gen).to(dev)
    # The mechanism record keeps its sums per label space; a base-trained model's one pass records
    # three (base: the first half of the classes, novel: the rest, joint: all), as evaluation does.
    eval_labels, classes = torch.arange(eval_batch_size) % n_classes, torch.arange(n_classes)
    spaces = mechanism.LabelSpaces(
        ("base", "novel", "joint"),
        torch.stack([eval_labels < n_classes // 2, eval_labels >= n_classes // 2, eval_labels >= 0], dim=1),
        torch.stack([classes < n_classes // 2, classes >= n_classes // 2, classes >= 0], dim=1))
    settings = {
        "model": model, "pretrained": pretrained, "n_classes": n_classes,
        "batch_size": batch_size if batch_size else "recipe", "eval_batch_size": eval_batch_size,
        "steps": steps, "warmup": warmup, "precision": precision,
        "recipes": config or "bmip/recipes.yaml",
    }
    results: dict[str, Any] = {}
    for name in tqdm(methods or method_names(), desc="benchmark", unit="method"):
        rec = recipe(recipes, "base2novel", name)
        batch = batch_size or rec["batch_size"]
        images = torch.randn(batch, 3, size, size, generator=gen).to(dev)
        labels = torch.randint(0, n_classes, (batch,), generator=gen).to(dev)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        torch.manual_seed(0)
        net = _build(backbone, name, classnames, rec["options"], settings["recipes"])
        params = net.learnable_parameters()
        optimiser = torch.optim.SGD(params, lr=1e-3, momentum=0.9) if params else None

        views = [images] * (len(net.train_transforms(size)) - 1)  # CoPrompt's second view

        def train_step() -> None:
            with autocast(dev, precision):
                loss, _ = net.loss(images, labels, views)
            if optimiser is not None:
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()

        def evaluate(foreground: torch.Tensor | None = None, recorded: bool = False) -> None:
            with torch.no_grad(), autocast(dev, precision):
                if not recorded:
                    net(eval_images, net.text_features())
                    return
                with mechanism.recording(net, foreground, spaces=spaces):
                    net(eval_images, net.text_features())

        net.train()
        step = _timed(train_step, dev, steps, warmup)
        net.eval()
        ev = _timed(evaluate, dev, max(steps // 2, 1), warmup)
        results[name] = {
            "learnable_parameters": sum(p.numel() for p in net.method.parameters() if p.requires_grad),
            "batch_size": batch,
            "train_step_s": statistics.median(step),
            "train_step_s_all": step,
            "train_images_per_s": batch / statistics.median(step),
            "eval_images_per_s": eval_batch_size / statistics.median(ev),
            "eval_batch_s_all": ev,
        }
        if mechanism.has_mechanism(name):
            n_patches = (size // net.clip.visual.conv1.kernel_size[0]) ** 2
            masks = torch.rand(eval_batch_size, n_patches, generator=gen).to(dev)
            # Interleaved, so that a slow spell of a shared machine weighs on all three alike.
            calls = {"plain": evaluate, "record": lambda: evaluate(recorded=True),
                     "record_with_masks": lambda: evaluate(masks, recorded=True)}
            runs = [_timed(call, dev, 1, warmup if rep == 0 else 0)
                    for rep in range(max(steps // 2, 1)) for call in calls.values()]
            timed = {key: statistics.median(t[0] for t in runs[i::len(calls)]) for i, key in enumerate(calls)}
            for key in ("record", "record_with_masks"):
                results[name][f"eval_{key}_overhead"] = timed[key] / timed["plain"] - 1
        if dev.type == "cuda":
            results[name]["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        net = optimiser = None  # freed before the next method is built (its peak GPU memory)
        if progress is not None:
            progress(_record(results, settings, dev, precision))
    return {**_record(results, settings, dev, precision), "variant_parameters": variant_parameters(backbone, recipes)}


def variant_parameters(backbone: Any, config: dict[str, Any] | None = None) -> dict[str, int]:
    """Learnable parameters of each BMIP mixing and direction variant (docs/methods.md), built at
    BMIP's recipe options (the config's, if given) on this backbone: what a variant adds or
    removes, without timing it."""
    from bmip.methods.bmip import AGGREGATIONS, DIRECTIONS

    options = recipe(config or {}, "base2novel", "bmip")["options"]
    depth = min(options.get("depth", 9), backbone.text_layers, backbone.vision_layers)
    variants = [("aggregation", a) for a in AGGREGATIONS] + [("directions", d) for d in DIRECTIONS[1:]]
    counts = {}
    for key, value in variants:
        net = build_model(backbone, f"bmip@{value}", ["object"], options={**options, "depth": depth, key: value})
        counts[f"bmip@{value}"] = sum(p.numel() for p in net.method.parameters() if p.requires_grad)
    return counts


def _record(results: dict[str, Any], settings: dict[str, Any], dev: torch.device, precision: str) -> dict[str, Any]:
    ratios = {}
    if "bmip" in results and "maple" in results:
        ratios["bmip_over_maple_train_step"] = results["bmip"]["train_step_s"] / results["maple"]["train_step_s"]
    return {"settings": settings, "machine": hardware(dev, precision), "methods": dict(results), "ratios": ratios}
