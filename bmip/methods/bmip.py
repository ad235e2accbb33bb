"""BMIP: bi-directional modality interaction prompts (Lv et al., IJCAI 2025).

Each deep block k (1 <= k <= D-1) of each tower gets, per prompt token i, a gated mix of its
own deep prompt and the other tower's deep prompt projected into its width:

    vision:  w_i · V_k[i] + (1 - w_i) · F_tv(T_k)[i]
    text:    w_i · T_k[i] + (1 - w_i) · F_vt(V_k)[i]
    w_i = sigmoid(a_k · s_i + b_k)

where s_i is the mean attention that the block's content tokens give to prompt slot i, read
from the block's own attention on its incoming hidden state (detached). Layer 0: the text
context P_t0 (from "a photo") and the vision prompt F_tv(P_t0).

Default (ours, docs/methods.md): s_i per sample (per image; per class prompt), averaged over heads
and over the query tokens that can see slot i (vision: CLS + patches; text: the tokens after
the prompt up to EOT); one F_tv and one F_vt shared by all layers (`per_layer_projections`
for one per layer); gates start at a = b = 0, an even mix.

`official_compat: true` reproduces the released code (LAMDASZ-ML/BMIP @ 1f039b4) instead: the
vision statistic is averaged over the batch (an image's logits depend on its batch-mates); the
text statistic is read from the SOS row, which under the causal mask is exactly 0, so the text
gate is the constant sigmoid(b_k) (its weight a_k would be dead and is not created); text deep
prompts only in blocks 1..D-2; one visual deep prompt shared by all layers; a separate layer-0
projection; gates initialised U(-1, 1). It also trains like the released code: there the optimiser
holds the shared visual deep prompt as D-1 separate parameters ("aliases", one per deep vision
block, all over the prompt's memory). Alias c gets the gradient of its own uses only (vision
block c+1, and text block c+1 through F_vt for c <= D-3) and its own optimiser state, and the
D-1 updates are applied one after the other in place: the prompt moves by about (D-1)·lr per
Adam step and weight decay is applied D-1 times. `optimizer_params` hands the optimiser those
aliases; checkpoints still hold the one prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import MethodConfigError, PromptMethod, Slots, check_depth, normal_prompts, text_context


@dataclass
class BMIPConfig:
    n_ctx: int = 2
    depth: int = 9
    ctx_init: str = "a photo of a"
    per_layer_projections: bool = False
    official_compat: bool = False


@torch.no_grad()
def slot_attention(block: nn.Module, x: torch.Tensor, slots: Slots, rows: slice) -> torch.Tensor:
    """Head-averaged attention weights from query `rows` to the prompt slots: (B, n_rows, N).

    Only Q of the query rows and K of all tokens are computed (no V, no output projection): the
    block's own fused attention then runs once, unlike the released code's two full passes.
    """
    attn = block.attn
    width, heads = x.shape[-1], attn.num_heads
    head_dim = width // heads
    h = block.ln_1(x)
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    q_bias, k_bias = (bias[:width], bias[width : 2 * width]) if bias is not None else (None, None)
    q = F.linear(h[:, rows], weight[:width], q_bias).unflatten(-1, (heads, head_dim)).transpose(1, 2)
    k = F.linear(h, weight[width : 2 * width], k_bias).unflatten(-1, (heads, head_dim)).transpose(1, 2)
    logits = (q @ k.transpose(-1, -2)) * head_dim**-0.5
    if slots.attn_mask is not None:
        logits = logits + slots.attn_mask[rows].to(logits.dtype)
    weights = logits.float().softmax(dim=-1)[..., slots.start : slots.start + slots.length]
    return weights.mean(dim=1)


class BMIP(PromptMethod):
    name = "bmip"
    Config = BMIPConfig

    def __init__(self, backbone: Backbone, config: BMIPConfig):
        super().__init__(backbone, config)
        depth = config.depth
        check_depth(self.name, depth, min(backbone.text_layers, backbone.vision_layers))
        if depth < 1:
            raise MethodConfigError("method 'bmip': depth must be >= 1")
        compat = self.compat = config.official_compat
        n, dt, dv = config.n_ctx, backbone.text_width, backbone.vision_width
        self.depth, self.per_layer = depth, config.per_layer_projections
        self.text_tokens = self.vision_tokens = n
        # Last block whose text slots get fresh prompts (the released code stops one block early).
        self.last_text_block = depth - 2 if compat else depth - 1
        self.ctx, self.prompt_prefix = text_context(backbone, n, config.ctx_init)

        n_tv = depth if self.per_layer else (2 if compat else 1)
        self.proj_tv = nn.ModuleList(nn.Linear(dt, dv) for _ in range(n_tv if depth > 1 else 1))
        if depth > 1:
            self.text_prompts = normal_prompts(depth - 1, n, dt)
            self.vision_prompts = normal_prompts(1 if compat else depth - 1, n, dv)
            n_vt = self.last_text_block if self.per_layer else 1
            self.proj_vt = nn.ModuleList(nn.Linear(dv, dt) for _ in range(n_vt))
            if compat:
                self.vision_gate = nn.Parameter(torch.empty(depth - 1, 2).uniform_(-1, 1))
                self.text_gate_bias = nn.Parameter(torch.empty(max(self.last_text_block, 0)).uniform_(-1, 1))
            else:
                self.vision_gate = nn.Parameter(torch.zeros(depth - 1, 2))
                self.text_gate = nn.Parameter(torch.zeros(depth - 1, 2))
        # official_compat: one alias per deep vision block over `vision_prompts`' memory (not
        # registered: state dicts and checkpoints hold the prompt once).
        self._aliases = [nn.Parameter(self.vision_prompts.detach()) for _ in range(depth - 1 if compat else 0)]
        # When dicts, deep hooks record (tower, block) -> gate weights w and statistics s, for
        # analysis (bmip.engine.gates) and tests.
        self.recorded_gates: dict[tuple[str, int], torch.Tensor] | None = None
        self.recorded_statistics: dict[tuple[str, int], torch.Tensor] | None = None

    @property
    def label_space_independent(self) -> bool:
        """official_compat's vision statistic is the batch mean: an image's logits depend on its
        batch-mates, so its evaluation keeps the released code's per-label-space batches."""
        return not self.compat

    # ---------------------------------------------------------------- projections
    def _tv(self, k: int) -> nn.Linear:
        if self.per_layer:
            return self.proj_tv[k]
        return self.proj_tv[min(k, 1)] if self.compat else self.proj_tv[0]

    def _vt(self, k: int) -> nn.Linear:
        return self.proj_vt[k - 1] if self.per_layer else self.proj_vt[0]

    def _vision_prompt(self, k: int) -> torch.Tensor:
        """Block k's own visual deep prompt (official_compat: its alias of the shared one)."""
        return self.visual_aliases()[k - 1][0] if self.compat else self.vision_prompts[k - 1]

    def visual_aliases(self) -> list[nn.Parameter]:
        """official_compat: the D-1 aliases of the shared visual deep prompt, re-pointed at its
        memory if a device or dtype move or a copy gave the prompt new storage."""
        prompt = self.vision_prompts
        for alias in self._aliases:
            if alias.device != prompt.device or alias.data_ptr() != prompt.data_ptr():
                alias.data = prompt.data
        return self._aliases

    def optimizer_params(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """official_compat: the shared visual prompt as its D-1 aliases, in their own group with
        torch's single-tensor update (sequential and in place on every device; the multi-tensor
        kernels would update the aliased memory concurrently)."""
        params = super().optimizer_params()
        if not self._aliases:
            return params
        return [{"params": [p for p in params if p is not self.vision_prompts]},
                {"params": self.visual_aliases(), "foreach": False}]

    # ---------------------------------------------------------------- gates
    def _record(self, tower: str, k: int, w: torch.Tensor, s: torch.Tensor | None) -> None:
        if self.recorded_gates is not None:
            self.recorded_gates[(tower, k)] = w.detach().squeeze(-1)
        if self.recorded_statistics is not None and s is not None:
            self.recorded_statistics[(tower, k)] = s.detach()

    def vision_statistic(self, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor:
        """s_i per image (B, N); the batch mean (1, N) in official_compat mode."""
        s = slot_attention(block, x, slots, slice(0, slots.start)).mean(dim=1)
        return s.mean(dim=0, keepdim=True) if self.compat else s

    def text_statistic(self, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor:
        """s_i per class prompt (C, N): mean over the tokens after the prompt, up to EOT."""
        first = slots.start + slots.length
        weights = slot_attention(block, x, slots, slice(first, x.shape[1]))
        positions = torch.arange(first, x.shape[1], device=x.device)
        valid = (positions.unsqueeze(0) <= slots.eot.unsqueeze(1)).to(weights.dtype)  # (C, rows)
        return (weights * valid.unsqueeze(-1)).sum(dim=1) / valid.sum(dim=1, keepdim=True)

    # ---------------------------------------------------------------- prompts
    def text_shallow(self) -> torch.Tensor:
        return self.ctx

    def vision_shallow(self) -> torch.Tensor:
        return self._tv(0)(self.ctx)

    def vision_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        if k >= self.depth:
            return None
        a, b = self.vision_gate[k - 1]
        s = self.vision_statistic(block, x, slots)
        w = torch.sigmoid(a * s + b).unsqueeze(-1)  # (B|1, N, 1)
        self._record("vision", k, w, s)
        foreign = self._tv(k)(self.text_prompts[k - 1])
        return w * self._vision_prompt(k) + (1 - w) * foreign

    def text_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        if k > self.last_text_block:
            return None
        if self.compat:
            s, w = None, torch.sigmoid(self.text_gate_bias[k - 1]).view(1, 1, 1)
        else:
            a, b = self.text_gate[k - 1]
            s = self.text_statistic(block, x, slots)
            w = torch.sigmoid(a * s + b).unsqueeze(-1)  # (C, N, 1)
        self._record("text", k, w, s)
        foreign = self._vt(k)(self._vision_prompt(k))
        return w * self.text_prompts[k - 1] + (1 - w) * foreign
