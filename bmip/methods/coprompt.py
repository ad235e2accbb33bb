"""CoPrompt's consistency regularisation on top of BMIP, MaPLe or IVLP (Roy & Etemad, ICLR 2024).

`maple+coprompt` is CoPrompt as released (ShuvenduRoy/CoPrompt, MIT). What it adds to a base:

* two residual adapters on the towers' output features, before normalisation, in training and
  evaluation: f = 0.1·A_img(f) + 0.9·f, g = 0.2·A_txt(g) + 0.8·g, with A(x) = ReLU(W2·ReLU(W1·x)),
  W1: d -> d/4, W2: d/4 -> d, no biases (learnable, saved in the checkpoint);
* each training image comes in two independently RandAugment-ed views (the data loader makes them,
  `train_transforms`; option `augmentation: crop_flip` draws both with CoOp's crop + flip instead):
  view 1 goes through the prompted model, view 2 through the frozen CLIP;
* loss = CE + weight · [(1 − mean_c cos(g_c, t_c)) + (1 − mean_b cos(f_b, f̃_b))], where t is the
  frozen text features of one description per class, the description's position drawn uniformly
  at every step, and f̃ the frozen image features of view 2.

The description features are computed once per (frozen backbone, class set, description source)
and shared by the seeds of one process. The draw uses torch's global generator, which training
reseeds every epoch with the augmentation, so a resumed run draws what an uninterrupted one does
(the release draws with Python's `random`). A class with fewer sentences than others repeats its
list (position j reads sentence j mod n); CoPrompt's files give every class the same number.
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bmip.backbone import Backbone
from bmip.data import ClassDescriptions, Dataset, class_descriptions
from bmip.data.descriptions import template_descriptions
from bmip.data.images import randaugment_transform, train_transform
from bmip.methods.errors import MethodConfigError
from bmip.methods.base import Regularizer
from bmip.prompting import PromptedCLIP, text_pass

log = logging.getLogger(__name__)


@dataclass
class CoPromptConfig:
    weight: float = 1.0  # W: weight of the two consistency terms
    image_ratio: float = 0.1  # adapter share of the image features
    text_ratio: float = 0.2  # adapter share of the text features
    reduction: int = 4  # adapter bottleneck: embed_dim / reduction
    # How both views are augmented: "randaugment" (the release) or "crop_flip" (CoOp's random
    # resized crop + flip, what every other method trains with), for data whose classes
    # RandAugment's colour operations would change (miniworld: a class is a colour, pattern, shape).
    augmentation: str = "randaugment"


class Adapter(nn.Sequential):
    """CLIP-Adapter's bottleneck MLP without biases: ReLU(W2·ReLU(W1·x))."""

    def __init__(self, dim: int, reduction: int):
        super().__init__(
            nn.Linear(dim, dim // reduction, bias=False),
            nn.ReLU(),
            nn.Linear(dim // reduction, dim, bias=False),
            nn.ReLU(),
        )


# `augmentation` option -> the transform both views are drawn with.
AUGMENTATIONS: dict[str, Callable[[int], Callable]] = {"randaugment": randaugment_transform, "crop_flip": train_transform}

# Frozen description features per backbone (weakly held), class set and description source.
_DESCRIPTION_FEATURES: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()


class CoPrompt(Regularizer):
    """Adapters on both towers, and consistency with the frozen CLIP on view 2 and on descriptions."""

    name = "coprompt"
    Config = CoPromptConfig
    adapts_image = True  # its image adapter: the image features are not the frozen tower's

    def __init__(self, backbone: Backbone, config: CoPromptConfig):
        super().__init__(backbone, config)
        for key in ("image_ratio", "text_ratio"):
            if not 0 <= getattr(config, key) <= 1:
                raise MethodConfigError(f"method 'coprompt': {key}={getattr(config, key)} must lie in 0..1")
        if config.augmentation not in AUGMENTATIONS:
            raise MethodConfigError(f"method 'coprompt': augmentation={config.augmentation!r}; choose one of {sorted(AUGMENTATIONS)}")
        dim = backbone.embed_dim
        if not 1 <= config.reduction <= dim:
            raise MethodConfigError(f"method 'coprompt': reduction={config.reduction} must lie in 1..{dim} (embed dim)")
        self.image_adapter = Adapter(dim, config.reduction)
        self.text_adapter = Adapter(dim, config.reduction)
        self.descriptions: ClassDescriptions | None = None
        self._targets: torch.Tensor | None = None

    def prepare(self, dataset: Dataset, data_root: str | Path | None) -> dict[str, Any]:
        self.descriptions = class_descriptions(dataset, data_root)
        self._targets = None
        return {"descriptions": self.descriptions.record}

    def set_classnames(self, model: PromptedCLIP) -> None:
        self._targets = None

    def train_transforms(self, size: int) -> list[Callable]:
        view = AUGMENTATIONS[self.config.augmentation](size)
        return [view, view]

    def adapt_image(self, features: torch.Tensor) -> torch.Tensor:
        r = self.config.image_ratio
        return r * self.image_adapter(features) + (1 - r) * features

    def adapt_text(self, features: torch.Tensor) -> torch.Tensor:
        r = self.config.text_ratio
        return r * self.text_adapter(features) + (1 - r) * features

    def text_targets(self, model: PromptedCLIP) -> torch.Tensor:
        """Frozen, normalised description features, (descriptions per class, classes, embed_dim);
        computed when the loss first needs them (evaluation never does)."""
        if self._targets is None:
            descriptions = self.descriptions
            if descriptions is None:
                reason = "no training dataset was prepared (coprompt used outside `bmip train`)"
                log.warning("coprompt: %s; class descriptions fall back to the prompt template %r", reason, model.template)
                descriptions = template_descriptions(model.classnames, model.template, reason)
            self._targets = _description_features(model, descriptions)
        return self._targets

    def loss(
        self,
        model: PromptedCLIP,
        images: torch.Tensor,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logits: torch.Tensor,
        views: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        if not views:
            raise ValueError("coprompt's loss needs a second augmented view of the images (views=(view2,)); "
                             "`bmip train` loads it when the method asks for it")
        targets = self.text_targets(model)
        drawn = targets[int(torch.randint(len(targets), ()))]
        with torch.no_grad():
            frozen_image = F.normalize(model.clip.encode_image(views[0]).float(), dim=-1)
        text_term = 1 - F.cosine_similarity(text_features.float(), drawn, dim=-1).mean()
        image_term = 1 - F.cosine_similarity(image_features.float(), frozen_image, dim=-1).mean()
        return self.config.weight * (text_term + image_term)


@torch.no_grad()
def _description_features(model: PromptedCLIP, descriptions: ClassDescriptions) -> torch.Tensor:
    """Every distinct sentence of the class set through the frozen text tower once, in passes of
    `text_pass` sequences; row j holds sentence j (mod its count) of every class."""
    clip, names = model.clip, tuple(model.classnames)
    cache = _DESCRIPTION_FEATURES.setdefault(clip, {})
    key = (names, descriptions.sha256)
    if key not in cache:
        per_class = descriptions.per_class(names)
        rows = max(len(sentences) for sentences in per_class)
        texts = [sentences[j % len(sentences)] for j in range(rows) for sentences in per_class]
        unique = list(dict.fromkeys(texts))
        position = {text: i for i, text in enumerate(unique)}
        device = clip.logit_scale.device
        tokens = model.backbone.tokenizer(unique)
        feats = torch.cat([clip.encode_text(chunk.to(device)).float() for chunk in tokens.split(text_pass(device))])
        order = torch.tensor([position[text] for text in texts], device=device)
        cache[key] = F.normalize(feats, dim=-1)[order].view(rows, len(names), -1)
    return cache[key]
