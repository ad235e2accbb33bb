"""What every prompt method is: learnable tensors plus what enters each layer's prompt slots.

A method never runs the backbone itself. `bmip.prompting.PromptedCLIP` owns the one forward
pass over open_clip's modules and asks the method, layer by layer, for prompt tokens (this module
never imports that one: a regulariser's `model` is the PromptedCLIP it is attached to):

* text: `text_tokens` learnable positions right after SOS (they replace the first words of the
  prompt prefix, e.g. "a photo" in "a photo of a <class>.");
* vision: `vision_tokens` positions appended after the patch tokens, before `ln_pre`.

Layer 0 gets `text_shallow()` / `vision_shallow()`; block k >= 1 gets `text_deep(k, ...)` /
`vision_deep(k, ...)` just before it runs, or None to carry the slots along unchanged.

A method may instead insert tokens at a later block (`text_insert` / `vision_insert`, with
`insert_tokens`; MMRL): from then on the slots describe them and `*_deep` may replace them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bmip.backbone import Backbone
from bmip.methods.errors import MethodConfigError

if TYPE_CHECKING:
    from bmip.data import Dataset


@dataclass
class Slots:
    """Where a tower's prompt tokens sit and what a deep hook may need to read them."""

    start: int
    length: int
    attn_mask: torch.Tensor | None = None
    eot: torch.Tensor | None = None  # text: EOT index of every sequence


def insert_tokens(x: torch.Tensor, slots: Slots, at: int, tokens: torch.Tensor) -> tuple[torch.Tensor, Slots]:
    """`tokens` ((1|B, n, d), no positional embedding) inserted into the sequence `x` before position
    `at`, and the slots that describe the longer sequence: the new tokens become its prompt slots
    (for a tower that has none so far), the EOT index moves by n and a (causal, text) mask is rebuilt
    at the new width, as the released MMRL does."""
    n = tokens.shape[-2]
    x = torch.cat([x[:, :at], tokens.to(x.dtype).expand(x.shape[0], -1, -1), x[:, at:]], dim=1)
    mask = slots.attn_mask
    if mask is not None:
        width = x.shape[1]
        mask = torch.full((width, width), float("-inf"), dtype=mask.dtype, device=mask.device).triu_(1)
    eot = None if slots.eot is None else slots.eot + n * (slots.eot >= at)
    return x, Slots(start=at, length=n, attn_mask=mask, eot=eot)


