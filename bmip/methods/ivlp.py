"""Independent vision-language prompting (IVLP) and the shared machinery of CoOp, VPT and deep
language prompting, which are IVLP with one tower switched off.

Text: `text_tokens` context vectors after SOS (from the first words of `ctx_init`), replaced by
fresh N(0, 0.02) prompts in blocks 1..text_depth-1. Vision: `vision_tokens` N(0, 0.02) tokens
appended after the patches, replaced in blocks 1..vision_depth-1. No coupling between towers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import MethodConfigError, PromptMethod, Slots, check_depth, normal_prompts, text_context


class IndependentPrompts(PromptMethod):
    """Shallow + deep prompts on either tower, learned independently."""

    def __init__(
        self,
        backbone: Backbone,
        config: object,
        *,
        text_tokens: int,
        text_depth: int,
        vision_tokens: int,
        vision_depth: int,
        ctx_init: str = "a photo of a",
    ):
        super().__init__(backbone, config)
        for tower, tokens, depth, layers in (
            ("text", text_tokens, text_depth, backbone.text_layers),
            ("vision", vision_tokens, vision_depth, backbone.vision_layers),
        ):
            # the option's own name: IVLP's text_depth / vision_depth, VPT's and Lang's depth
            option = f"{tower}_depth" if hasattr(config, f"{tower}_depth") else "depth"
            check_depth(self.name, depth, layers, option)
            if (tokens > 0) != (depth > 0):
                raise MethodConfigError(
                    f"method {self.name!r}: {tower} prompts need both a token count and a depth > 0 "
                    f"(got {tokens} tokens, depth {depth})"
                )
        self.text_tokens, self.vision_tokens = text_tokens, vision_tokens
        self.text_depth, self.vision_depth = text_depth, vision_depth
        if text_tokens:
            self.ctx, self.prompt_prefix = text_context(backbone, text_tokens, ctx_init)
        else:
            self.prompt_prefix = ctx_init
        if text_depth > 1:
            self.text_prompts = normal_prompts(text_depth - 1, text_tokens, backbone.text_width)
        if vision_tokens:
            self.vision_ctx = normal_prompts(vision_tokens, backbone.vision_width)
        if vision_depth > 1:
            self.vision_prompts = normal_prompts(vision_depth - 1, vision_tokens, backbone.vision_width)

    def text_shallow(self) -> torch.Tensor | None:
        return self.ctx if self.text_tokens else None

    def vision_shallow(self) -> torch.Tensor | None:
        return self.vision_ctx if self.vision_tokens else None

    def text_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        return self.text_prompts[k - 1].unsqueeze(0) if k < self.text_depth else None

    def vision_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        return self.vision_prompts[k - 1].unsqueeze(0) if k < self.vision_depth else None


@dataclass
class IVLPConfig:
    text_tokens: int = 2
    text_depth: int = 12
    vision_tokens: int = 2
    vision_depth: int = 12
    ctx_init: str = "a photo of a"


class IVLP(IndependentPrompts):
    name = "ivlp"
    Config = IVLPConfig

    def __init__(self, backbone: Backbone, config: IVLPConfig):
        super().__init__(
            backbone,
            config,
            text_tokens=config.text_tokens,
            text_depth=config.text_depth,
            vision_tokens=config.vision_tokens,
            vision_depth=config.vision_depth,
            ctx_init=config.ctx_init,
        )
