"""The one prompted forward pass over open_clip's own (batch-first) modules, shared by every method.

Text: [SOS, learnable context, rest of the prompt prefix, class tokens, ".", EOT]. The sequence is
cut to the longest tokenised prompt: the mask is causal and pooling reads the EOT token, so the
padding after the longest EOT never influences a feature (identical result, several times faster).

Vision: [CLS, patches, prompt tokens]; prompts are appended after the positional embedding and
before `ln_pre` (as in MaPLe/BMIP), and dropped again before open_clip's own pooling.

A regulariser (`<base>+promptsrc`, `<base>+coprompt`) may adapt both towers' output features
before normalisation, and add loss terms that may read further augmented views of the images.
A method may likewise fuse the towers' output features with the frozen model's and add loss terms
(`PromptMethod.fuse_image`, `fuse_text`, `loss_terms`: HiCroPL).

Bias tuning adds learnable vectors to the residual stream instead (`PromptMethod.residual_biases`):
such a block runs as open_clip's own two sub-layers with the vectors added after each.

MMRL inserts tokens after SOS/CLS at a later block instead of holding prompt slots from layer 0
(`PromptMethod.text_insert`/`vision_insert`: the slots then describe them), reads a second image
feature from the vision tower's last hidden state (`extra_image_features`: image features are then
(B, V, E), the class token's first) and scores each class column from the logits of both
(`combine_logits`, by whether the model was trained on that class: `PromptedCLIP.trained_columns`).

A probe (`PromptedCLIP.probe`, the mechanism record of `bmip.engine.mechanism`) sees every block's
input in this same pass and reads it, never changes it; `attention_terms` splits the pooled token's
attention output there into the part carried by the prompt positions and the rest (see its docstring).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.base import PromptMethod, Regularizer, Slots

# Sequences per text-tower pass when there are many (CoCoOp: images × classes; PromptSRC's
# targets: templates × classes). 256 was fastest on a 2-core CPU with mini-vit (CoCoOp: measured
# over 64..4096; PromptSRC: 256 vs 1024, 1.6x); accelerators want larger passes.
TEXT_PASS = {"cpu": 256}
TEXT_PASS_ACCELERATOR = 8192


def text_pass(device: torch.device) -> int:
    """How many text sequences to run through the text tower at once on `device`."""
    return TEXT_PASS.get(device.type, TEXT_PASS_ACCELERATOR)


DeepHook = Callable[[int, nn.Module, torch.Tensor, Slots], "torch.Tensor | None"]
# Before block k: the sequence lengthened by new tokens and the slots that now describe it, or None.
InsertHook = Callable[[int, nn.Module, torch.Tensor, Slots], "tuple[torch.Tensor, Slots] | None"]
Biases = Callable[[int], "tuple[torch.Tensor, torch.Tensor] | None"]


class BlockProbe(Protocol):
    """Sees a block's input (after its prompt slots were filled) in the one forward pass.

    A probe that records (the mechanism record) returns None. An intervention (`bmip analyze`'s
    causal checks, never in training or evaluation) returns the block's output to use instead.
    `reference_towers`: the towers ("vision", "text") whose unprompted zero-shot pass over the same
    inputs the probe also wants to see first, as tower "<tower>/zsclip"."""

    reference_towers: frozenset[str]

    def __call__(self, tower: str, k: int, block: nn.Module, x: torch.Tensor, slots: Slots,
                 biases: "tuple[torch.Tensor, torch.Tensor] | None") -> "torch.Tensor | None": ...


def biased_block(block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None,
                 biases: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """open_clip's ResidualAttentionBlock.forward with a vector added to the residual stream after
    the attention sub-layer and one after the MLP (bias tuning); zero vectors give block(x) exactly."""
    after_attn, after_mlp = biases
    x = x + block.ls_1(block.attention(q_x=block.ln_1(x), attn_mask=attn_mask)) + after_attn.to(x.dtype)
    return x + block.ls_2(block.mlp(block.ln_2(x))) + after_mlp.to(x.dtype)


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, slots: Slots, deep: DeepHook, *, tower: str = "",
               biases: Biases | None = None, probe: BlockProbe | None = None,
               insert: InsertHook | None = None) -> torch.Tensor:
    """Run transformer blocks, letting `deep` replace the prompt slots before each block k >= 1,
    `biases` add residual vectors in block k, and `probe` read each block's input.

    `insert` may lengthen the sequence before block k instead (MMRL's representation tokens,
    inserted at a later block: `PromptMethod.text_insert`); `slots` is then updated in place to
    describe the longer sequence (the new tokens' positions, the mask at the new width, the EOT
    index), so that later blocks, the probe and the caller's pooling read the right positions."""
    for k, block in enumerate(blocks):
        grown = insert(k, block, x, slots) if insert is not None else None
        if grown is not None:
            x, longer = grown
            vars(slots).update(vars(longer))
        elif k and slots.length:
            prompts = deep(k, block, x, slots)
            if prompts is not None:
                prompts = prompts.to(x.dtype).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, : slots.start], prompts, x[:, slots.start + slots.length :]], dim=1)
        added = biases(k) if biases is not None else None
        replaced = probe(tower, k, block, x, slots, added) if probe is not None else None
        if replaced is not None:
            x = replaced
        elif added is None:
            x = block(x, attn_mask=slots.attn_mask)
        else:
            x = biased_block(block, x, slots.attn_mask, added)
    return x


