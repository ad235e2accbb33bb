"""CoCoOp: CoOp context shifted per image by a small meta-network (Zhou et al., CVPR 2022)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import PromptMethod, text_context


@dataclass
class CoCoOpConfig:
    n_ctx: int = 4
    ctx_init: str = "a photo of a"


class CoCoOp(PromptMethod):
    name = "cocoop"
    Config = CoCoOpConfig
    image_conditioned = True

    def __init__(self, backbone: Backbone, config: CoCoOpConfig):
        super().__init__(backbone, config)
        self.text_tokens = config.n_ctx
        self.ctx, self.prompt_prefix = text_context(backbone, config.n_ctx, config.ctx_init)
        dim = backbone.embed_dim
        self.meta_net = nn.Sequential(
            nn.Linear(dim, max(dim // 16, 1)), nn.ReLU(inplace=True), nn.Linear(max(dim // 16, 1), backbone.text_width)
        )

    def text_shallow(self) -> torch.Tensor:
        return self.ctx

    def conditional_context(self, image_features: torch.Tensor) -> torch.Tensor:
        """Per-image context (B, n_ctx, width) from normalised image features."""
        return self.ctx + self.meta_net(image_features.float()).unsqueeze(1)
