"""BITP's connectors as released: the authors' own "simple aggregation" comparators (`bitp_compat`).

BITP is BMIP's precursor in the released code (LAMDASZ-ML/BMIP, `trainers/bitp.py` with
the `ResidualAttentionBlock_BITP` blocks of `clip/model.py`): BMIP's learnable tensors and
scaffolding with a fixed connector in place of the gate, chosen by `CONNECT_METHOD`. BMIPRS trains
its "simple information aggregation" baselines with it. `bitp_compat: <connector>` (an option of
method `bmip`) builds `ReleasedBITP`, which computes what the release computes for that connector
(docs/methods.md, "BITP's connectors as released", names the lines each follows):

- `joint`: 2N prompt slots in both towers. Vision block k: `[V ; F_tv(T_k)]`; text block k:
  `[F_vt(V) ; T_k]` (the foreign prompt first); layer 0: vision `[P_tv(ctx) ; V]`, text the N
  learnable tokens followed by the next N words of the prompt prefix (fixed).
- `atten`: `own + Σ_j softmax_j(f_i · own_j) f_j` in every deep block (the release's
  `Atten(f, own) + own`: scores f·ownᵀ, softmax over own's tokens, pooling f's tokens); layer 0:
  `V + Atten(P_tv(ctx), V)`.
- `exchange`: `L(torch.stack([a, b]).view(N, 2d))` with the tower's exchange Linear L (2d -> d),
  `[V, F_tv(T_k)]` on vision and `[F_vt(V), T_k]` on text: a per-token concatenation only for
  N = 1 (for N > 1 row r holds consecutive pieces of the stacked memory); layer 0: `P_tv(ctx)`.
- `add`: the two prompt lists concatenated, not added: vision blocks 1..D-1 get V and blocks
  D..2D-2 get `F_tv(T_1)`, `F_tv(T_2)`, ...; text blocks 1..D-1 get `T_k` and blocks D..2D-2 get
  `F_vt(V)` (as far as the towers have blocks); layer 0: vision `P_tv(ctx) + V`.

T_k is block k's text deep prompt (`text_prompts[k - 1]`, the release's `compound_prompts_text[k-1]`).

The scaffolding is the released BMIP's, implemented once in `OfficialBMIP` and inherited: one
visual deep prompt V shared by all blocks (trained as one alias per use, as the release's
optimiser holds it), text deep prompts only in blocks 1..D-2 (the list-length rule of the BITP
blocks; `add`'s longer lists reach further), a layer-0 projection P_tv of its own, one shared
F_tv and one shared F_vt. Layer 0's V is the release's `ctx_v[:N]`, the parameter itself, so its
own alias comes first. No gates, no statistic: a logit depends only on (image, class).
Learnable tensors are fp32 (the release's fp16 leaves overflow under Adam, docs/official_code.md).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import MethodConfigError, Slots, normal_prompts
from bmip.methods.bmip import BMIPConfig, OfficialBMIP

CONNECTORS = ("joint", "add", "atten", "exchange")
# The options that choose BMIP's own variants; `bitp_compat` reproduces the release and takes their defaults.
EXCLUSIVE = ("official_compat", "aggregation", "directions", "per_layer_projections")


def stacked(first: torch.Tensor, second: torch.Tensor, width: int) -> torch.Tensor:
    """The release's `torch.stack([first, second], dim=0).view(rows, width)`: for width d the 2N
    tokens first then second; for width 2d the stacked memory cut into N rows of 2d."""
    return torch.stack([first, second]).view(-1, width)


def attention_pooled(foreign: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """The release's `Atten(foreign, own) + own`: softmax(foreign · ownᵀ) over own's tokens, then
    pooling foreign's tokens with those weights."""
    return own + torch.softmax(foreign @ own.transpose(-1, -2), dim=-1) @ foreign


