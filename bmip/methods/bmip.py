"""BMIP: bi-directional modality interaction prompts (Lv et al., IJCAI 2025).

Each deep block k (1 <= k <= D-1) of each tower gets, per prompt token i, a gated mix of its
own deep prompt and the other tower's deep prompt projected into its width:

    vision:  w_i · V_k[i] + (1 - w_i) · F_tv(T_k)[i]
    text:    w_i · T_k[i] + (1 - w_i) · F_vt(V_k)[i]
    w_i = sigmoid(a_k · s_i + b_k)

where s_i is the mean attention that the block's content tokens give to prompt slot i, read
from the block's own attention on its incoming hidden state (detached). Layer 0: the text
context P_t0 (from "a photo") and the vision prompt F_tv(P_t0).

`BMIP` is ours (docs/methods.md): s_i per sample (per image; per class prompt), averaged over
heads and over the query tokens that can see slot i (vision: CLS + patches; text: the tokens after
the prompt up to EOT); one F_tv and one F_vt shared by all layers (`per_layer_projections` for one
per layer); gates start at a = b = 0, an even mix.

`gate_statistic` (ours, an ablation of the gate's input): `mean_attention` (the default, the
paper's s_i above) or `scaled`, s_i measured against uniform attention: each query row's weight on
slot i times the number of tokens that row attends over, then averaged as above. The paper's s_i
is O(1/L) (L: the sequence length), so with a starting at 0 and moving by about the learning rate
per Adam step, w hardly varies across inputs (in the default miniworld run by at most ~1.8e-3:
`constant_gate` gives the same numbers as `gate`); on the scaled statistic, which reads 1 for
uniform attention, the same a moves w about L times as much, so an ablation can ask whether the
gate *can* use attention.

Ablations of the mixing (docs/methods.md, "BMIP's mixing variants"), options of this one method:
`aggregation` replaces the gated mix by another connector of `MIXES` — `sum`, `mean` (w = 0.5),
`constant_gate` (w = sigmoid(b_k): a learned gate without the attention statistic),
`attention_pool` (BITP's `atten`), `joint` (own and foreign side by side: 2N slots), `exchange`
(a Linear over the concatenated features) — and `directions` keeps only one flow
(`text_to_vision`: only the vision tower mixes in the other's prompt; `vision_to_text`: only the
text tower). Only the tensors a variant uses are created, so `gate` + `both` is the BMIP above
tensor for tensor and random draw for random draw.

`official_compat: true` builds `OfficialBMIP` (below) instead: the released code, with what it
does differently (docs/official_code.md). `bitp_compat: <connector>` builds `ReleasedBITP`
(bmip.methods.bitp): the released BITP connectors (`joint`, `add`, `atten`, `exchange`) on that
same released scaffolding, the authors' own simple-aggregation comparators.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

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
    aggregation: str = "gate"
    directions: str = "both"
    bitp_compat: str | None = None  # a released BITP connector (bmip.methods.bitp.CONNECTORS)
    gate_statistic: str = "mean_attention"  # the gate's input s (GATE_STATISTICS): the paper's, or ours `scaled`


# ---------------------------------------------------------------- the mixing variants
# A mix makes block k's prompt of a tower from its own deep prompt and the other tower's projected
# one (both (N, d)) and the tower's learned link at block k (`BMIP._link`): the gate weights w
# (gate, constant_gate: (B|C|1, N, 1)), the tower's exchange Linear (exchange), or None.
Mix = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def gated(own: torch.Tensor, foreign: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """BMIP: w ⊙ own + (1 − w) ⊙ foreign."""
    return w * own + (1 - w) * foreign


def summed(own: torch.Tensor, foreign: torch.Tensor, _: None) -> torch.Tensor:
    return own + foreign


def averaged(own: torch.Tensor, foreign: torch.Tensor, _: None) -> torch.Tensor:
    """BMIP's gate frozen at its initial even mix."""
    return 0.5 * own + 0.5 * foreign


def attention_pooled(own: torch.Tensor, foreign: torch.Tensor, _: None) -> torch.Tensor:
    """BITP's `atten`: own + softmax(own · foreignᵀ) · foreign."""
    return own + torch.softmax(own @ foreign.transpose(-1, -2), dim=-1) @ foreign


