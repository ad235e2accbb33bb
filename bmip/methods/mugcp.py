"""MuGCP, reconstructed from its abstract (Yang et al., arXiv 2507.08410; no code or full text is
public): every choice below is ours, and docs/mugcp.md gives the reason of each.

Per image, with its caption c (bmip.captions; the engine sets `batch_captions` before each forward,
bmip.engine.runtime.give_captions) and m conditional tokens:

* SCP (semantic conditional prompts): e = n(CLIP_text(c)), the frozen text tower's feature of the
  caption, and S = meta(e) reshaped to (m, d_t), meta = Linear(E, E/16) . ReLU . Linear(E/16, m d_t)
  (CoCoOp's meta-net shape);
* AMG (attention mutual guidance), before vision block k, 1 <= k < depth: the semantic tokens
  s = P_k + W_sv S (P_k learnable, as MaPLe's deep prompts) and the block's image tokens X (CLS and
  patches, its input) guide each other, with h = the block's own ln_1 and a = softmax:
    read_j   = sum_i a_i(q1(h s_j) . k1(h X_i) / sqrt r) X_i     (each semantic token reads the image)
    region_j = sum_i b_ij X_i / sum_i b_ij,  b_i = a_j(q2(h X_i) . k2(h s'_j) / sqrt r), s' = s + read
                                                                  (each image token picks a semantic token)
    VCP_k = s + (read + region) / 2, inserted as the block's m vision prompts; VCP_0 = P_0 (the
  image's tokens exist from block 1 on: conditioning starts in the intermediate blocks);
  `amg: false` (no mutual guidance) replaces both attention averages by the plain mean of X;
* MPF (multi-prompt fusion): the image's text prompt is [SOS, ctx (n_ctx, learnable, from
  "a photo of a"), S + W_vt VCP_last (m), <class>, ".", EOT]: per-image text prompts, as CoCoOp's,
  so it is `image_conditioned` and costs CoCoOp's B x C text sequences.

`captions: empty` (the ablation): every caption is "". Outside `bmip train` / `bmip evaluate` (no
captions given) every caption is "" too, with a warning, as HiCroPL falls back to its template.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import MethodConfigError, PromptMethod, Slots, check_depth, normal_prompts, text_context

log = logging.getLogger(__name__)
CAPTION_SOURCES = ("given", "empty")


@dataclass
class MuGCPConfig:
    n_ctx: int = 4  # learnable context tokens of the text prompt (CoCoOp's 4)
    ctx_init: str = "a photo of a"
    n_cond: int = 4  # SCP tokens = VCP tokens
    depth: int = 9  # vision blocks 0..depth-1 get VCP (MaPLe's depth); AMG in blocks 1..depth-1
    rank: int = 64  # width of AMG's query/key projections
    amg: bool = True  # False: no mutual guidance (VCP from the SCP and the image tokens' mean)
    captions: str = "given"  # "empty": every caption "" (what the captions add)


class MutualGuidance(nn.Module):
    """AMG's two cross-attentions between m semantic tokens and N image tokens (one module shared
    by every AMG block; queries and keys are low-rank, values are the image tokens themselves)."""

    def __init__(self, width: int, rank: int):
        super().__init__()
        self.rank = rank
        self.q_read, self.k_read = nn.Linear(width, rank), nn.Linear(width, rank)
        self.q_pick, self.k_pick = nn.Linear(width, rank), nn.Linear(width, rank)

    def forward(self, s: torch.Tensor, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """(B|1, m, d) semantic tokens, (B, N, d) image tokens, the block's LayerNorm -> (B, m, d) VCP."""
        s = s.expand(x.shape[0], -1, -1)
        hx = norm(x)
        scale = self.rank ** -0.5
        read = (self.q_read(norm(s)) @ self.k_read(hx).transpose(1, 2) * scale).softmax(dim=-1) @ x
        picks = (self.q_pick(hx) @ self.k_pick(norm(s + read)).transpose(1, 2) * scale).softmax(dim=-1)  # (B, N, m)
        region = picks.transpose(1, 2) @ x / picks.sum(dim=1).unsqueeze(-1)
        return s + (read + region) / 2