# Block k's prompt of a tower from its own deep prompt, the other tower's projected one, whether it
# is the vision tower, and the tower's exchange Linear (None but for `exchange`).
DeepMix = Callable[[torch.Tensor, torch.Tensor, bool, "nn.Linear | None"], torch.Tensor]


def joined(own: torch.Tensor, foreign: torch.Tensor, vision: bool, _: None) -> torch.Tensor:
    """2N tokens: `[own ; foreign]` on vision, `[foreign ; own]` on text."""
    first, second = (own, foreign) if vision else (foreign, own)
    return stacked(first, second, own.shape[-1])


def exchanged(own: torch.Tensor, foreign: torch.Tensor, vision: bool, linear: nn.Linear) -> torch.Tensor:
    """The stack (same order as `joined`) read as N rows of 2d, mapped back to d by the Linear."""
    first, second = (own, foreign) if vision else (foreign, own)
    return linear(stacked(first, second, 2 * own.shape[-1]))


def pooled(own: torch.Tensor, foreign: torch.Tensor, vision: bool, _: None) -> torch.Tensor:
    return attention_pooled(foreign, own)


# The connectors that combine own and foreign prompts in each deep block (`add` alternates them).
DEEP_MIXES: dict[str, DeepMix] = {"joint": joined, "atten": pooled, "exchange": exchanged}

# The vision layer-0 prompt from the projected text context P_tv(ctx) and the shared V (`ctx_v[:N]`).
LAYER0: dict[str, Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "joint": lambda projected, v: stacked(projected, v, projected.shape[-1]),
    "atten": lambda projected, v: attention_pooled(projected, v),
    "add": lambda projected, v: projected + v,
    "exchange": lambda projected, _: projected,
}


def check_bitp(config: BMIPConfig) -> None:
    """Refuse an unknown connector, or one combined with an option of BMIP's own variants."""
    if config.bitp_compat not in CONNECTORS:
        raise MethodConfigError(f"method 'bmip': option bitp_compat: unknown value {config.bitp_compat!r}; choose "
                                f"one of {list(CONNECTORS)} (or null for BMIP)")
    defaults = {f.name: f.default for f in dataclasses.fields(BMIPConfig)}
    changed = [f"{key}: {getattr(config, key)!r}" for key in EXCLUSIVE if getattr(config, key) != defaults[key]]
    if changed:
        raise MethodConfigError(f"method 'bmip': option bitp_compat reproduces the released BITP connectors with "
                                f"the release's own scaffolding; it cannot be combined with {', '.join(changed)} "
                                f"(leave {', '.join(EXCLUSIVE)} at their defaults)")


def joint_context(backbone: Backbone, n: int, init: str) -> tuple[nn.Parameter, str, torch.Tensor]:
    """The release's joint learner: N learnable tokens in 2N text slots, the next N words fixed.

    From `init` when its first 2N tokens exist (the first N word embeddings learnable), else
    N(0, 0.02) before N fixed "X" tokens of the placeholder prefix. Returns (context, prefix, fixed)."""
    from_init = bool(init) and 2 * n <= backbone.n_tokens(init)
    prefix = init if from_init else " ".join(["X"] * (2 * n))
    words = backbone.word_embeddings(prefix)
    ctx = nn.Parameter(words[:n].clone()) if from_init else normal_prompts(n, backbone.text_width)
    return ctx, prefix, words[n : 2 * n].clone()


