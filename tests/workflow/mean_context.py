"""A method added from outside the package, as a researcher would: its module and one registry line.

tests/workflow/test_adding_a_method.py names this module in BMIP_METHOD_MODULES and runs it through
the workflow; nothing in bmip/ knows it.
"""
from __future__ import annotations

import torch

from bmip.methods import register
from bmip.methods.coop import CoOp


class MeanContext(CoOp):
    """CoOp whose context vectors all start at the mean embedding of `ctx_init`'s words."""

    name = "mean_ctx"

    def __init__(self, backbone, config):
        super().__init__(backbone, config)
        with torch.no_grad():
            self.ctx.copy_(self.ctx.mean(dim=0, keepdim=True).expand_as(self.ctx))


register("mean_ctx", MeanContext, frozen_image_tower=True)
