"""MuGCP (reconstructed from its abstract): AMG's cross-attentions and MPF's prompt by hand, captions
reaching the prompts, logits that depend on (image, caption, class) only, training, checkpoints, and
its parameter count at ViT-B/16."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bmip.checkpoint import load_model, save_checkpoint
from bmip.methods import MethodConfigError, build_model, reads_captions
from bmip.methods.mugcp import MuGCP, MuGCPConfig, MutualGuidance
from tests.shared import CLASSNAMES, adam_steps, random_images

CAPTIONS = ["a red thing on grass", "", "a blurry photo at night"]


def _model(backbone, classnames=CLASSNAMES, **options):
    torch.manual_seed(0)
    return build_model(backbone, "mugcp", classnames, options={"depth": 3, **options})


def _logits(model, images, captions):
    model.eval()
    model.method.batch_captions = list(captions)
    with torch.no_grad():
        return model(images)


def test_amg_cross_attentions_by_hand():
    torch.manual_seed(0)
    amg = MutualGuidance(width=6, rank=3)
    norm = torch.nn.LayerNorm(6)
    s, x = torch.randn(1, 2, 6), torch.randn(2, 5, 6)  # 2 semantic tokens (shared), 2 images of 5 tokens
    out = amg(s, x, norm)
    assert out.shape == (2, 2, 6)
    for b in range(2):
        hx = norm(x[b])
        read = torch.stack([
            sum(w * x[b, i] for i, w in enumerate(torch.softmax(
                torch.stack([amg.q_read(norm(s[0, j])) @ amg.k_read(hx[i]) / 3 ** 0.5 for i in range(5)]), 0)))
            for j in range(2)])
        hs = norm(s[0] + read)
        picks = torch.stack([torch.softmax(torch.stack([amg.q_pick(hx[i]) @ amg.k_pick(hs[j]) / 3 ** 0.5
                                                         for j in range(2)]), 0) for i in range(5)])  # (5, 2)
        region = torch.stack([(picks[:, j:j + 1] * x[b]).sum(0) / picks[:, j].sum() for j in range(2)])
        torch.testing.assert_close(out[b], s[0] + (read + region) / 2)


def test_vision_and_text_prompts_are_assembled_as_documented(tiny_backbone):
    model = _model(tiny_backbone)
    method = model.method
    assert method.text_tokens == 4 + 4 and method.vision_tokens == 4
    assert method.prompt_prefix == "a photo of a X X X X" and method.image_conditioned
    method.batch_captions = CAPTIONS
    with torch.no_grad():
        image = F.normalize(model.encode_image(random_images()), dim=-1)
        context = method.conditional_context(image)
        clip = tiny_backbone.clip
        feats = F.normalize(clip.encode_text(tiny_backbone.tokenizer(CAPTIONS)).float(), dim=-1)
        scp = method.meta_net(feats).view(3, 4, -1)
    torch.testing.assert_close(method._scp, scp)
    assert method._vcp.shape == (3, 4, tiny_backbone.vision_width)  # the last AMG block's (block depth-1)
    assert torch.equal(context[:, :4], method.ctx.expand(3, -1, -1))
    torch.testing.assert_close(context[:, 4:], scp + method.vision_to_text(method._vcp))
    # amg: false: VCP_k = P_k + W_sv SCP + the mean of the block's image tokens
    plain = _model(tiny_backbone, amg=False).method
    plain._scp = scp
    x = torch.randn(3, 10, tiny_backbone.vision_width)
    from bmip.methods.base import Slots

    vcp = plain.vision_deep(1, None, x, Slots(start=7, length=3))
    torch.testing.assert_close(vcp, plain.vision_prompts[1] + plain.semantic_to_vision(scp)
                               + x[:, :7].mean(1, keepdim=True))
    assert plain.vision_deep(3, None, x, Slots(start=7, length=3)) is None  # past depth: carried along


def test_each_images_caption_shapes_its_logits_and_empty_captions_ignore_them(tiny_backbone):
    images = random_images()
    model = _model(tiny_backbone)
    given = _logits(model, images, CAPTIONS)
    swapped = _logits(model, images, [CAPTIONS[2], CAPTIONS[1], CAPTIONS[0]])
    assert torch.equal(given[1], swapped[1]) and not torch.allclose(given[0], swapped[0])
    empty = _model(tiny_backbone, captions="empty")
    torch.testing.assert_close(_logits(empty, images, CAPTIONS), _logits(empty, images, ["x", "y", "z"]))
    torch.testing.assert_close(_logits(empty, images, CAPTIONS), _logits(model, images, [""] * 3))
    _logits(_model(tiny_backbone, amg=False), images, CAPTIONS)


def test_a_logit_depends_on_its_image_caption_and_class_only(tiny_backbone):
    images = random_images(1, 4)
    captions = [*CAPTIONS, "a shape"]
    model = _model(tiny_backbone)
    assert model.method.label_space_independent and reads_captions("mugcp") and reads_captions("mugcp@empty")
    every = _logits(model, images, captions)
    torch.testing.assert_close(_logits(model, images[1:3], captions[1:3]), every[1:3])  # other batch-mates
    model.set_classnames(CLASSNAMES[1:4])
    torch.testing.assert_close(_logits(model, images, captions), every[:, 1:4])  # other label space


def test_captions_not_matching_the_batch_are_refused(tiny_backbone):
    model = _model(tiny_backbone)
    with pytest.raises(RuntimeError, match="2 captions were given for a batch of 3 images"):
        _logits(model, random_images(), CAPTIONS[:2])
    with pytest.raises(RuntimeError, match="1 captions were given for a batch of 3 images"):
        _logits(_model(tiny_backbone, depth=1), random_images(), CAPTIONS[:1])
    with pytest.raises(MethodConfigError, match="captions='none'"):
        _model(tiny_backbone, captions="none")


def test_the_loss_decreases_and_every_tensor_learns(tiny_backbone):
    model = _model(tiny_backbone)
    images, labels = random_images(1, 5), torch.arange(5)
    model.method.batch_captions = [*CAPTIONS, "a", "b"]
    before = {k: v.clone() for k, v in model.learnable_state().items()}
    first = model.loss(images, labels)[0].item()
    adam_steps(model, images, labels, steps=5)
    assert model.loss(images, labels)[0].item() < first
    assert all(not torch.equal(before[k], v) for k, v in model.learnable_state().items())


def test_checkpoint_round_trip(tiny_backbone, tmp_path):
    model = _model(tiny_backbone, amg=True)
    with torch.no_grad():
        for p in model.method.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(tmp_path / "prompts.safetensors", model, {"config_sha256": "x"})
    loaded = load_model(tmp_path / "prompts.safetensors", tiny_backbone, expect_method="mugcp")
    images = random_images()
    torch.testing.assert_close(_logits(loaded, images, CAPTIONS), _logits(model, images, CAPTIONS))


def test_parameter_count_at_vit_b16():
    """ctx 4x512 + P 9x4x768 + meta-net 512-32-2048 + W_sv, W_vt (512<->768) + AMG 4 x (768->64)."""
    backbone = SimpleNamespace(text_width=512, vision_width=768, embed_dim=512, vision_layers=12, text_layers=12,
                               n_tokens=lambda s: len(s.split()), word_embeddings=lambda s: torch.zeros(len(s.split()), 512))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(MuGCP(backbone, MuGCPConfig())) == 1_098_272
    assert count(MuGCP(backbone, MuGCPConfig(amg=False))) == 1_098_272 - 196_864