class ReleasedBITP(OfficialBMIP):
    """`bitp_compat: <connector>`: the released BITP (module docstring) on `OfficialBMIP`'s scaffolding.

    Learnable: the text context (`ctx`, the release's `ctx_t`), P_tv (`proj_tv.0`, `proj_t`), the
    deep F_tv (`proj_tv.1`, `single_layer_t`), F_vt (`proj_vt.0`, `single_layer_v`), the text deep
    prompts T (`compound_prompts_text`), the shared V (`vision_prompts`, `ctx_v[:N]`) and, for
    `exchange`, `exchange_v`/`exchange_t` (`exchange_layer_v/_t`); each only where the connector
    uses it at this depth.
    """

    def __init__(self, backbone: Backbone, config: BMIPConfig):
        check_bitp(config)
        super().__init__(backbone, config)
        n = config.n_ctx
        if self.connector == "joint":
            self.text_tokens = self.vision_tokens = 2 * n
            self.ctx, self.prompt_prefix, fixed = joint_context(backbone, n, config.ctx_init)
            self.register_buffer("ctx_fixed", fixed, persistent=False)
        # The deep projections only where a block reads them (`add` reads them from block D on).
        first = self.depth if self.connector == "add" else 1
        if hasattr(self, "proj_vt") and first > min(self.last_text_block, backbone.text_layers - 1):
            del self.proj_vt
        if len(self.proj_tv) > 1 and first > min(self.last_vision_block, backbone.vision_layers - 1):
            self.proj_tv = self.proj_tv[:1]
        if self.connector != "exchange":  # layer 0 reads ctx_v[:N] itself: an alias of its own, first
            if self.depth == 1:
                self.vision_prompts = normal_prompts(1, n, backbone.vision_width)
            self._aliases.insert(0, nn.Parameter(self.vision_prompts.detach()))

    @property
    def connector(self) -> str:
        return self.config.bitp_compat

    @property
    def label_space_independent(self) -> bool:
        """No gate and no statistic: a logit depends only on (image, class)."""
        return True

    # ---------------------------------------------------------------- which blocks get prompts
    @property
    def last_text_block(self) -> int:
        """The BITP text block takes list entry c while c <= len - 2: D-2 for the D-1 mixed prompts;
        `add`'s list holds 2D-1 entries (T, then F_vt(V) per deep block, then the unused ctx_t): 2D-2."""
        return 2 * self.depth - 2 if self.connector == "add" else self.depth - 2

    @property
    def last_vision_block(self) -> int:
        """The vision block takes entry c while c <= len - 1: D-1, or 2D-2 for `add`'s 2D-2 entries."""
        return 2 * self.depth - 2 if self.connector == "add" else self.depth - 1

    # ---------------------------------------------------------------- learnable tensors
    def _make_links(self, dt: int, dv: int) -> None:
        """`exchange`: the release's shared exchange Linears (2d -> d), each where its tower mixes."""
        if self.connector != "exchange":
            return
        self.exchange_v = nn.Linear(2 * dv, dv)
        if self.last_text_block >= 1:
            self.exchange_t = nn.Linear(2 * dt, dt)

    def _vision_prompt(self, k: int) -> torch.Tensor:
        """Block k's alias of V (after layer 0's, where it has one)."""
        return self.visual_aliases()[k - 1 + (self.connector != "exchange")][0]

    # ---------------------------------------------------------------- prompts
    def text_shallow(self) -> torch.Tensor:
        if self.connector == "joint":
            return torch.cat([self.ctx, self.ctx_fixed.to(self.ctx.dtype)])
        return self.ctx

    def vision_shallow(self) -> torch.Tensor:
        v = self.visual_aliases()[0][0] if self.connector != "exchange" else None
        return LAYER0[self.connector](self._tv(0)(self.ctx), v)

    def vision_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        if k > self.last_vision_block:
            return None
        if self.connector == "add":
            return self._vision_prompt(k) if k < self.depth else self._tv(k)(self.text_prompts[k - self.depth])
        own, foreign = self._vision_prompt(k), self._tv(k)(self.text_prompts[k - 1])
        return DEEP_MIXES[self.connector](own, foreign, True, getattr(self, "exchange_v", None))

    def text_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        if k > self.last_text_block:
            return None
        if self.connector == "add":
            return self.text_prompts[k - 1] if k < self.depth else self._vt(k)(self._vision_prompt(k - self.depth + 1))
        own, foreign = self.text_prompts[k - 1], self._vt(k)(self._vision_prompt(k))
        return DEEP_MIXES[self.connector](own, foreign, False, getattr(self, "exchange_t", None))