def pooled_positions(tower: str, x: torch.Tensor, slots: Slots) -> torch.Tensor:
    """(B, 1) index of the token each sequence's feature is read from: CLS (vision), EOT (text)."""
    if tower == "text":
        return slots.eot.view(-1, 1)
    return torch.zeros(x.shape[0], 1, dtype=torch.long, device=x.device)


@dataclass
class AttentionTerms:
    """One block's attention output at some query rows, split by where the attention goes.

    For head h, query q and keys/values of the block's input (original tokens j, prompt tokens i):
    the output o_h = sum_n a_n v_n (a = softmax over all positions) splits exactly into
    `prompt_term` sum_{i in prompts} a_i v_i  (= lambda * B in the decomposition, B the
    prompt-softmax-weighted prompt values) and `reweighted` sum_{j not prompts} a_j v_j
    (= (1 - lambda) * the attention renormalised over the original tokens).
    """

    weights: torch.Tensor  # (B, H, R, N) attention weights of the query rows
    prompt_share: torch.Tensor  # (B, H, R) lambda: attention mass on the prompt positions
    prompt_term: torch.Tensor  # (B, H, R, head_dim)
    reweighted: torch.Tensor  # (B, H, R, head_dim)
    out_proj: torch.Tensor  # (width, width) W_o: concat over heads -> the block's attention output

    def output_space(self, term: torch.Tensor) -> torch.Tensor:
        """W_o . concat_h(term_h): (B, R, width), the term as the residual stream receives it."""
        b, h, r, e = term.shape
        return term.permute(0, 2, 1, 3).reshape(b, r, h * e) @ self.out_proj.t()


def attention_terms(block: nn.Module, x: torch.Tensor, slots: Slots, rows: torch.Tensor) -> AttentionTerms:
    """Split a block's attention at query `rows` ((B, R) positions) into prompt term and the rest.

    In float32 from the block's own LayerNorm and projection weights. Linear algebra keeps it cheap
    (no keys or values per token are formed): q.k_j = (W_k^T q).h_j + q.b_k, and
    sum_j a_j v_j = W_v (sum_j a_j h_j) + (sum_j a_j) b_v, with h = ln_1(x); the cost is
    O(B.R.H.N.width) instead of the O(B.N.width^2) of a second attention pass. Autocast is off
    inside, so the statistics are float32 under a bf16 evaluation too.
    """
    with torch.autocast(x.device.type, enabled=False):
        return _attention_terms(block, x, slots, rows)


