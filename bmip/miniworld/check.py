"""Does the world show the phenomena it is built for? Zero-shot and a minimal CoOp, self-contained.

This is a calibration tool for the world's design (not the project's CoOp, which lives in
``bmip.methods``): it reads the generated files directly, caches frozen image features, and trains
4 context vectors at text positions 1..4 (initialised from "a photo of a") on the base classes.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from bmip.data.decode import read_rgb

from bmip.miniworld.datasets import SPLIT_FILE, WORLD_FILE
from bmip.miniworld.pretrain import load_pretrained, normalise

log = logging.getLogger(__name__)

TEMPLATE = "a photo of a {}."
N_CTX = 4


def read_split(root: Path, dataset: str) -> dict[str, list]:
    return json.loads((Path(root) / dataset / SPLIT_FILE).read_text())


def classnames(split: dict[str, list]) -> list[str]:
    names: dict[int, str] = {}
    for items in split.values():
        for _, label, name in items:
            names[label] = name
    return [names[i] for i in range(len(names))]


def load_images(root: Path, dataset: str, items: list) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([np.asarray(read_rgb(Path(root) / dataset / "images" / rel, f"miniworld {dataset}")) for rel, _, _ in items])
    return images, np.array([label for _, label, _ in items])


@torch.no_grad()
def encode_images(model: Any, images: np.ndarray, batch: int = 512) -> torch.Tensor:
    return torch.cat(
        [F.normalize(model.encode_image(normalise(images[i : i + batch])), dim=-1) for i in range(0, len(images), batch)]
    )


@torch.no_grad()
def encode_classnames(model: Any, tokenizer: Any, names: list[str]) -> torch.Tensor:
    return F.normalize(model.encode_text(tokenizer([TEMPLATE.format(n) for n in names])), dim=-1)


def base_novel(n: int) -> tuple[list[int], list[int]]:
    """Base = first ceil(n/2) labels, novel = the rest (CoOp's subsample_classes)."""
    m = math.ceil(n / 2)
    return list(range(m)), list(range(m, n))


def accuracy_within(features: torch.Tensor, labels: np.ndarray, text: torch.Tensor, keep: list[int]) -> float:
    """Accuracy on images of classes ``keep``, classifying among ``keep`` only (own label space)."""
    rows = np.isin(labels, keep)
    logits = features[torch.from_numpy(rows)] @ text[keep].T
    predicted = np.asarray(keep)[logits.argmax(dim=1).numpy()]
    return float((predicted == labels[rows]).mean())


class CoOpText(torch.nn.Module):
    """Class text features with ``N_CTX`` learnable vectors replacing the tokens of "a photo of a"."""

    def __init__(self, model: Any, tokenizer: Any, names: list[str]) -> None:
        super().__init__()
        self.model = model
        tokens = tokenizer([TEMPLATE.format(n) for n in names])
        self.length = int(tokens.argmax(dim=-1).max()) + 1
        self.tokens = tokens[:, : self.length]
        with torch.no_grad():
            embedded = model.token_embedding(self.tokens)
        self.register_buffer("embedded", embedded)
        self.ctx = torch.nn.Parameter(embedded[0, 1 : 1 + N_CTX].clone())

    def forward(self) -> torch.Tensor:
        m = self.model
        n = self.embedded.shape[0]
        x = torch.cat([self.embedded[:, :1], self.ctx.expand(n, -1, -1), self.embedded[:, 1 + N_CTX :]], dim=1)
        x = x + m.positional_embedding[: self.length]
        x = m.transformer(x, attn_mask=m.attn_mask[: self.length, : self.length])
        x = m.ln_final(x)[torch.arange(n), self.tokens.argmax(dim=-1)]
        return F.normalize(x @ m.text_projection, dim=-1)


@dataclass(frozen=True)
class CoOpSettings:
    shots: int = 16
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.002
    seed: int = 1


def coop_base_accuracy(
    model: Any, tokenizer: Any, root: Path, dataset: str, settings: CoOpSettings = CoOpSettings()
) -> dict[str, float]:
    """Train CoOp on base classes (``shots`` per class, SGD) and report base/novel test accuracy."""
    split = read_split(root, dataset)
    names = classnames(split)
    base, novel = base_novel(len(names))
    rng = np.random.default_rng(settings.seed)
    train = [item for item in split["train"] if item[1] in base]
    by_class: dict[int, list] = {}
    for item in train:
        by_class.setdefault(item[1], []).append(item)
    shots = [it for label in base for it in (by_class[label][i] for i in rng.permutation(len(by_class[label]))[: settings.shots])]
    train_features, train_labels = encode_images(model, load_images(root, dataset, shots)[0]), np.array([s[1] for s in shots])
    test_images, test_labels = load_images(root, dataset, split["test"])
    test_features = encode_images(model, test_images)
    torch.manual_seed(settings.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    prompts = CoOpText(model, tokenizer, [names[i] for i in base])
    optimizer = torch.optim.SGD([prompts.ctx], lr=settings.lr, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(shots) / settings.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs * steps_per_epoch)
    scale = model.logit_scale.exp().detach()
    targets = torch.from_numpy(train_labels)
    for _ in range(settings.epochs):
        order = torch.randperm(len(shots))
        for lo in range(0, len(shots), settings.batch_size):
            batch = order[lo : lo + settings.batch_size]
            loss = F.cross_entropy(scale * train_features[batch] @ prompts().T, targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    with torch.no_grad():
        learned = prompts()
    zero = encode_classnames(model, tokenizer, names)
    return {
        "zero_shot_base": accuracy_within(test_features, test_labels, zero, base),
        "coop_base": accuracy_within(test_features, test_labels, torch.cat([learned, zero[novel]]), base),
    }


def zero_shot_report(checkpoint: Path, root: Path, datasets: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy ("a photo of a {}.") per dataset: all classes, base and novel halves."""
    model, tokenizer = load_pretrained(checkpoint)
    world = json.loads((Path(root) / WORLD_FILE).read_text())["spec"]["datasets"]
    report = {}
    for name in datasets or list(world):
        split = read_split(root, name)
        names = classnames(split)
        images, labels = load_images(root, name, split["test"])
        features = encode_images(model, images)
        text = encode_classnames(model, tokenizer, names)
        base, novel = base_novel(len(names))
        report[name] = {
            "role": world[name]["role"],
            "classes": len(names),
            "all": accuracy_within(features, labels, text, list(range(len(names)))),
            "base": accuracy_within(features, labels, text, base),
            "novel": accuracy_within(features, labels, text, novel),
            "chance_novel": 1.0 / len(novel),
        }
        log.info("zero-shot %s: %s", name, report[name])
    return report
