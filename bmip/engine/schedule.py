"""Optimisers and the per-epoch learning rate of the official (Dassl) stack."""
from __future__ import annotations

import math
from typing import Any

import torch


def epoch_lr(epoch: int, recipe: dict[str, Any]) -> float:
    """Learning rate of 0-based `epoch`: constant warm-up, then cosine over `epochs` (never 0).

    Dassl's ConstantWarmupScheduler around CosineAnnealingLR(T_max=epochs), stepped per epoch,
    with the cosine restarted after warm-up: lr = base·½·(1 + cos(π·(e − W)/epochs)).
    """
    warmup = recipe["warmup_epochs"]
    if epoch < warmup:
        return recipe["warmup_lr"]
    return recipe["lr"] * 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / recipe["epochs"]))


def make_optimizer(params: list[torch.nn.Parameter], recipe: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (momentum, dampening 0) or Adam (L2 decay added to the gradient, not AdamW)."""
    if recipe["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=recipe["lr"], momentum=recipe["momentum"], weight_decay=recipe["weight_decay"])
    if recipe["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=recipe["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=recipe["weight_decay"])
    raise ValueError(f"unknown optimizer {recipe['optimizer']!r}; use sgd or adam")