class MuGCP(PromptMethod):
    name = "mugcp"
    Config = MuGCPConfig
    image_conditioned = True

    def __init__(self, backbone: Backbone, config: MuGCPConfig):
        super().__init__(backbone, config)
        check_depth(self.name, config.depth, backbone.vision_layers)
        if config.depth < 1 or config.n_cond < 1 or config.rank < 1:
            raise MethodConfigError(f"method 'mugcp': depth, n_cond and rank must be >= 1 (got {config.depth}, "
                                    f"{config.n_cond}, {config.rank})")
        if config.captions not in CAPTION_SOURCES:
            raise MethodConfigError(f"method 'mugcp': captions={config.captions!r}; choose one of {CAPTION_SOURCES}")
        m, dt, dv, e = config.n_cond, backbone.text_width, backbone.vision_width, backbone.embed_dim
        self.backbone = backbone  # a dataclass, not a module: the frozen CLIP encodes the captions
        self.ctx, prefix = text_context(backbone, config.n_ctx, config.ctx_init)
        self.text_tokens, self.vision_tokens = config.n_ctx + m, m
        self.prompt_prefix = prefix + " X" * m
        hidden = max(e // 16, 1)
        self.meta_net = nn.Sequential(nn.Linear(e, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, m * dt))
        self.vision_prompts = normal_prompts(config.depth, m, dv)
        self.semantic_to_vision = nn.Linear(dt, dv)
        self.vision_to_text = nn.Linear(dv, dt)
        self.guidance = MutualGuidance(dv, config.rank) if config.amg else None
        self.batch_captions: list[str] | None = None  # set by the engine before each forward
        self._scp: torch.Tensor | None = None  # (B|1, m, d_t) of the image pass under way
        self._vcp: torch.Tensor | None = None  # (B|1, m, d_v): its last VCP
        self._given: int | None = None  # how many captions the engine gave for it (None: one, broadcast)

    # ---------------------------------------------------------------- SCP
    def captions(self) -> list[str]:
        """The captions of the batch about to be encoded: [""] (one, broadcast) where none are given."""
        if self.config.captions == "empty":
            return [""]
        if self.batch_captions is None:
            log.warning("mugcp: no captions were given (used outside `bmip train` / `bmip evaluate`); every "
                        "caption is the empty string")
            return [""]
        return list(self.batch_captions)

    def semantic_prompts(self, captions: list[str]) -> torch.Tensor:
        """SCP (len(captions), m, d_t) from the frozen text tower's normalised caption features."""
        clip = self.backbone.clip
        with torch.no_grad():
            tokens = self.backbone.tokenizer(captions).to(clip.logit_scale.device)
            feats = F.normalize(clip.encode_text(tokens).float(), dim=-1)
        return self.meta_net(feats).view(len(captions), self.config.n_cond, -1)

    # ---------------------------------------------------------------- AMG: the vision prompts
    def vision_shallow(self) -> torch.Tensor:
        captions = self.captions()
        self._given = len(captions) if self.batch_captions is not None and self.config.captions == "given" else None
        self._scp = self.semantic_prompts(captions)
        self._vcp = self.vision_prompts[0].unsqueeze(0)
        return self._vcp

    def _check_batch(self, images: int) -> None:
        if self._given is not None and self._given != images:
            raise RuntimeError(f"mugcp: {self._given} captions were given for a batch of {images} images")

    def vision_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        if k >= self.config.depth:
            return None
        self._check_batch(x.shape[0])
        s = self.vision_prompts[k] + self.semantic_to_vision(self._scp)
        image = x[:, : slots.start]
        if self.guidance is None:
            vcp = s + image.mean(dim=1, keepdim=True)
        else:
            vcp = self.guidance(s, image, block.ln_1)
        self._vcp = vcp
        return vcp

    # ---------------------------------------------------------------- MPF: the text prompts
    def fused_tokens(self, scp: torch.Tensor, vcp: torch.Tensor) -> torch.Tensor:
        """(B|1, m, d_t): SCP + W_vt VCP."""
        return scp + self.vision_to_text(vcp.float())

    def text_shallow(self) -> torch.Tensor:
        """Without an image: the context and the empty caption's SCP fused with VCP_0."""
        return torch.cat([self.ctx, self.fused_tokens(self.semantic_prompts([""]), self.vision_prompts[:1])[0]])

    def conditional_context(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, n_ctx + m, d_t): each image's text context from the SCP and VCP of its image pass."""
        if self._scp is None or self._vcp is None:
            raise RuntimeError("mugcp: the text prompts are built from the image pass; encode the images first")
        b = image_features.shape[0]
        self._check_batch(b)
        if self._scp.shape[0] not in (1, b) or self._vcp.shape[0] not in (1, b):
            raise RuntimeError(f"mugcp: {b} image features, but the last image pass had {self._vcp.shape[0]} images")
        fused = self.fused_tokens(self._scp, self._vcp).expand(b, -1, -1)
        return torch.cat([self.ctx.unsqueeze(0).expand(b, -1, -1), fused], dim=1)
