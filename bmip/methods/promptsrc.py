"""PromptSRC-style self-regulation on top of BMIP, MaPLe or IVLP (Khattak et al., ICCV 2023).

Loss = CE + text_weight · L1(text features, frozen template-ensemble text features)
          + image_weight · L1(image features, frozen CLIP image features)
          + kl_weight · KL(zero-shot ‖ model) summed over the batch / logits.numel().
The frozen features come from the same (frozen) backbone run without prompts, so no second copy
of the image tower is kept. Gaussian prompt averaging (GPA) over epochs is `PromptAverager`,
driven by the training loop.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import Regularizer
from bmip.prompting import PromptedCLIP, text_pass


@dataclass
class PromptSRCConfig:
    text_weight: float = 25.0
    image_weight: float = 10.0
    kl_weight: float = 1.0
    gpa_mean: float = 15.0
    gpa_std: float = 3.0


# Frozen template-ensemble targets per backbone (weakly held) and class set.
_TEMPLATE_ENSEMBLES: "weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, ...], torch.Tensor]]" = (
    weakref.WeakKeyDictionary()
)


class PromptSRC(Regularizer):
    """The regulariser: no learnable tensors, frozen targets rebuilt for every class set."""

    name = "promptsrc"
    Config = PromptSRCConfig

    def __init__(self, backbone: Backbone, config: PromptSRCConfig):
        super().__init__(backbone, config)
        self._fixed_text: torch.Tensor | None = None

    def set_classnames(self, model: PromptedCLIP) -> None:
        """A new class set: its frozen targets are computed when the loss first needs them (80
        text-encoder passes over the class names; evaluation never needs them)."""
        self._fixed_text = None

    def fixed_text(self, model: PromptedCLIP) -> torch.Tensor:
        if self._fixed_text is None:
            self._fixed_text = self._template_ensemble(model)
        return self._fixed_text

    @torch.no_grad()
    def _template_ensemble(self, model: PromptedCLIP) -> torch.Tensor:
        """Mean over CLIP's 80 ImageNet templates of frozen text features, normalised. All
        templates x classes go through the text tower in chunks, and the result is kept per
        (frozen backbone, class set): the seeds of one process share it."""
        clip, tokenizer = model.clip, model.backbone.tokenizer
        names = tuple(c.replace("_", " ") for c in model.classnames)
        cache = _TEMPLATE_ENSEMBLES.setdefault(clip, {})
        if names not in cache:
            tokens = tokenizer([template(c) for template in OPENAI_IMAGENET_TEMPLATES for c in names])
            device = clip.logit_scale.device
            chunks = tokens.split(text_pass(device))
            feats = torch.cat([clip.encode_text(chunk.to(device)).float() for chunk in chunks])
            cache[names] = F.normalize(feats.view(len(OPENAI_IMAGENET_TEMPLATES), len(names), -1).mean(0), dim=-1)
        return cache[names]

    def loss(
        self,
        model: PromptedCLIP,
        images: torch.Tensor,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logits: torch.Tensor,
        views: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        cfg = self.config
        fixed_text = self.fixed_text(model)
        with torch.no_grad():
            zs_image = model.clip.encode_image(images, normalize=True).float()
            zs_logits = model.logit_scale() * zs_image @ fixed_text.t()
        text_term = F.l1_loss(text_features.float(), fixed_text) * cfg.text_weight
        image_term = F.l1_loss(image_features.float(), zs_image) * cfg.image_weight
        kl = F.kl_div(
            F.log_softmax(logits.float(), dim=1), F.log_softmax(zs_logits, dim=1), reduction="sum", log_target=True
        ) / logits.numel()
        return text_term + image_term + cfg.kl_weight * kl


def gaussian_epoch_weights(epochs: int, mean: float, std: float) -> list[float]:
    """GPA weight of each epoch 1..epochs: a normalised Gaussian density N(mean, std)."""
    density = [math.exp(-((e - mean) ** 2) / (2 * std**2)) / (std * math.sqrt(2 * math.pi)) for e in range(1, epochs + 1)]
    total = sum(density)
    if total <= 0:
        raise ValueError(f"GPA N({mean}, {std}) puts no weight on epochs 1..{epochs}")
    return [d / total for d in density]


class PromptAverager:
    """Accumulates the Gaussian-weighted average of the learnable tensors over epochs."""

    def __init__(self, epochs: int, mean: float, std: float):
        self.weights = gaussian_epoch_weights(epochs, mean, std)
        self.sum: dict[str, torch.Tensor] = {}

    def add(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        """Add the state after `epoch` (0-based)."""
        w = self.weights[epoch]
        for key, value in state.items():
            scaled = value.detach().float() * w
            self.sum[key] = self.sum[key] + scaled if key in self.sum else scaled

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.sum)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sum = dict(state)
