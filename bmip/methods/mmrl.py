"""MMRL: multi-modal representation learning (Guo et al., CVPR 2025), as released in
yunncheng/MMRL (`trainers/mmrl.py`, `clip/model_mmrl.py`; docs/methods.md has the line references).

One set of N representation tokens R (N x rep_dim, N(0, 0.02)) is projected per block into both
towers, from block `rep_layers[0]` on (released: layers 6..12, counted from 1, so 0-based blocks
5..11): r2t_i(R) and r2v_i(R), one Linear per listed layer, deep copies of one Linear at init.
Before the first of those blocks the projected tokens are inserted after SOS/CLS, without
positional embedding (text: the causal mask at the new width, EOT moves by N); before each later
one they replace positions 1..N. The text prompt is the dataset's template: no learnable context.

    f_cls = ln_post(x_0) @ proj          f_rep = mean_j ln_post(x_j) @ proj_rep   (j = 1..N)
    logits_b = 100 · n(f_b) · n(t)ᵀ      fusion = α · logits_cls + (1 − α) · logits_rep
    L = α · CE(logits_cls) + (1 − α) · CE(logits_rep)
        + λ · (1 − mean cos(n(f_cls), z_img)) + λ · (1 − mean cos(n(t), z_txt))

with `proj_rep` random (width^-0.5 · randn, as released: it is not in CLIP's weights), z the frozen
zero-shot CLIP features of the same images and class prompts, and the release's literal logit scale
100. Scoring: a class the model was trained on gets the fused logits, any other class the class-token
branch (`combine_logits`): per column, so one score matrix serves every label space. That is the
release's base (fusion) / novel (cls) / cross-dataset and domain-generalisation (fusion on the
source, cls on every target) choice: the evaluation clears the trained classes on a transfer target
(bmip.engine.evaluate), so a target class named like a source class is scored as the release scores it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import MethodConfigError, PromptMethod, Slots, insert_tokens, normal_prompts


@dataclass
class MMRLConfig:
    n_rep_tokens: int = 5  # N_REP_TOKENS
    rep_layers: list[int] = field(default_factory=lambda: list(range(6, 13)))  # REP_LAYERS, counted from 1
    rep_dim: int = 512  # REP_DIM
    alpha: float = 0.7  # ALPHA (SCALE in older configs)
    reg_weight: float = 1.0  # REG_WEIGHT, λ
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])  # INPUT.RRCROP_SCALE


def check_config(config: MMRLConfig, layers: int) -> None:
    """Refuse options the released model cannot have, naming the option."""
    problems = []
    if config.n_rep_tokens < 1 or config.rep_dim < 1:
        problems.append("n_rep_tokens and rep_dim must be >= 1")
    rep = list(config.rep_layers)
    if not rep or rep != sorted(set(rep)) or rep[0] < 1 or rep[-1] > layers:
        problems.append(f"rep_layers must be increasing block numbers in 1..{layers} (counted from 1, as "
                        f"released: [6, ..., 12]), got {rep}")
    if not 0 <= config.alpha <= 1 or config.reg_weight < 0:
        problems.append("alpha must lie in [0, 1] and reg_weight be >= 0")
    scale = list(config.crop_scale)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        problems.append(f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {scale}")
    if problems:
        raise MethodConfigError("method 'mmrl': " + "; ".join(problems))


class MMRL(PromptMethod):
    name = "mmrl"
    Config = MMRLConfig
    fixed_logit_scale = 100.0  # `100. * image_features @ text_features.t()` in the release

    def __init__(self, backbone: Backbone, config: MMRLConfig):
        super().__init__(backbone, config)
        check_config(config, min(backbone.text_layers, backbone.vision_layers))
        self.inserted_tokens = config.n_rep_tokens
        # 0-based block -> its projection; the first listed block inserts, the later ones replace
        self.projection_of = {layer - 1: i for i, layer in enumerate(config.rep_layers)}
        self.first_block = config.rep_layers[0] - 1
        self.alpha, self.reg_weight = config.alpha, config.reg_weight
        width = backbone.vision_width
        self.proj_rep = nn.Parameter(width**-0.5 * torch.randn(width, backbone.embed_dim))
        self.rep_tokens = normal_prompts(config.n_rep_tokens, config.rep_dim)
        to_vision = nn.Linear(config.rep_dim, backbone.vision_width)
        to_text = nn.Linear(config.rep_dim, backbone.text_width)
        self.r2v = nn.ModuleList(copy.deepcopy(to_vision) for _ in config.rep_layers)
        self.r2t = nn.ModuleList(copy.deepcopy(to_text) for _ in config.rep_layers)
        self._zero_shot_text: torch.Tensor | None = None

    def prompt_template(self, dataset_template: str) -> str:
        """The dataset's own template (the release's CUSTOM_TEMPLATES are the project's)."""
        return dataset_template

    # ---------------------------------------------------------------- the towers
    def _tokens(self, k: int, projections: nn.ModuleList) -> torch.Tensor | None:
        index = self.projection_of.get(k)
        return None if index is None else projections[index](self.rep_tokens).unsqueeze(0)

    def text_insert(self, k: int, block: nn.Module, x: torch.Tensor,
                    slots: Slots) -> tuple[torch.Tensor, Slots] | None:
        """Before the first listed block: R projected, inserted after SOS."""
        return insert_tokens(x, slots, 1, self._tokens(k, self.r2t)) if k == self.first_block else None

    def vision_insert(self, k: int, block: nn.Module, x: torch.Tensor,
                      slots: Slots) -> tuple[torch.Tensor, Slots] | None:
        """Before the first listed block: R projected, inserted after CLS."""
        return insert_tokens(x, slots, 1, self._tokens(k, self.r2v)) if k == self.first_block else None

    def text_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        return self._tokens(k, self.r2t)

    def vision_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        return self._tokens(k, self.r2v)

    def extra_image_features(self, visual: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor:
        """f_rep (B, 1, E): the mean over the representation tokens of ln_post, @ proj_rep."""
        rep = visual.ln_post(x[:, slots.start : slots.start + slots.length]).mean(dim=1)
        return (rep @ self.proj_rep.to(rep.dtype)).unsqueeze(1)

    # ---------------------------------------------------------------- scoring and loss
    def combine_logits(self, logits: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
        """Trained classes: α · cls + (1 − α) · rep (the release's base classes); any other class:
        cls (its novel classes and cross-dataset targets, `MMRL.test`)."""
        cls, rep = logits[:, 0], logits[:, 1]
        return torch.where(trained, self.alpha * cls + (1 - self.alpha) * rep, cls)

    def classification_loss(self, model: nn.Module, image_features: torch.Tensor, text_features: torch.Tensor,
                            logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """α · CE(logits_cls) + (1 − α) · CE(logits_rep)."""
        branches = model.logit_scale() * image_features @ text_features.to(image_features.dtype).t()
        cls, rep = branches.float().unbind(dim=1)
        return self.alpha * F.cross_entropy(cls, labels) + (1 - self.alpha) * F.cross_entropy(rep, labels)

    def set_classnames(self, model: nn.Module) -> None:
        self._zero_shot_text = None

    @torch.no_grad()
    def zero_shot_text(self, model: nn.Module) -> torch.Tensor:
        """z_txt: frozen CLIP's normalised features of the class prompts, computed in float32 once per
        class set (the release computes them once, at build, in float32)."""
        if self._zero_shot_text is None:
            clip, tokens = model.clip, model.tokens
            # padded back to the context length with zeros, as the tokenizer pads
            full = F.pad(tokens, (0, clip.positional_embedding.shape[0] - tokens.shape[1]))
            with torch.autocast(tokens.device.type, enabled=False):
                self._zero_shot_text = F.normalize(clip.encode_text(full).float(), dim=-1)
        return self._zero_shot_text

    def loss_terms(self, model: nn.Module, images: torch.Tensor, image_features: torch.Tensor,
                   text_features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """λ · (1 − mean cos(n(f_cls), z_img)) + λ · (1 − mean cos(n(t), z_txt)); f_rep is not regularised."""
        with torch.no_grad():
            zero_shot_image = model.clip.encode_image(images, normalize=True).float()
        image_term = 1 - F.cosine_similarity(image_features[:, 0].float(), zero_shot_image, dim=1).mean()
        text_term = 1 - F.cosine_similarity(text_features.float(), self.zero_shot_text(model), dim=1).mean()
        return self.reg_weight * (image_term + text_term)

    def train_transform(self, size: int) -> Callable:
        """Dassl's random_resized_crop + random_flip + normalize at the release's RRCROP_SCALE."""
        from torchvision import transforms as T

        from bmip.data.images import CLIP_MEAN, CLIP_STD

        return T.Compose([
            T.RandomResizedCrop(size, scale=tuple(self.config.crop_scale), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ])
