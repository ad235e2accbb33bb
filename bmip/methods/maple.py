"""MaPLe: deep text prompts whose per-layer linear projections are the vision prompts
(Khattak et al., CVPR 2023). Both towers are prompted in blocks 0..depth-1.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import PromptMethod, Slots, check_depth, normal_prompts, text_context


@dataclass
class MaPLeConfig:
    n_ctx: int = 2
    depth: int = 9
    ctx_init: str = "a photo of a"


class MaPLe(PromptMethod):
    name = "maple"
    Config = MaPLeConfig

    def __init__(self, backbone: Backbone, config: MaPLeConfig):
        super().__init__(backbone, config)
        check_depth(self.name, config.depth, min(backbone.text_layers, backbone.vision_layers))
        n, self.depth = config.n_ctx, config.depth
        self.text_tokens = self.vision_tokens = n
        self.ctx, self.prompt_prefix = text_context(backbone, n, config.ctx_init)
        self.proj = nn.Linear(backbone.text_width, backbone.vision_width)
        if self.depth > 1:
            self.text_prompts = normal_prompts(self.depth - 1, n, backbone.text_width)
            # The official code deep-copies one layer, so all projections start identical.
            layer = nn.Linear(backbone.text_width, backbone.vision_width)
            self.deep_proj = nn.ModuleList(copy.deepcopy(layer) for _ in range(self.depth - 1))

    def text_shallow(self) -> torch.Tensor:
        return self.ctx

    def vision_shallow(self) -> torch.Tensor:
        return self.proj(self.ctx)

    def text_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        return self.text_prompts[k - 1].unsqueeze(0) if k < self.depth else None

    def vision_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        return self.deep_proj[k - 1](self.text_prompts[k - 1]).unsqueeze(0) if k < self.depth else None