def parse_config(cls: type, name: str, values: dict[str, Any] | None) -> Any:
    """Build a method's config dataclass, rejecting unknown keys by name."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MethodConfigError(f"method {name!r}: unknown option(s) {unknown}; known options: {sorted(known)}")
    return cls(**values)


def normal_prompts(*shape: int) -> nn.Parameter:
    """Prompt vectors initialised N(0, 0.02), as in CoOp/MaPLe."""
    return nn.Parameter(torch.randn(*shape) * 0.02)


def text_context(backbone: Backbone, n: int, init: str) -> tuple[nn.Parameter, str]:
    """Learnable text context and the prompt prefix it replaces.

    With n <= the number of tokens in `init`, the first n token embeddings of `init` become
    learnable and the rest of `init` stays as fixed tokens. Otherwise the context starts
    N(0, 0.02) behind an "X X ... X" placeholder prefix (CoOp's random initialisation).
    """
    if init and n <= backbone.n_tokens(init):
        return nn.Parameter(backbone.word_embeddings(init)[:n]), init
    return normal_prompts(n, backbone.text_width), " ".join(["X"] * n)


class PromptMethod(nn.Module):
    """Base class: no learnable tensors, no prompts (this alone is zero-shot CLIP)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    image_conditioned: ClassVar[bool] = False

    text_tokens: int = 0
    vision_tokens: int = 0
    prompt_prefix: str = "a photo of a"
    inserted_tokens: int = 0  # tokens `text_insert`/`vision_insert` add at a later block (MMRL)
    fixed_logit_scale: ClassVar[float | None] = None  # a constant instead of CLIP's exp(logit_scale)
    # A method that reads captions (the registry's `captions` trait, MuGCP): the captions of the images
    # of the next forward, in batch order, set by the engine (bmip.engine.runtime.give_captions).
    batch_captions: list[str] | None = None

    def __init__(self, backbone: Backbone, config: Any):
        super().__init__()
        self.config = config

    def prompt_template(self, dataset_template: str) -> str:
        """The class prompt, with `{}` for the class name."""
        return self.prompt_prefix + " {}."

    @property
    def label_space_independent(self) -> bool:
        """True when a logit depends only on (image, class): not on the image's batch-mates nor on
        the other classes. Then every label space of a test set is a choice of columns of one
        (images x all classes) score matrix, computed in one pass (bmip.engine.scoring)."""
        return True

    @property
    def text_is_fixed(self) -> bool:
        """True when text features depend on nothing learnable (they can be cached)."""
        return self.text_tokens == 0 and not self.inserted_tokens and not self.image_conditioned

    def optimizer_params(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """What the optimiser steps (torch's `params`: tensors, or parameter groups)."""
        return [p for p in self.parameters() if p.requires_grad]

    def text_shallow(self) -> torch.Tensor | None:
        return None

    def vision_shallow(self) -> torch.Tensor | None:
        return None

    def text_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        return None

    def vision_deep(self, k: int, block: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        return None

    def residual_biases(self, tower: str) -> "Callable[[int], tuple[torch.Tensor, torch.Tensor] | None] | None":
        """Bias tuning: a function of the block index giving the vectors added to the residual stream
        after its attention and after its MLP (None: not in that block), or None for no biases at all."""
        return None

    # Hooks of methods that insert tokens at a later block and score with a second image feature
    # (MMRL). The defaults change nothing.
    def text_insert(self, k: int, block: nn.Module, x: torch.Tensor,
                    slots: Slots) -> tuple[torch.Tensor, Slots] | None:
        """Before text block k: the sequence lengthened by new tokens and its slots (`insert_tokens`), or None."""
        return None

    def vision_insert(self, k: int, block: nn.Module, x: torch.Tensor,
                      slots: Slots) -> tuple[torch.Tensor, Slots] | None:
        """Before vision block k: the sequence lengthened by new tokens and its slots, or None."""
        return None

    def extra_image_features(self, visual: nn.Module, x: torch.Tensor, slots: Slots) -> torch.Tensor | None:
        """(B, V-1, E) further image features read from the vision tower's last hidden state `x`
        (MMRL: its representation tokens'), beside the class token's; None: the class token's only."""
        return None

    def combine_logits(self, logits: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
        """(B, C) logits from the (B, V, C) logits of the V image features; `trained` (C,) marks the
        classes the model was trained on. Each column must depend on its own class only."""
        raise NotImplementedError(f"{type(self).__name__} gives several image features: it must combine their logits")

    def classification_loss(self, model: nn.Module, image_features: torch.Tensor, text_features: torch.Tensor,
                            logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The classification term of the training loss: the cross-entropy of the logits (MMRL: one
        per image feature, weighted)."""
        return F.cross_entropy(logits.float(), labels)

    def train_transform(self, size: int) -> Callable | None:
        """The training augmentation of the method's release where it is not Dassl's default
        (MMRL: crop scale (0.5, 1)); None: `bmip.data.train_transform`."""
        return None

    # Hooks of methods that combine a tower's output with the frozen model's and add loss terms
    # (HiCroPL); `model` is the PromptedCLIP the method runs in. The defaults change nothing.
    def prepare(self, dataset: "Dataset", data_root: str | Path | None) -> dict[str, Any] | None:
        """Load what the method needs from the dataset it is trained or evaluated on (HiCroPL: its
        class descriptions); returns what provenance records."""
        return None

    def set_classnames(self, model: nn.Module) -> None:
        """A new class set: drop whatever was computed for the previous one."""

    def fuse_image(self, model: nn.Module, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The image tower's output features (before normalisation) as the logits use them."""
        return features

    def fuse_text(self, model: nn.Module, features: torch.Tensor) -> torch.Tensor:
        """The text tower's output features (before normalisation) as the logits use them."""
        return features

    def loss_terms(self, model: nn.Module, images: torch.Tensor, image_features: torch.Tensor,
                   text_features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        """Terms the method adds to the cross-entropy, from normalised features and the logits; None: none."""
        return None


class Regularizer(nn.Module):
    """Base class of the `<base>+<name>` regularisers: extra loss terms on top of a prompt method.

    A regulariser may also own learnable heads on the towers' output features (`adapt_image`,
    `adapt_text`: applied before normalisation, in training and evaluation) and ask the data loader
    for more augmented views of each training image (`train_transforms`: view 1 goes through the
    prompted model, the others reach `loss` as `views`).
    """

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, backbone: Backbone, config: Any):
        super().__init__()
        self.config = config

    adapts_image: ClassVar[bool] = False  # True when `adapt_image` changes the image features

    def prepare(self, dataset: "Dataset", data_root: str | Path | None) -> dict[str, Any] | None:
        """Load what the loss needs from the training dataset; returns what provenance records."""
        return None

    def set_classnames(self, model: nn.Module) -> None:
        """A new class set: drop whatever was computed for the previous one."""

    def train_transforms(self, size: int) -> list[Callable]:
        """One augmentation per view of a training image."""
        from bmip.data import train_transform

        return [train_transform(size)]

    def adapt_image(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def adapt_text(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logits: torch.Tensor,
        views: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        """The terms added to the cross-entropy, from normalised features and the logits."""
        raise NotImplementedError


def check_depth(name: str, depth: int, layers: int, what: str = "depth") -> None:
    if not 0 <= depth <= layers:
        raise MethodConfigError(f"method {name!r}: {what}={depth} must lie in 0..{layers} (the tower has {layers} blocks)")
