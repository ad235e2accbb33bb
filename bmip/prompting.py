"""The one prompted forward pass over open_clip's own (batch-first) modules, shared by every method.

Text: [SOS, learnable context, rest of the prompt prefix, class tokens, ".", EOT]. The sequence is
cut to the longest tokenised prompt: the mask is causal and pooling reads the EOT token, so the
padding after the longest EOT never influences a feature (identical result, several times faster).

Vision: [CLS, patches, prompt tokens]; prompts are appended after the positional embedding and
before `ln_pre` (as in MaPLe/BMIP), and dropped again before open_clip's own pooling.

A regulariser (`<base>+promptsrc`, `<base>+coprompt`) may adapt both towers' output features
before normalisation, and add loss terms that may read further augmented views of the images.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

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


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, slots: Slots, deep: DeepHook) -> torch.Tensor:
    """Run transformer blocks, letting `deep` replace the prompt slots before each block k >= 1."""
    end = slots.start + slots.length
    for k, block in enumerate(blocks):
        if k and slots.length:
            prompts = deep(k, block, x, slots)
            if prompts is not None:
                prompts = prompts.to(x.dtype).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, : slots.start], prompts, x[:, end:]], dim=1)
        x = block(x, attn_mask=slots.attn_mask)
    return x


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
        if self.regularizer is not None:
            self.regularizer.set_classnames(self)

    def train(self, mode: bool = True) -> "PromptedCLIP":
        super().train(mode)
        self.clip.eval()  # the backbone is frozen: no dropout or norm statistics ever change
        return self

    @property
    def frozen_image_tower(self) -> bool:
        """True when the image features are the frozen backbone's: no vision prompt and no image
        adapter (zero-shot CLIP, CoOp, CoCoOp, deep language prompting). Their evaluations share
        one cached pass per test set (bmip.engine.features)."""
        return self.method.vision_tokens == 0 and not (self.regularizer is not None and self.regularizer.adapts_image)

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
        x = x + clip.positional_embedding[:length].to(dtype)
        slots = Slots(start=1, length=n, attn_mask=clip.attn_mask[:length, :length], eot=eot)
        x = run_blocks(clip.transformer.resblocks, x, slots, method.text_deep)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
        x = x.view(-1, len(self.classnames), x.shape[-1]) if batched else x
        return x if self.regularizer is None else self.regularizer.adapt_text(x)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features, with the method's vision prompts."""
        visual, method = self.clip.visual, self.method
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
        x = run_blocks(visual.transformer.resblocks, x, slots, method.vision_deep)
        pooled, _ = visual._pool(x[:, :n_content])
        x = pooled @ visual.proj if visual.proj is not None else pooled
        return x if self.regularizer is None else self.regularizer.adapt_image(x)

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
        return self.clip.logit_scale.exp()

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
        loss = F.cross_entropy(logits.float(), labels)
        if self.regularizer is not None:
            loss = loss + self.regularizer.loss(self, images, image, text, logits, views)
        return loss, logits

    def train_transforms(self, size: int) -> list[Callable]:
        """One training augmentation per view of an image: the first view is classified, the others
        (if any) go to the regulariser's loss."""
        if self.regularizer is not None:
            return self.regularizer.train_transforms(size)
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
