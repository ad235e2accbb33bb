"""Bias tuning: learnable vectors added to the residual stream of the first blocks of both towers,
no prompt tokens (Ma et al., arXiv 2312.11570, who propose it to test that multi-modal prompts act
as a dataset bias; their placement, shape, initialisation and recipe are not published).

Ours, a reconstruction: in each of the first `text_depth` / `vision_depth` blocks of a tower, one
vector added to every token after the attention sub-layer and one after the MLP, initialised to
zero, so that step 0 is zero-shot CLIP exactly (with the dataset's hand-written template, as
`zsclip`). Two vectors per block and tower give 2·D·(d_t + d_v) parameters: IVLP's count with its
2 tokens per block at the same depths (IVLP: the shallow context plus D - 1 deep prompts of 2 tokens
per tower).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import PromptMethod, check_depth

VECTORS_PER_BLOCK = 2  # after the attention, after the MLP: IVLP's 2 tokens per block


@dataclass
class BiasTuneConfig:
    text_depth: int = 12
    vision_depth: int = 12


class BiasTune(PromptMethod):
    name = "biastune"
    Config = BiasTuneConfig

    def __init__(self, backbone: Backbone, config: BiasTuneConfig):
        super().__init__(backbone, config)
        check_depth(self.name, config.text_depth, backbone.text_layers, "text_depth")
        check_depth(self.name, config.vision_depth, backbone.vision_layers, "vision_depth")
        self.text_depth, self.vision_depth = config.text_depth, config.vision_depth
        if self.text_depth:
            self.text_biases = nn.Parameter(torch.zeros(self.text_depth, VECTORS_PER_BLOCK, backbone.text_width))
        if self.vision_depth:
            self.vision_biases = nn.Parameter(torch.zeros(self.vision_depth, VECTORS_PER_BLOCK, backbone.vision_width))

    def prompt_template(self, dataset_template: str) -> str:
        return dataset_template

    @property
    def text_is_fixed(self) -> bool:
        return self.text_depth == 0

    def residual_biases(self, tower: str) -> Callable[[int], "tuple[torch.Tensor, torch.Tensor] | None"] | None:
        depth = self.text_depth if tower == "text" else self.vision_depth
        if not depth:
            return None
        biases = self.text_biases if tower == "text" else self.vision_biases
        return lambda k: (biases[k, 0], biases[k, 1]) if k < depth else None