def _attention_terms(block: nn.Module, x: torch.Tensor, slots: Slots, rows: torch.Tensor) -> AttentionTerms:
    attn = block.attn
    width, heads = x.shape[-1], attn.num_heads
    head_dim = width // heads
    h = block.ln_1(x).float()
    weight = attn.in_proj_weight.float()
    bias = attn.in_proj_bias.float() if attn.in_proj_bias is not None else torch.zeros(3 * width, device=x.device)
    hq = torch.gather(h, 1, rows.unsqueeze(-1).expand(-1, -1, width))  # (B, R, d)
    q = F.linear(hq, weight[:width], bias[:width]).unflatten(-1, (heads, head_dim))  # (B, R, H, e)
    w_k = weight[width : 2 * width].view(heads, head_dim, width)
    q_k = torch.einsum("brhe,hed->bhrd", q, w_k)
    q_b = torch.einsum("brhe,he->bhr", q, bias[width : 2 * width].view(heads, head_dim))
    logits = (torch.einsum("bhrd,bnd->bhrn", q_k, h) + q_b.unsqueeze(-1)) * head_dim**-0.5
    if slots.attn_mask is not None:
        mask = slots.attn_mask.float()[rows]  # (B, R, N)
        logits = logits + mask.unsqueeze(1)
    weights = logits.softmax(dim=-1)
    is_prompt = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
    is_prompt[slots.start : slots.start + slots.length] = True
    on_prompts = weights * is_prompt
    share = on_prompts.sum(dim=-1)
    w_v = weight[2 * width :].view(heads, head_dim, width)
    b_v = bias[2 * width :].view(1, heads, 1, head_dim)

    def values(a: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
        mixed = torch.einsum("bhrn,bnd->bhrd", a, h)
        return torch.einsum("bhrd,hed->bhre", mixed, w_v) + mass.unsqueeze(-1) * b_v

    return AttentionTerms(weights=weights, prompt_share=share, prompt_term=values(on_prompts, share),
                          reweighted=values(weights - on_prompts, 1 - share),
                          out_proj=attn.out_proj.weight.float())


class PromptedCLIP(nn.Module):
    """A frozen open_clip CLIP, a prompt method, and the class names it classifies."""

    def __init__(
        self,
        backbone: Backbone,
        method: PromptMethod,
        classnames: list[str],
        template: str = "a photo of a {}.",
        regularizer: Regularizer | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.clip = backbone.clip
        self.method = method
        self.regularizer = regularizer
        self.probe: BlockProbe | None = None  # the mechanism record's hooks, set while recording
        # The class set a model is built for is the one it is trained on; its checkpoint keeps it
        # (bmip.checkpoint), so a model loaded for other classes knows which ones it was trained on.
        self.trained_classnames = list(classnames)
        self.set_classnames(classnames, template)

    # ------------------------------------------------------------------ class-dependent state
    def set_classnames(self, classnames: list[str], template: str | None = None) -> None:
        """(Re)build everything that depends on the class set: tokens, embeddings, caches."""
        if not classnames:
            raise ValueError("set_classnames needs at least one class name")
        self.classnames = list(classnames)
        self.template = template or getattr(self, "template", "a photo of a {}.")
        prompt = self.method.prompt_template(self.template)
        texts = [prompt.format(name.replace("_", " ")) for name in self.classnames]
        device = self.clip.logit_scale.device
        tokens = self.backbone.tokenizer(texts).to(device)
        eot = tokens.argmax(dim=-1)
        tokens = tokens[:, : int(eot.max()) + 1]
        with torch.no_grad():
            embeds = self.clip.token_embedding(tokens)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("eot", eot, persistent=False)
        self.register_buffer("token_embeds", embeds, persistent=False)
        self._fixed_text: torch.Tensor | None = None
        self.method.set_classnames(self)
        if self.regularizer is not None:
            self.regularizer.set_classnames(self)

    def prepare(self, dataset: Any, data_root: Any = None, training: bool = True) -> dict[str, Any]:
        """Let the method, and in training the regulariser (its terms are training losses), load what
        they need from the dataset the model is trained or evaluated on (class descriptions); what
        they return, by their names, for provenance."""
        parts = [self.method] + ([self.regularizer] if self.regularizer is not None and training else [])
        records = {getattr(part, "name", type(part).__name__): part.prepare(dataset, data_root) for part in parts}
        return {name: record for name, record in records.items() if record is not None}

    def train(self, mode: bool = True) -> "PromptedCLIP":
        super().train(mode)
        self.clip.eval()  # the backbone is frozen: no dropout or norm statistics ever change
        return self

    @property
    def frozen_image_tower(self) -> bool:
        """True when the image features are the frozen backbone's: no vision prompt and no image
        adapter (zero-shot CLIP, CoOp, CoCoOp, deep language prompting). Their evaluations share
        one cached pass per test set (bmip.engine.features). Bias tuning has no vision prompt
        positions but adds its vectors to the vision blocks: not frozen."""
        return (self.method.vision_tokens == 0 and self.method.residual_biases("vision") is None
                and not self.method.inserted_tokens
                and not (self.regularizer is not None and self.regularizer.adapts_image))

    def trained_columns(self) -> torch.Tensor:
        """(n_classes,) bool: which classes of the current set the model was trained on, by the name
        its prompt shows. A method may score them differently from the others (MMRL's two branches):
        a column's score still depends on its own class only (`PromptMethod.combine_logits`)."""
        trained = {name.replace("_", " ") for name in self.trained_classnames}
        return torch.tensor([name.replace("_", " ") in trained for name in self.classnames],
                            device=self.clip.logit_scale.device)

    # ------------------------------------------------------------------ towers
    def encode_text(self, context: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised text features of every class prompt.

        `context` overrides the method's shallow text prompt; a (B, N, d) context (CoCoOp)
        gives B × n_classes sequences, returned as (B, n_classes, embed_dim).
        """
        clip, method = self.clip, self.method
        batched = context is not None and context.dim() == 3
        if batched:
            # B × n_classes sequences in passes of about TEXT_PASS sequences: the same features,
            # with activations that stay in cache (on this CPU 2x faster than one pass at B=256).
            per_pass = max(1, text_pass(context.device) // len(self.classnames))
            if context.shape[0] > per_pass:
                return torch.cat([self.encode_text(part) for part in context.split(per_pass)])
        dtype = clip.transformer.get_cast_dtype()
        x, eot = self.token_embeds.to(dtype), self.eot
        n = method.text_tokens
        if n:
            ctx = method.text_shallow() if context is None else context
            n_cls, length, width = x.shape
            if batched:
                b = ctx.shape[0]
                x = x.unsqueeze(0).expand(b, -1, -1, -1)
                ctx = ctx.to(dtype).unsqueeze(1).expand(-1, n_cls, -1, -1)
                x = torch.cat([x[:, :, :1], ctx, x[:, :, 1 + n :]], dim=2).reshape(b * n_cls, length, width)
                eot = eot.repeat(b)
            else:
                ctx = ctx.to(dtype).unsqueeze(0).expand(n_cls, -1, -1)
                x = torch.cat([x[:, :1], ctx, x[:, 1 + n :]], dim=1)
        length = x.shape[1]
        if self.probe is not None and "text" in self.probe.reference_towers and n:
            # the same class prompts unprompted: the prompt positions keep the words they replace
            with torch.no_grad():
                plain = self.token_embeds.to(dtype) + clip.positional_embedding[:length].to(dtype)
                reference = Slots(start=1, length=n, attn_mask=clip.attn_mask[:length, :length], eot=self.eot)
                run_blocks(clip.transformer.resblocks, plain, reference, lambda *_: None, tower="text/zsclip",
                           probe=self.probe)
        x = x + clip.positional_embedding[:length].to(dtype)
        slots = Slots(start=1, length=n, attn_mask=clip.attn_mask[:length, :length], eot=eot)
        x = run_blocks(clip.transformer.resblocks, x, slots, method.text_deep, tower="text",
                       biases=method.residual_biases("text"), probe=self.probe, insert=method.text_insert)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), slots.eot]  # EOT, where an insert moved it
        x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
        x = x.view(-1, len(self.classnames), x.shape[-1]) if batched else x
        x = method.fuse_text(self, x)
        return x if self.regularizer is None else self.regularizer.adapt_text(x)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features, with the method's vision prompts.

        A probe that asks for a vision reference (`BlockProbe.reference_towers`) first sees the
        same images pass the unprompted tower, as tower "vision/zsclip"; its features are discarded."""
        if self.probe is not None and "vision" in self.probe.reference_towers:
            with torch.no_grad():
                self._vision_pooled(images, PromptMethod(self.backbone, None), "vision/zsclip")
        x, more = self._vision_pooled(images, self.method, "vision")
        x = x @ self.clip.visual.proj if self.clip.visual.proj is not None else x
        x = self.method.fuse_image(self, images, x)
        if more is not None:  # (B, V, E): the class token's feature first, then the method's own (MMRL)
            x = torch.cat([x.unsqueeze(1), more.to(x.dtype)], dim=1)
        return x if self.regularizer is None else self.regularizer.adapt_image(x)

    def _vision_pooled(self, images: torch.Tensor, method: PromptMethod,
                       tower: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The vision tower up to open_clip's pooling, with `method`'s prompts, and the method's
        further image features read from the last hidden state (`PromptMethod.extra_image_features`)."""
        visual = self.clip.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        n_content = x.shape[1]
        if method.vision_tokens:
            prompts = method.vision_shallow().to(x.dtype).expand(x.shape[0], -1, -1)
            x = torch.cat([x, prompts], dim=1)
        x = visual.ln_pre(x)
        slots = Slots(start=n_content, length=method.vision_tokens)
        x = run_blocks(visual.transformer.resblocks, x, slots, method.vision_deep, tower=tower,
                       biases=method.residual_biases("vision"), probe=self.probe, insert=method.vision_insert)
        more = method.extra_image_features(visual, x, slots)
        end = slots.start + slots.length  # pool over CLS and the patches: the prompt slots dropped
        content = x[:, : slots.start] if end == x.shape[1] else torch.cat([x[:, : slots.start], x[:, end:]], dim=1)
        pooled, _ = visual._pool(content)
        return pooled, more

    # ------------------------------------------------------------------ classification
    def text_features(self) -> torch.Tensor | None:
        """Normalised class text features, or None for image-conditioned methods (CoCoOp).

        Computed once per call (once per training step, once per evaluation); cached for
        methods whose text side has nothing learnable.
        """
        if self.method.image_conditioned:
            return None
        if self.method.text_is_fixed:
            if self._fixed_text is None:
                with torch.no_grad():
                    self._fixed_text = F.normalize(self.encode_text(), dim=-1)
            return self._fixed_text
        return F.normalize(self.encode_text(), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned scale exp(t), or the constant a method's release uses instead
        (`PromptMethod.fixed_logit_scale`: MMRL's literal 100)."""
        fixed = self.method.fixed_logit_scale
        return self.clip.logit_scale.exp() if fixed is None else self.clip.logit_scale.new_tensor(fixed)

    def features(
        self, images: torch.Tensor, text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised image features, normalised text features, logits) for a batch."""
        image = F.normalize(self.encode_image(images), dim=-1)
        text, logits = self.logits_for(image, text)
        return image, text, logits

    def logits_for(self, image: torch.Tensor, text: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised text features, logits) for normalised image features: what `features` does
        after the image tower, so that an evaluation can start from image features it computed once."""
        if self.method.image_conditioned:
            text = F.normalize(self.encode_text(self.method.conditional_context(image)), dim=-1)
            logits = self.logit_scale() * torch.einsum("be,bce->bc", image, text.to(image.dtype))
        else:
            text = self.text_features() if text is None else text
            logits = self.logit_scale() * image @ text.to(image.dtype).t()
            if image.dim() == 3:  # (B, V, C): the logits of each of a method's V image features
                logits = self.method.combine_logits(logits, self.trained_columns())
        if self.clip.logit_bias is not None:
            logits = logits + self.clip.logit_bias
        return text, logits

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the current class set; pass `text` to reuse precomputed text features."""
        return self.features(images, text)[2]

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, views: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss (cross-entropy plus the regulariser's terms, if any) and the logits.
        `views`: the further augmented views of `images` the regulariser asked for (CoPrompt's view 2)."""
        image, text, logits = self.features(images)
        loss = self.method.classification_loss(self, image, text, logits, labels)
        terms = self.method.loss_terms(self, images, image, text, logits)
        if terms is not None:
            loss = loss + terms
        if self.regularizer is not None:
            loss = loss + self.regularizer.loss(self, images, image, text, logits, views)
        return loss, logits

    def train_transforms(self, size: int) -> list[Callable]:
        """One training augmentation per view of an image: the first view is classified, the others
        (if any) go to the regulariser's loss."""
        if self.regularizer is not None:
            return self.regularizer.train_transforms(size)
        own = self.method.train_transform(size)  # MMRL: its release's crop scale
        if own is not None:
            return [own]
        from bmip.data import train_transform

        return [train_transform(size)]

    # ------------------------------------------------------------------ learnable state
    def named_learnable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """What training updates and a checkpoint stores: the method's tensors, then the
        regulariser's (CoPrompt's adapters) under "<regulariser name>."."""
        yield from self.method.named_parameters()
        if self.regularizer is not None:
            for key, p in self.regularizer.named_parameters():
                yield f"{self.regularizer.name}.{key}", p

    def learnable_parameters(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """What the optimiser steps: the method's learnable tensors (or its parameter groups where
        it needs them: official_compat BMIP's aliases of its shared visual prompt), then the
        regulariser's (CoPrompt's adapters)."""
        params = self.method.optimizer_params()
        extra = [p for p in self.regularizer.parameters() if p.requires_grad] if self.regularizer is not None else []
        if params and isinstance(params[0], dict):
            return [{**params[0], "params": [*params[0]["params"], *extra]}, *params[1:]]
        return [*params, *extra]

    def learnable_state(self) -> dict[str, torch.Tensor]:
        """A detached copy of every learnable tensor, by its `named_learnable_parameters` name."""
        return {key: p.detach().clone() for key, p in self.named_learnable_parameters()}

    def load_learnable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `learnable_state`; every tensor must be there and no other (strict)."""
        prefix = f"{self.regularizer.name}." if self.regularizer is not None else None
        own = {k: v for k, v in state.items() if prefix is None or not k.startswith(prefix)}
        self.method.load_state_dict(own, strict=True)
        if self.regularizer is not None:
            self.regularizer.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                             strict=True)