def joined(own: torch.Tensor, foreign: torch.Tensor, _: None) -> torch.Tensor:
    """Own and foreign side by side: 2N tokens."""
    return torch.cat([own, foreign], dim=-2)


def exchanged(own: torch.Tensor, foreign: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """The concatenated features mapped back to the width by the tower's Linear 2d -> d."""
    return linear(torch.cat([own, foreign], dim=-1))


# `aggregation` -> its mix (docs/methods.md's table of the variants); `gate` is BMIP.
MIXES: dict[str, Mix] = {
    "gate": gated,
    "sum": summed,
    "mean": averaged,
    "constant_gate": gated,
    "attention_pool": attention_pooled,
    "joint": joined,
    "exchange": exchanged,
}
AGGREGATIONS = tuple(MIXES)
GATED = ("gate", "constant_gate")  # the aggregations whose link is a gate (recorded in gates.json)
DIRECTIONS = ("both", "text_to_vision", "vision_to_text")
# `gate_statistic` -> what the gate reads: the paper's mean attention weight s_i (O(1/L)), or ours,
# `scaled`: s_i against uniform attention (each query row's weight times the tokens it attends over).
GATE_STATISTICS = ("mean_attention", "scaled")


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


def attended_tokens(slots: Slots, rows: slice, length: int, device: torch.device) -> torch.Tensor:
    """How many tokens each query row of `rows` attends over, (n_rows,): the whole sequence, or
    the keys its attention mask leaves visible (the text tower's causal mask: position p sees p + 1).
    Uniform attention gives each token 1 / this."""
    if slots.attn_mask is None:
        return torch.full((len(range(length)[rows]),), float(length), device=device)
    return torch.isfinite(slots.attn_mask[rows, :length]).sum(dim=-1).to(device=device, dtype=torch.float32)


def check_variant(config: BMIPConfig) -> None:
    """Refuse an unknown or impossible mixing variant, naming the option and its valid values."""
    if config.aggregation not in AGGREGATIONS:
        raise MethodConfigError(f"method 'bmip': option aggregation: unknown value {config.aggregation!r}; "
                                f"choose one of {list(AGGREGATIONS)}")
    if config.directions not in DIRECTIONS:
        raise MethodConfigError(f"method 'bmip': option directions: unknown value {config.directions!r}; "
                                f"choose one of {list(DIRECTIONS)}")
    if config.official_compat and (config.aggregation, config.directions) != ("gate", "both"):
        raise MethodConfigError("method 'bmip': official_compat reproduces the released gated BMIP; it takes "
                                "only aggregation: gate and directions: both")
    if config.gate_statistic not in GATE_STATISTICS:
        raise MethodConfigError(f"method 'bmip': option gate_statistic: unknown value {config.gate_statistic!r}; "
                                f"choose one of {list(GATE_STATISTICS)}")
    if config.gate_statistic != GATE_STATISTICS[0]:
        if config.official_compat or config.bitp_compat is not None:
            raise MethodConfigError(f"method 'bmip': gate_statistic: {config.gate_statistic} is ours; official_compat "
                                    "and bitp_compat reproduce the released code, whose gate reads the batch-mean "
                                    "attention (and a constant on text): drop gate_statistic or the compat option")
        if config.aggregation != "gate":
            raise MethodConfigError(f"method 'bmip': gate_statistic: {config.gate_statistic} changes the input of "
                                    f"the attention gate; aggregation: {config.aggregation} reads no statistic "
                                    "(use aggregation: gate)")
    if config.aggregation == "joint" and config.directions != "both":
        raise MethodConfigError("method 'bmip': aggregation: joint gives both towers 2N slots from layer 0 on "
                                "(the vision layer-0 prompt is projected from the 2N text tokens); it needs "
                                "directions: both")


class BMIP(PromptMethod):
    name = "bmip"
    Config = BMIPConfig

    def __new__(cls, backbone: Backbone | None = None, config: BMIPConfig | None = None) -> BMIP:
        """`BMIP(backbone, config)` with `official_compat: true` builds an `OfficialBMIP`, with
        `bitp_compat` a `ReleasedBITP`: the option keeps its name in configs and checkpoints, the
        model is the other class. ReleasedBITP subclasses OfficialBMIP, so its module is looked up
        when built, as the method registry looks up every method."""
        if cls is BMIP and config is not None and config.bitp_compat is not None:
            cls = importlib.import_module("bmip.methods.bitp").ReleasedBITP
        elif cls is BMIP and config is not None and config.official_compat:
            cls = OfficialBMIP
        return super().__new__(cls)

    def __init__(self, backbone: Backbone, config: BMIPConfig):
        super().__init__(backbone, config)
        depth, n, dt, dv = config.depth, config.n_ctx, backbone.text_width, backbone.vision_width
        check_depth(self.name, depth, min(backbone.text_layers, backbone.vision_layers))
        if depth < 1:
            raise MethodConfigError("method 'bmip': depth must be >= 1")
        check_variant(config)
        self.aggregation = config.aggregation
        self.scaled = config.gate_statistic == "scaled"
        # Which towers mix the other's deep prompt into their own (blocks 1..D-1).
        self.vision_receives = config.directions in ("both", "text_to_vision")
        self.text_receives = config.directions in ("both", "vision_to_text")
        self.depth, self.per_layer = depth, config.per_layer_projections
        # joint: own and foreign prompts side by side, so 2N slots per tower (layer 0 included).
        self.text_tokens = self.vision_tokens = 2 * n if self.aggregation == "joint" else n
        self.ctx, self.prompt_prefix = text_context(backbone, self.text_tokens, config.ctx_init)
        self.proj_tv = self._text_to_vision_projections(dt, dv)
        if depth > 1:
            self._make_deep_prompts(n, dt, dv)
            if self.text_receives:  # F_vt: one shared, or one per text block that receives
                n_vt = self.last_text_block if self.per_layer else 1
                self.proj_vt = nn.ModuleList(nn.Linear(dv, dt) for _ in range(n_vt))
            self._make_links(dt, dv)
        # When dicts, deep hooks record (tower, block) -> gate weights w and statistics s, for
        # analysis (bmip.engine.gates) and tests.
        self.recorded_gates: dict[tuple[str, int], torch.Tensor] | None = None
        self.recorded_statistics: dict[tuple[str, int], torch.Tensor] | None = None

    # ---------------------------------------------------------------- learnable tensors
    @property
    def last_text_block(self) -> int:
        """The last text block whose slots get fresh prompts: D-1, as in the vision tower."""
        return self.depth - 1

    def _text_to_vision_projections(self, dt: int, dv: int) -> nn.ModuleList:
        """F_tv: one for layer 0 and every deep block, or one per layer (`per_layer_projections`)."""
        per_layer = self.per_layer and self.vision_receives and self.depth > 1
        return nn.ModuleList(nn.Linear(dt, dv) for _ in range(self.depth if per_layer else 1))

    def _make_deep_prompts(self, n: int, dt: int, dv: int) -> None:
        """T_k and V_k of blocks 1..D-1, N(0, 0.02)."""
        self.text_prompts = normal_prompts(self.depth - 1, n, dt)
        self.vision_prompts = normal_prompts(self.depth - 1, n, dv)

    def _make_links(self, dt: int, dv: int) -> None:
        """What the aggregation learns in each receiving tower, besides prompts and projections."""
        blocks = self.depth - 1
        if self.aggregation == "gate":  # (a_k, b_k) per block; a = b = 0 is an even mix
            if self.vision_receives:
                self.vision_gate = nn.Parameter(torch.zeros(blocks, 2))
            if self.text_receives:
                self.text_gate = nn.Parameter(torch.zeros(blocks, 2))
        elif self.aggregation == "constant_gate":  # b_k per block
            if self.vision_receives:
                self.vision_gate_bias = nn.Parameter(torch.zeros(blocks))
            if self.text_receives:
                self.text_gate_bias = nn.Parameter(torch.zeros(blocks))
        elif self.aggregation == "exchange":  # one Linear 2d -> d per tower, shared by the blocks
            if self.vision_receives:
                self.exchange_v = nn.Linear(2 * dv, dv)
            if self.text_receives:
                self.exchange_t = nn.Linear(2 * dt, dt)

    def _tv(self, k: int) -> nn.Linear:
        return self.proj_tv[k] if self.per_layer else self.proj_tv[0]

    def _vt(self, k: int) -> nn.Linear:
        return self.proj_vt[k - 1] if self.per_layer else self.proj_vt[0]

    def _vision_prompt(self, k: int) -> torch.Tensor:
        """Block k's own visual deep prompt V_k."""
        return self.vision_prompts[k - 1]

    # ---------------------------------------------------------------- gates
    def vision_statistic(self, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor:
        """s_i per image (B, N): mean over CLS and the patches (`scaled`: of each one's weight
        times the tokens it attends over)."""
        rows = slice(0, slots.start)
        weights = slot_attention(block, x, slots, rows)
        if self.scaled:
            weights = weights * attended_tokens(slots, rows, x.shape[1], x.device).view(1, -1, 1)
        return weights.mean(dim=1)

    def text_statistic(self, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor:
        """s_i per class prompt (C, N): mean over the tokens after the prompt, up to EOT (`scaled`:
        of each one's weight times the tokens it attends over)."""
        first = slots.start + slots.length
        rows = slice(first, x.shape[1])
        weights = slot_attention(block, x, slots, rows)
        if self.scaled:
            weights = weights * attended_tokens(slots, rows, x.shape[1], x.device).view(1, -1, 1)
        positions = torch.arange(first, x.shape[1], device=x.device)
        valid = (positions.unsqueeze(0) <= slots.eot.unsqueeze(1)).to(weights.dtype)  # (C, rows)
        return (weights * valid.unsqueeze(-1)).sum(dim=1) / valid.sum(dim=1, keepdim=True)

    def gate(self, tower: str, k: int, block: nn.Module, x: torch.Tensor,
             slots: Slots) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(w, s) of `tower` at block k: w = sigmoid(a_k · s + b_k), (B|C, N, 1); constant_gate:
        sigmoid(b_k), the same for every input and slot (expanded to (B|C, N, 1): gates.json
        records one value per input, as for the gate), and no statistic."""
        vision = tower == "vision"
        if self.aggregation == "constant_gate":
            bias = self.vision_gate_bias if vision else self.text_gate_bias
            return torch.sigmoid(bias[k - 1]).view(1, 1, 1).expand(x.shape[0], slots.length, 1), None
        a, b = (self.vision_gate if vision else self.text_gate)[k - 1]
        s = self.vision_statistic(block, x, slots) if vision else self.text_statistic(block, x, slots)
        return torch.sigmoid(a * s + b).unsqueeze(-1), s

    def _record(self, tower: str, k: int, w: torch.Tensor, s: torch.Tensor | None) -> None:
        if self.recorded_gates is not None:
            self.recorded_gates[(tower, k)] = w.detach().squeeze(-1)
        if self.recorded_statistics is not None and s is not None:
            self.recorded_statistics[(tower, k)] = s.detach()

    def _link(self, tower: str, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> Any:
        """What the tower's mix takes besides the two prompts (see `Mix`); gates are recorded."""
        if self.aggregation == "exchange":
            return self.exchange_v if tower == "vision" else self.exchange_t
        if self.aggregation not in GATED:
            return None
        w, s = self.gate(tower, k, block, x, slots)
        self._record(tower, k, w, s)
        return w

    # ---------------------------------------------------------------- prompts
    def text_shallow(self) -> torch.Tensor:
        return self.ctx

    def vision_shallow(self) -> torch.Tensor:
        return self._tv(0)(self.ctx)

    def vision_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        if k >= self.depth:
            return None
        own = self._vision_prompt(k)
        if not self.vision_receives:
            return own
        foreign = self._tv(k)(self.text_prompts[k - 1])
        return MIXES[self.aggregation](own, foreign, self._link("vision", k, block, x, slots))

    def text_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        if k > self.last_text_block:
            return None
        own = self.text_prompts[k - 1]
        if not self.text_receives:
            return own
        foreign = self._vt(k)(self._vision_prompt(k))
        return MIXES[self.aggregation](own, foreign, self._link("text", k, block, x, slots))


class OfficialBMIP(BMIP):
    """`official_compat: true`: the released code (LAMDASZ-ML/BMIP @ 1f039b4), where it differs
    from `BMIP` (docs/official_code.md):

    - the vision statistic is averaged over the batch (an image's logits depend on its batch-mates);
    - the text statistic is read from the SOS row, which under the causal mask is exactly 0, so the
      text gate is the constant sigmoid(b_k) (its weight a_k would be dead and is not created);
    - text deep prompts only in blocks 1..D-2;
    - one visual deep prompt shared by all layers;
    - a separate layer-0 projection F_tv (proj_tv[0]; proj_tv[1] serves the deep blocks);
    - gates initialised U(-1, 1).

    It also trains like the released code: there the optimiser holds the shared visual deep prompt
    as D-1 separate parameters ("aliases", one per deep vision block, all over the prompt's memory).
    Alias c gets the gradient of its own uses only (vision block c+1, and text block c+1 through
    F_vt for c <= D-3) and its own optimiser state, and the D-1 updates are applied one after the
    other in place: the prompt moves by about (D-1)·lr per Adam step and weight decay is applied
    D-1 times. `optimizer_params` hands the optimiser those aliases; checkpoints still hold the one
    prompt. Only `aggregation: gate` and `directions: both` (`check_variant`).
    """

    def __init__(self, backbone: Backbone, config: BMIPConfig):
        super().__init__(backbone, config)
        # One alias per deep vision block over `vision_prompts`' memory (not registered: state
        # dicts and checkpoints hold the prompt once).
        self._aliases = [nn.Parameter(self.vision_prompts.detach()) for _ in range(self.depth - 1)]

    @property
    def label_space_independent(self) -> bool:
        """The vision statistic is the batch mean: an image's logits depend on its batch-mates, so
        its evaluation keeps the released code's per-label-space batches."""
        return False

    @property
    def last_text_block(self) -> int:
        """The released code stops one block early: D-2."""
        return self.depth - 2

    def _text_to_vision_projections(self, dt: int, dv: int) -> nn.ModuleList:
        """Layer 0's own F_tv and one for the deep blocks (or one per layer)."""
        count = 1 if self.depth == 1 else self.depth if self.per_layer else 2
        return nn.ModuleList(nn.Linear(dt, dv) for _ in range(count))

    def _make_deep_prompts(self, n: int, dt: int, dv: int) -> None:
        """T_k of blocks 1..D-1 (the last one unused), one V shared by all blocks: (1, N, d_v)."""
        self.text_prompts = normal_prompts(self.depth - 1, n, dt)
        self.vision_prompts = normal_prompts(1, n, dv)

    def _make_links(self, dt: int, dv: int) -> None:
        """(a_k, b_k) per vision block, b_k alone per text block; U(-1, 1)."""
        self.vision_gate = nn.Parameter(torch.empty(self.depth - 1, 2).uniform_(-1, 1))
        self.text_gate_bias = nn.Parameter(torch.empty(max(self.last_text_block, 0)).uniform_(-1, 1))

    def _tv(self, k: int) -> nn.Linear:
        return self.proj_tv[k] if self.per_layer else self.proj_tv[min(k, 1)]

    def _vision_prompt(self, k: int) -> torch.Tensor:
        """Block k's alias of the shared visual deep prompt."""
        return self.visual_aliases()[k - 1][0]

    def visual_aliases(self) -> list[nn.Parameter]:
        """The D-1 aliases of the shared visual deep prompt, re-pointed at its memory if a device
        or dtype move or a copy gave the prompt new storage."""
        prompt = self.vision_prompts
        for alias in self._aliases:
            if alias.device != prompt.device or alias.data_ptr() != prompt.data_ptr():
                alias.data = prompt.data
        return self._aliases

    def optimizer_params(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """The shared visual prompt as its D-1 aliases, in their own group with torch's
        single-tensor update (sequential and in place on every device; the multi-tensor kernels
        would update the aliased memory concurrently)."""
        params = super().optimizer_params()
        if not self._aliases:
            return params
        return [{"params": [p for p in params if p is not self.vision_prompts]},
                {"params": self.visual_aliases(), "foreach": False}]

    def vision_statistic(self, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor:
        """The batch mean of s_i: (1, N)."""
        return super().vision_statistic(block, x, slots).mean(dim=0, keepdim=True)

    def gate(self, tower: str, k: int, block: nn.Module, x: torch.Tensor,
             slots: Slots) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text: sigmoid(b_k), the released gate on its exactly-zero SOS-row statistic."""
        if tower == "text":
            return torch.sigmoid(self.text_gate_bias[k - 1]).view(1, 1, 1), None
        return super().gate(tower, k, block, x, slots)
