"""CoPrompt: its loss by hand, the adapters' mixing, what trains, and its frozen description targets."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bmip.data import ClassDescriptions
from bmip.methods import build_model
from tests.shared import CLASSNAMES

NAMES = CLASSNAMES[:3]
# Class 2 has one sentence fewer: position 2 reads its sentence 2 mod 2 = 0.
SENTENCES = {
    "cat": ("a cat has whiskers.", "a cat is a small pet.", "cats sleep a lot."),
    "golden retriever": ("a golden retriever is a dog.", "a dog with golden fur.", "a friendly large dog."),
    "airplane": ("an airplane has wings.", "a plane in the sky."),
}


def _descriptions() -> ClassDescriptions:
    return ClassDescriptions(SENTENCES, {"origin": "test", "sha256": "test-descriptions"})


def _model(tiny_backbone, **coprompt):
    torch.manual_seed(0)
    model = build_model(tiny_backbone, "bmip+coprompt", NAMES, options={"depth": 3, "coprompt": coprompt})
    model.regularizer.descriptions = _descriptions()
    with torch.no_grad():  # trained-looking tensors: adapters with clearly non-zero outputs
        for p in model.learnable_parameters():
            p.add_(torch.randn_like(p).abs() * 0.1)
    return model


def _unadapted(model, encode, *args):
    """A tower's features without the adapters (the regulariser detached for one call)."""
    regulariser, model.regularizer = model.regularizer, None
    try:
        return encode(*args)
    finally:
        model.regularizer = regulariser


def test_loss_is_ce_plus_weighted_text_and_image_consistency(tiny_backbone):
    model = _model(tiny_backbone, weight=2.5)
    clip, tokenizer = model.clip, model.backbone.tokenizer
    gen = torch.Generator().manual_seed(1)
    view1, view2 = torch.randn(4, 3, 32, 32, generator=gen), torch.randn(4, 3, 32, 32, generator=gen)
    labels = torch.tensor([0, 2, 1, 2])
    model.train()
    with torch.no_grad():  # by hand, from the model's (adapted) towers and the frozen CLIP
        f = F.normalize(model.encode_image(view1), dim=-1)
        g = F.normalize(model.encode_text(), dim=-1)
        ce = F.cross_entropy(clip.logit_scale.exp() * f @ g.t(), labels)
        image_term = 1 - (f * F.normalize(clip.encode_image(view2), dim=-1)).sum(-1).mean()
    drawn = set()
    for seed in (0, 2):  # seeds whose first draw is position 2, then 0
        torch.manual_seed(seed)
        j = int(torch.randint(3, ()))  # the draw the loss makes from the same generator state
        drawn.add(j)
        with torch.no_grad():
            texts = [SENTENCES[n.replace("_", " ")][j % len(SENTENCES[n.replace("_", " ")])] for n in NAMES]
            text_term = 1 - (g * F.normalize(clip.encode_text(tokenizer(texts)), dim=-1)).sum(-1).mean()
        torch.manual_seed(seed)
        loss, _ = model.loss(view1, labels, [view2])
        assert text_term > 1e-3 and image_term > 1e-3
        assert torch.allclose(loss, ce + 2.5 * (text_term + image_term), atol=1e-5), (seed, j)
    assert drawn == {0, 2}  # position 2 reads the airplane's sentence 2 mod 2 = 0
    with pytest.raises(ValueError, match="second augmented view"):
        model.loss(view1, labels)


def test_adapters_mix_into_both_towers_in_training_and_evaluation(tiny_backbone):
    model = _model(tiny_backbone)
    cfg = model.regularizer.config
    assert (cfg.image_ratio, cfg.text_ratio, cfg.weight) == (0.1, 0.2, 1.0)  # the release's values
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        raw_image = _unadapted(model, model.encode_image, images)
        raw_text = _unadapted(model, model.encode_text)
        image = 0.1 * model.regularizer.image_adapter(raw_image) + 0.9 * raw_image
        text = 0.2 * model.regularizer.text_adapter(raw_text) + 0.8 * raw_text
        assert not torch.allclose(image, raw_image, atol=1e-4) and not torch.allclose(text, raw_text, atol=1e-4)
        expected = model.logit_scale() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
        for train in (True, False):
            model.train(train)
            assert torch.allclose(model.encode_image(images), image, atol=1e-6)
            assert torch.allclose(model.encode_text(), text, atol=1e-6)
            assert torch.allclose(model(images), expected, atol=1e-5)


def test_only_prompt_and_adapter_tensors_train_and_the_backbone_stays_frozen(tiny_backbone):
    model = _model(tiny_backbone)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    adapters = {f"regularizer.{k}" for k, _ in model.regularizer.named_parameters()}
    assert adapters == {f"regularizer.{t}_adapter.{i}.weight" for t in ("image", "text") for i in (0, 2)}
    assert trainable == {f"method.{k}" for k, _ in model.method.named_parameters()} | adapters
    frozen = {k: v.clone() for k, v in model.clip.state_dict().items()}
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # every tensor, as the release does
    images = torch.randn(4, 3, 32, 32)
    model.train()
    for _ in range(2):
        optimiser.zero_grad()
        model.loss(images, torch.tensor([0, 1, 2, 0]), [images.flip(-1)])[0].backward()
        optimiser.step()
    assert all(torch.equal(v, frozen[k]) for k, v in model.clip.state_dict().items())


def test_description_targets_are_lazy_cached_and_follow_the_class_set(tiny_backbone):
    model = _model(tiny_backbone)
    reg = model.regularizer
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert reg._targets is None  # evaluation never encodes descriptions
    targets = reg.text_targets(model)
    assert targets.shape == (3, 3, model.backbone.embed_dim)
    assert torch.equal(targets[2, 2], targets[0, 2])  # airplane's position 2 = its sentence 0
    assert reg.text_targets(model) is targets
    model.set_classnames(NAMES[:2])
    assert reg._targets is None and reg.text_targets(model).shape[1] == 2
    model.set_classnames(NAMES)
    assert reg.text_targets(model) is targets  # per (backbone, class set, descriptions) cache
    model.set_classnames(["lighthouse"])
    with pytest.raises(Exception, match=r"no descriptions for 1 class\(es\): \['lighthouse'\]"):
        reg.text_targets(model)


def test_both_views_use_randaugment_unless_crop_flip_is_asked_for(tiny_backbone):
    from torchvision import transforms as T

    from bmip.methods import MethodConfigError

    released = _model(tiny_backbone).train_transforms(32)
    assert len(released) == 2 and all(isinstance(v.transforms[1], T.RandAugment) for v in released)
    assert (released[0].transforms[1].num_ops, released[0].transforms[1].magnitude) == (2, 10)
    cropped = _model(tiny_backbone, augmentation="crop_flip").train_transforms(32)
    assert len(cropped) == 2 and all(isinstance(v.transforms[0], T.RandomResizedCrop) for v in cropped)
    with pytest.raises(MethodConfigError, match="augmentation='jitter'"):
        _model(tiny_backbone, augmentation="jitter")
