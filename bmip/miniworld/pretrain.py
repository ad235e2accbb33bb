"""Contrastive pretraining of a tiny open_clip ViT on captioned images of the miniworld.

Images are rendered on the fly (every step is a fresh batch, drawn from a random stream keyed by
(seed, step)), so there is no dataset to store and no epoch structure. The style mix makes the main
photo style common and the downstream styles rare, which leaves room for prompt learning to adapt.

Two shortcuts keep a step cheap on a CPU without changing the model: the text tower runs on the
captions cut to their longest tokenised length (the mask is causal and pooling is at EOT, so the
features are identical), and only the ~100 token embeddings captions use are trained (the other rows
of the 49408-row table keep their initial values and never receive a gradient anyway).
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from tqdm import tqdm

import bmip
from bmip.io import atomic_write_bytes, file_sha256, write_json
from bmip.miniworld.render import IMAGE_SIZE, render
from bmip.miniworld.world import (
    COLOURS,
    GENERATOR_VERSION,
    PATTERNS,
    SHAPES,
    Concept,
    caption,
    caption_vocabulary,
    generator_fingerprint,
    size_word,
    where_words,
)

log = logging.getLogger(__name__)

MODEL_NAME = "mini-vit"
CHECKPOINT_NAME = "mini-vit.pt"

# Share of pretraining images per style. Downstream styles are rare on purpose (see module docstring).
STYLE_MIX: dict[str, float] = {
    "photo": 0.44,
    "clutter": 0.08,
    "indoor": 0.05,
    "sketch": 0.06,
    "cartoon": 0.06,
    "night": 0.06,
    "pixel": 0.06,
    "aerial": 0.06,
    "closeup": 0.06,
    "hard": 0.03,
    "painting": 0.04,
}


# How often a caption of a non-photo image names its style; "a photo of" then mostly means photos.
STYLE_PROB = 0.9


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of the pretraining run (all recorded in the sidecar JSON)."""

    seed: int = 0
    steps: int = 300
    batch_size: int = 256
    lr: float = 2e-3
    warmup_steps: int = 40
    weight_decay: float = 0.05
    model: str = MODEL_NAME
    style_mix: dict[str, float] = field(default_factory=lambda: dict(STYLE_MIX))


def register_model_configs() -> None:
    """Make open_clip find ``bmip/model_configs/*.json`` (e.g. "mini-vit") by name."""
    open_clip.add_model_config(Path(bmip.__file__).parent / "model_configs")


def default_checkpoint(root: Path) -> Path:
    """Where a world root keeps its pretrained model: ``<root>/pretrained/mini-vit.pt``."""
    return Path(root) / "pretrained" / CHECKPOINT_NAME


def sidecar_path(checkpoint: Path) -> Path:
    return Path(checkpoint).with_suffix(".json")


def normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) with CLIP's mean/std, as open_clip's transforms do."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def sample_batch(
    seed: int, step: int, batch_size: int, style_mix: dict[str, float]
) -> tuple[np.ndarray, list[str]]:
    """Images and captions of one pretraining step; a pure function of (seed, step).

    Concepts in a batch are distinct (while the batch is no larger than the number of concepts),
    so no exact duplicate acts as a false negative in the contrastive loss.
    """
    rng = np.random.default_rng([seed, step, 7])
    n_concepts = len(COLOURS) * len(PATTERNS) * len(SHAPES)
    ids = np.concatenate([rng.permutation(n_concepts) for _ in range(math.ceil(batch_size / n_concepts))])[:batch_size]
    concepts = np.stack(np.unravel_index(ids, (len(COLOURS), len(PATTERNS), len(SHAPES))), axis=1)
    names = list(style_mix)
    weights = np.asarray([style_mix[k] for k in names], dtype=float)
    styles = rng.choice(len(names), size=batch_size, p=weights / weights.sum())
    images = np.zeros((batch_size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions = [""] * batch_size
    for index, style in enumerate(names):
        pick = np.flatnonzero(styles == index)
        if len(pick) == 0:
            continue
        rendered, layout = render(style, concepts[pick], rng)
        images[pick] = rendered
        for j, i in enumerate(pick):
            concept = Concept(*(int(v) for v in concepts[i]))
            where = None if style == "aerial" else where_words(float(layout.cx[j]), float(layout.cy[j]))
            captions[i] = caption(
                concept, style, rng, where=where, size=size_word(float(layout.scale[j])), style_prob=STYLE_PROB
            )
    return images, captions


class WordCachedTokenizer:
    """open_clip's SimpleTokenizer, memoised per whitespace-separated word.

    CLIP's BPE never merges across whitespace, so encoding word by word gives the same ids as
    encoding the whole caption; the cache makes a batch of captions ~50x cheaper to tokenise.
    Rows are padded with 0 to the batch's longest caption, not to 77 (see ``CompactText``).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[str, list[int]] = {}

    def _word(self, word: str) -> list[int]:
        ids = self.cache.get(word)
        if ids is None:
            ids = self.cache[word] = self.tokenizer.encode(word)
        return ids

    def __call__(self, texts: list[str]) -> torch.Tensor:
        t = self.tokenizer
        rows = [[t.sot_token_id, *(i for w in text.split() for i in self._word(w)), t.eot_token_id] for text in texts]
        out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out


class CompactText(torch.nn.Module):
    """The text tower run on truncated sequences with only the caption vocabulary's embeddings trained."""

    def __init__(self, model: open_clip.CLIP, tokenizer: Any) -> None:
        super().__init__()
        ids = {0}
        for word in caption_vocabulary():
            ids.update(int(t) for t in tokenizer([word])[0].tolist())
        self.ids = torch.tensor(sorted(ids))
        lookup = torch.full((model.token_embedding.num_embeddings,), -1, dtype=torch.long)
        lookup[self.ids] = torch.arange(len(self.ids))
        self.register_buffer("lookup", lookup, persistent=False)
        self.rows = torch.nn.Parameter(model.token_embedding.weight.detach()[self.ids].clone())
        model.token_embedding.weight.requires_grad_(False)
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = int(tokens.argmax(dim=-1).max()) + 1
        tokens = tokens[:, :length]
        compact = self.lookup[tokens]
        if bool((compact < 0).any()):
            raise ValueError("a caption uses a token outside caption_vocabulary()")
        m = self.model
        x = F.embedding(compact, self.rows) + m.positional_embedding[:length]
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
        return x @ m.text_projection

    def write_back(self) -> None:
        """Copy the trained rows into the model's full token-embedding table."""
        with torch.no_grad():
            self.model.token_embedding.weight[self.ids] = self.rows


def _param_groups(model: torch.nn.Module, extra: list[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    decay, no_decay = [], list(extra)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and "embedding" not in name and name not in ("class_embedding",)
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def pretrain(out: Path, cfg: PretrainConfig = PretrainConfig(), threads: int | None = None) -> dict[str, Any]:
    """Train the tiny CLIP from scratch and save an open_clip-loadable checkpoint plus a JSON sidecar.

    ``open_clip.create_model("mini-vit", pretrained=str(out))`` loads the result. Same seed, same
    thread count -> bitwise identical weights on CPU. Returns the sidecar record.
    """
    out = Path(out)
    if threads is not None:
        torch.set_num_threads(threads)
    register_model_configs()
    torch.manual_seed(cfg.seed)
    model = open_clip.create_model(cfg.model)
    tokenizer = open_clip.get_tokenizer(cfg.model)
    text = CompactText(model, tokenizer)
    tokenize = WordCachedTokenizer(tokenizer)
    model.train()
    optimizer = torch.optim.AdamW(_param_groups(model, [text.rows], cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98))
    started = time.perf_counter()
    losses: list[float] = []
    labels = torch.arange(cfg.batch_size)
    with tqdm(range(cfg.steps), desc="miniworld pretrain", unit="step", disable=None) as bar:
        for step in bar:
            images, captions = sample_batch(cfg.seed, step, cfg.batch_size, cfg.style_mix)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, cfg)
            image_features = F.normalize(model.encode_image(normalise(images)), dim=-1)
            text_features = F.normalize(text(tokenize(captions)), dim=-1)
            logits = model.logit_scale.exp() * image_features @ text_features.T
            loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            if step % 10 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if step % 50 == 0 or step == cfg.steps - 1:
                log.info("step %d/%d loss %.4f", step, cfg.steps, losses[-1])
    text.write_back()
    seconds = time.perf_counter() - started
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(out, buffer.getvalue())
    record = {
        "model": cfg.model,
        "checkpoint": out.name,
        "sha256": file_sha256(out),
        "config": asdict(cfg),
        "final_loss": float(np.mean(losses[-10:])) if losses else None,
        "loss_curve": [round(v, 4) for v in losses[:: max(1, len(losses) // 50)]],
        "wall_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "open_clip_version": open_clip.__version__,
        "numpy_version": np.__version__,
        "generator_version": GENERATOR_VERSION,
        "generator_sha256": generator_fingerprint(),
        "cpu_count": os.cpu_count(),
    }
    write_json(sidecar_path(out), record, sort_keys=False)
    log.info("saved %s (loss %.4f, %.0f s)", out, record["final_loss"], seconds)
    return record


def load_pretrained(checkpoint: Path) -> tuple[open_clip.CLIP, Any]:
    """The pretrained model (eval mode) and its tokenizer, through open_clip's own loading path."""
    register_model_configs()
    model = open_clip.create_model(MODEL_NAME, pretrained=str(checkpoint))
    model.eval()
    return model, open_clip.get_tokenizer(MODEL_NAME)


def read_sidecar(checkpoint: Path) -> dict[str, Any]:
    return json.loads(sidecar_path(checkpoint).read_text())
