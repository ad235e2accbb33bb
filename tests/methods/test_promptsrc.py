"""PromptSRC's frozen text targets: built only when the training loss needs them, per class set."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from bmip.methods import build_model
from tests.shared import CLASSNAMES


def _ensemble(model, names):
    clip, tokenizer = model.clip, model.backbone.tokenizer
    names = [n.replace("_", " ") for n in names]
    with torch.no_grad():
        feats = torch.stack([clip.encode_text(tokenizer([t(c) for c in names])).float()
                             for t in OPENAI_IMAGENET_TEMPLATES]).mean(0)
    return F.normalize(feats, dim=-1)


def test_targets_are_lazy_and_follow_the_class_set(tiny_backbone):
    model = build_model(tiny_backbone, "bmip+promptsrc", CLASSNAMES[:3], options={"depth": 3})
    src = model.regularizer
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32), model.text_features())
    assert src._fixed_text is None  # evaluation never pays the 80 template passes
    images = torch.randn(2, 3, 32, 32)
    model.train()
    model.loss(images, torch.tensor([0, 2]))[0].backward()
    assert torch.allclose(src._fixed_text, _ensemble(model, CLASSNAMES[:3]), atol=1e-5)
    model.set_classnames(CLASSNAMES[3:5])
    assert src._fixed_text is None
    assert torch.allclose(src.fixed_text(model), _ensemble(model, CLASSNAMES[3:5]), atol=1e-5)
