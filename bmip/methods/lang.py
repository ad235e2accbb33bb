"""Deep language prompting: prompts in every text block, no vision prompts."""
from __future__ import annotations

from dataclasses import dataclass

from bmip.backbone import Backbone
from bmip.methods.ivlp import IndependentPrompts


@dataclass
class LangConfig:
    n_ctx: int = 4
    depth: int = 12
    ctx_init: str = "a photo of a"


class Lang(IndependentPrompts):
    name = "lang"
    Config = LangConfig

    def __init__(self, backbone: Backbone, config: LangConfig):
        super().__init__(
            backbone, config, text_tokens=config.n_ctx, text_depth=config.depth, vision_tokens=0, vision_depth=0,
            ctx_init=config.ctx_init,
        )
