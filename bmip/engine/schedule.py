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


# Adam's and AdamW's epsilon where a recipe sets none: torch's and Dassl's default (HiCroPL sets 1e-3).
ADAM_EPS = 1e-8
OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(params: list[torch.nn.Parameter], recipe: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (momentum, dampening 0), Adam (L2 decay added to the gradient, as Dassl's `adam`) or
    AdamW (decoupled decay, as Dassl's `adamw`: MMRL); betas (0.9, 0.999) and the recipe's `eps`
    for both Adams. A parameter whose gradient is None is skipped, decay included, by all three."""
    name = recipe["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=recipe["lr"], momentum=recipe["momentum"], weight_decay=recipe["weight_decay"])
    if name in ("adam", "adamw"):
        adam = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return adam(params, lr=recipe["lr"], betas=(0.9, 0.999), eps=recipe.get("eps", ADAM_EPS),
                    weight_decay=recipe["weight_decay"])
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")
