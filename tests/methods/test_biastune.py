"""Bias tuning: zero-shot CLIP at step 0, IVLP's parameter count, and biases that do train."""
from __future__ import annotations

import pytest
import torch

from bmip.methods import build_model
from tests.shared import CLASSNAMES


def _count(model) -> int:
    return sum(p.numel() for _, p in model.named_learnable_parameters())


def test_step_zero_is_zero_shot_clip_exactly(tiny_backbone):
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    template = "a photo of a {}, a type of thing."
    biased = build_model(tiny_backbone, "biastune", CLASSNAMES, template=template).eval()
    zero = build_model(tiny_backbone, "zsclip", CLASSNAMES, template=template).eval()
    with torch.no_grad():
        assert torch.equal(biased(images), zero(images))
        # the biased path is the one taken: non-zero biases change the logits (random vectors: a
        # constant one would vanish in the next LayerNorm)
        generator = torch.Generator().manual_seed(1)
        biased.method.vision_biases.data[0, 0] = torch.randn(tiny_backbone.vision_width, generator=generator)
        biased.method.text_biases.data[1, 1] = torch.randn(tiny_backbone.text_width, generator=generator)
        assert not torch.allclose(biased(images), zero(images))


@pytest.mark.parametrize("depth", [1, 4, 12])
def test_parameter_count_equals_ivlp_at_the_same_depth_and_two_tokens(tiny_backbone, depth):
    ivlp = build_model(tiny_backbone, "ivlp", CLASSNAMES, options={"text_depth": depth, "vision_depth": depth})
    biased = build_model(tiny_backbone, "biastune", CLASSNAMES, options={"text_depth": depth, "vision_depth": depth})
    assert ivlp.method.text_tokens == ivlp.method.vision_tokens == 2
    assert _count(biased) == _count(ivlp) == 2 * depth * (tiny_backbone.text_width + tiny_backbone.vision_width)


def test_biases_get_gradients_only_in_their_blocks(tiny_backbone):
    torch.manual_seed(0)
    model = build_model(tiny_backbone, "biastune", CLASSNAMES, options={"text_depth": 2, "vision_depth": 3})
    loss, _ = model.loss(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    loss.backward()
    assert model.method.vision_biases.grad.shape == (3, 2, tiny_backbone.vision_width)
    assert model.method.vision_biases.grad.abs().sum(-1).min() > 0
    assert model.method.text_biases.grad.abs().sum(-1).min() > 0
    assert not model.method.text_is_fixed


def test_the_record_holds_the_bias_norm_relative_to_the_residual_stream(tiny_backbone):
    from bmip.engine import mechanism

    model = build_model(tiny_backbone, "biastune", CLASSNAMES, options={"text_depth": 2, "vision_depth": 3}).eval()
    model.method.vision_biases.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), mechanism.recording(model) as record:
        model(images)
    assert list(record["vision"]["blocks"]) == ["0", "1", "2"] and list(record["text"]["blocks"]) == ["0", "1"]
    vision = record["vision"]["blocks"]["1"]["bias_ratio"]["after_attention"]
    assert vision["n"] == 2 and vision["mean"] > 0
    assert record["text"]["blocks"]["0"]["bias_ratio"]["after_mlp"]["mean"] == 0.0  # text biases are still zero


def test_its_image_tower_is_not_frozen_unless_it_has_no_vision_biases(tiny_backbone):
    """No vision prompt positions, but vectors in the vision blocks: its evaluation must run the
    image tower, not read the cached frozen features (bmip.engine.features)."""
    assert not build_model(tiny_backbone, "biastune", CLASSNAMES).frozen_image_tower
    assert build_model(tiny_backbone, "biastune", CLASSNAMES, options={"vision_depth": 0}).frozen_image_tower
