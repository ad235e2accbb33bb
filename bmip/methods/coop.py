"""CoOp: learnable context vectors at the text input only (Zhou et al., IJCV 2022)."""
from __future__ import annotations

from dataclasses import dataclass

from bmip.backbone import Backbone
from bmip.methods.ivlp import IndependentPrompts


@dataclass
class CoOpConfig:
    n_ctx: int = 4
    ctx_init: str = "a photo of a"  # "" for CoOp's random N(0, 0.02) context


class CoOp(IndependentPrompts):
    name = "coop"
    Config = CoOpConfig

    def __init__(self, backbone: Backbone, config: CoOpConfig):
        super().__init__(
            backbone, config, text_tokens=config.n_ctx, text_depth=1, vision_tokens=0, vision_depth=0,
            ctx_init=config.ctx_init,
        )
