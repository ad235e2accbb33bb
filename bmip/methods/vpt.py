"""Deep vision prompting (VPT-deep on CLIP): prompts in every vision block, fixed hand-written text."""
from __future__ import annotations

from dataclasses import dataclass

from bmip.backbone import Backbone
from bmip.methods.ivlp import IndependentPrompts


@dataclass
class VPTConfig:
    n_ctx: int = 8
    depth: int = 12


class VPT(IndependentPrompts):
    name = "vpt"
    Config = VPTConfig

    def __init__(self, backbone: Backbone, config: VPTConfig):
        super().__init__(
            backbone, config, text_tokens=0, text_depth=0, vision_tokens=config.n_ctx, vision_depth=config.depth
        )
