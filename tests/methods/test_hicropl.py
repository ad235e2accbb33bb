"""HiCroPL: its forward against the released equations computed by hand, what trains in the paper's
method and in the release's write-back (official_compat), its fixed classifier, checkpoints, one-pass
scoring, and its parameter counts at ViT-B/16 against the release's."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bmip.checkpoint import load_model, save_checkpoint
from bmip.data import ClassDescriptions
from bmip.methods import MethodConfigError, build_model
from bmip.methods.hicropl import HiCroPL, HiCroPLConfig
from tests.shared import CLASSNAMES, random_images, train_steps

SENTENCES = {
    "cat": ("a cat has whiskers.", "a cat is a small pet.", "cats sleep a lot."),
    "golden retriever": ("a golden retriever is a dog.", "a dog with golden fur."),
    "airplane": ("an airplane has wings.", "a plane in the sky.", "a jet airliner."),
    "big red fire truck": ("a red truck with a ladder.",),
    "sea or lake": ("a large body of water.", "waves on the water.", "a lake.", "the sea."),
}


def _descriptions() -> ClassDescriptions:
    return ClassDescriptions(SENTENCES, {"origin": "test", "sha256": "hicropl-test-descriptions"})


def _model(backbone, trained: bool = True, **options):
    """The default recipe's options; `trained`: every learnable tensor moved off its initialisation,
    so that equal-at-init copies (visual prompts, proxies, LKPs) differ and a wrong index shows."""
    torch.manual_seed(0)
    model = build_model(backbone, "hicropl", CLASSNAMES, options=options)
    model.method.descriptions = _descriptions()
    if trained:
        gen = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for p in model.method.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


# ---------------------------------------------------------------- the released formulas, by hand
def _ln(x, ln):
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _mha(q, k, v, attn, mask=None):
    """nn.MultiheadAttention's arithmetic on (..., L, d) inputs, written out."""
    d, heads = q.shape[-1], attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    split = lambda t: t.unflatten(-1, (heads, d // heads)).transpose(-3, -2)  # noqa: E731
    qh, kh, vh = (split(F.linear(t, w[i * d : (i + 1) * d], b[i * d : (i + 1) * d])) for i, t in enumerate((q, k, v)))
    scores = qh @ kh.transpose(-1, -2) / (d // heads) ** 0.5
    if mask is not None:
        scores = scores + mask
    out = (scores.softmax(-1) @ vh).transpose(-3, -2).flatten(-2)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def _block(x, block, mask=None):
    h = _ln(x, block.ln_1)
    x = x + _mha(h, h, h, block.attn, mask)
    mlp = block.mlp
    return x + F.linear(F.gelu(F.linear(_ln(x, block.ln_2), mlp.c_fc.weight, mlp.c_fc.bias)), mlp.c_proj.weight, mlp.c_proj.bias)


def _lkp(query, tokens, pool):
    """AttentionPooling (:122-132): LN_2(q + MHA(LN_1 q, LN_1 S, LN_1 S))."""
    s = _ln(tokens, pool.ln_1)
    return _ln(query + _mha(_ln(query, pool.ln_1), s, s, pool.attn), pool.ln_2)


def _mapper(prompts, proxies, net):
    """CrossPromptAttention (:135-157)."""
    q = F.linear(prompts, net.linear_q.weight, net.linear_q.bias)
    k = F.linear(proxies, net.linear_k.weight, net.linear_k.bias)
    v = F.linear(proxies, net.linear_v.weight, net.linear_v.bias)
    q = q + _mha(_ln(q, net.ln_1), _ln(k, net.ln_1), _ln(v, net.ln_1), net.attn)
    h = F.linear(_ln(q, net.ln_2), net.ffn.c_fc.weight, net.ffn.c_fc.bias)
    return q + F.linear(h * torch.sigmoid(1.702 * h), net.ffn.c_proj.weight, net.ffn.c_proj.bias)


def _text_tower(clip, tokens, prompts=None):
    """Full 77-token sequences; T_0 after SOS, T_b replacing positions 1..n before block b."""
    x = clip.token_embedding.weight[tokens]
    n = prompts.shape[1] if prompts is not None else 0
    for b, block in enumerate(clip.transformer.resblocks):
        if prompts is not None and b < len(prompts):
            x = torch.cat([x[:, :1], prompts[b].expand(len(x), -1, -1), x[:, 1 + n :]], dim=1)
        if b == 0:
            x = x + clip.positional_embedding
        x = _block(x, block, clip.attn_mask)
    x = _ln(x, clip.ln_final)
    return x[torch.arange(len(x)), tokens.argmax(-1)] @ clip.text_projection


def _image_tower(clip, images, prompts=None):
    """V_0 appended after the patches before ln_pre, V_b replacing the last n tokens before block b."""
    v = clip.visual
    x = F.conv2d(images, v.conv1.weight, stride=v.conv1.stride).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(len(x), 1, -1), x], dim=1) + v.positional_embedding
    if prompts is not None:
        x = torch.cat([x, prompts[0].expand(len(x), -1, -1)], dim=1)
    x = _ln(x, v.ln_pre)
    for b, block in enumerate(v.transformer.resblocks):
        if prompts is not None and 1 <= b < len(prompts):
            x = torch.cat([x[:, : -prompts.shape[1]], prompts[b].expand(len(x), -1, -1)], dim=1)
        x = _block(x, block)
    return _ln(x[:, 0], v.ln_post) @ v.proj


def _reference(model, images, labels, fp16_classifier=False):
    """(logits, loss) of `CustomCLIP.forward` (:360-391) from the method's tensors and the frozen weights."""
    m, clip, tokenizer = model.method, model.clip, model.backbone.tokenizer
    c, n = m.cross_layer, m.text_tokens
    T, V = m.text_prompts, m.vision_prompts
    p = torch.cat([_lkp(m.text_proxies[i : i + 1], T[i], m.text_pooling[i]) for i in range(c)])
    r = torch.cat([_lkp(m.vision_proxies[j : j + 1], V[c + j], m.vision_pooling[j]) for j in range(m.depth - c)])
    vision = torch.cat([_mapper(V[:c].flatten(0, 1), p, m.text_to_vision).view(c, n, -1), V[c:]])
    text = torch.cat([T[:c], _mapper(T[c:].flatten(0, 1), r, m.vision_to_text).view(m.depth - c, n, -1)])
    names = [name.replace("_", " ") for name in model.classnames]
    tokens = tokenizer([" ".join(["X"] * n) + f" {name}." for name in names])
    fixed = torch.stack([F.normalize(F.normalize(_text_tower(clip, tokenizer(list(SENTENCES[name]))), dim=-1).mean(0), dim=0)
                         for name in names])
    zero_shot = F.normalize(_image_tower(clip, images), dim=-1)
    i = F.normalize(F.normalize(_image_tower(clip, images, vision), dim=-1) + zero_shot, dim=-1)
    entering = fixed.half().float() if fp16_classifier else fixed
    t = F.normalize(F.normalize(_text_tower(clip, tokens, text), dim=-1) + entering, dim=-1)
    logits = clip.logit_scale.exp() * i @ t.t()
    cos = torch.nn.CosineSimilarity(dim=1, eps=1e-7)
    loss = F.cross_entropy(logits, labels) + 12 * ((1 - cos(t, fixed).mean()) + (1 - cos(i, zero_shot).mean()))
    return logits, loss


def test_forward_and_loss_are_the_released_formulas(tiny_backbone):
    model = _model(tiny_backbone).train()
    images, labels = random_images(), torch.tensor([0, 4, 2])
    assert model.method.prompt_prefix == " ".join(["X"] * 16)  # CTX_INIT ignored at n_ctx 16, as released
    with torch.no_grad():
        logits, loss = _reference(model, images, labels)
        got_loss, got_logits = model.loss(images, labels)
        assert torch.allclose(got_logits, logits, atol=2e-5)
        assert torch.allclose(got_loss, loss, atol=2e-5)
        model.eval()
        assert torch.allclose(model(images), logits, atol=2e-5)  # evaluation: the same forward


def test_official_compat_first_forward_is_the_release_and_writes_the_mapped_prompts_back(tiny_backbone):
    model = _model(tiny_backbone, official_compat=True).eval()
    m, images = model.method, random_images()
    c = m.cross_layer
    with torch.no_grad():
        expected, _ = _reference(model, images, torch.zeros(3, dtype=torch.long), fp16_classifier=True)
        mapped_v = _mapper(m.vision_prompts[:c].flatten(0, 1), torch.cat(
            [_lkp(m.text_proxies[i : i + 1], m.text_prompts[i], m.text_pooling[i]) for i in range(c)]), m.text_to_vision)
        before_v, before_t = m.vision_prompts.clone(), m.text_prompts.clone()
        assert torch.allclose(model(images), expected, atol=2e-5)
    # The mapped values now are the parameters (:317, :340); the other layers are untouched, each
    # visual prompt its own copy (the release on CUDA).
    assert torch.allclose(m.vision_prompts[:c], mapped_v.view(c, 16, -1), atol=1e-6)
    assert torch.equal(m.vision_prompts[c:], before_v[c:]) and torch.equal(m.text_prompts[:c], before_t[:c])
    assert not torch.allclose(m.text_prompts[c:], before_t[c:])
    assert not m.label_space_independent and _model(tiny_backbone).method.label_space_independent


def test_initialisation_is_the_releases(tiny_backbone):
    m = _model(tiny_backbone, trained=False).method
    assert torch.equal(m.vision_prompts, m.vision_prompts[:1].expand_as(m.vision_prompts))  # one draw, D copies
    assert torch.equal(m.text_proxies, m.text_proxies[:1].expand_as(m.text_proxies))
    assert torch.equal(m.vision_proxies, m.vision_proxies[:1].expand_as(m.vision_proxies))
    for pools in (m.text_pooling, m.vision_pooling):  # deep copies of one LKP
        assert all(torch.equal(a, b) for pool in pools for a, b in zip(pool.parameters(), pools[0].parameters()))
    assert 0.015 < m.text_prompts.std() < 0.025 and 0.015 < m.vision_prompts.std() < 0.025  # N(0, 0.02)
    assert 0.8 < m.vision_proxies.std() < 1.2  # randn
    short = build_model(tiny_backbone, "hicropl", CLASSNAMES, options={"n_ctx": 4}).method
    assert short.prompt_prefix == "a photo of a"  # n_ctx <= 4 reads CTX_INIT (:181-189)
    assert torch.equal(short.text_prompts[0], tiny_backbone.word_embeddings("a photo of a")[:4])


def _gradients(model):
    model.train()
    model.loss(random_images(), torch.tensor([0, 1, 2]))[0].backward()
    return {k: p.grad for k, p in model.method.named_parameters()}


def test_the_paper_trains_mappers_and_proxies_the_release_only_the_prompts(tiny_backbone):
    paper = _gradients(_model(tiny_backbone))
    assert all(g is not None and g.abs().sum() > 0 for g in paper.values()), [k for k, g in paper.items() if g is None]
    released = _gradients(_model(tiny_backbone, official_compat=True))
    assert {k for k, g in released.items() if g is not None} == {"text_prompts", "vision_prompts"}


def test_official_compat_logits_drift_with_every_forward_the_papers_do_not(tiny_backbone):
    images = random_images()
    for compat in (False, True):
        model = _model(tiny_backbone, trained=False, official_compat=compat).eval()
        with torch.no_grad():
            first, second, third = (model(images) for _ in range(3))
        if compat:
            assert not torch.allclose(first, second, atol=1e-4) and not torch.allclose(second, third, atol=1e-5)
        else:
            assert torch.equal(first, second) and torch.equal(second, third)


@pytest.mark.parametrize("compat", [False, True])
def test_a_few_adam_steps_lower_the_loss(tiny_backbone, compat):
    model = _model(tiny_backbone, trained=False, official_compat=compat)
    optimiser = torch.optim.Adam(model.learnable_parameters(), lr=0.0025, eps=1e-3, weight_decay=5e-4)
    images, labels = random_images(3, 8), torch.arange(8) % len(CLASSNAMES)
    losses = train_steps(model, images, labels, optimiser, 8)
    assert all(torch.isfinite(p).all() for p in model.learnable_parameters())
    assert losses[-1] < losses[0] - 1e-3, losses


@pytest.mark.parametrize("compat", [False, True])
def test_checkpoints_round_trip(tiny_backbone, tmp_path, compat):
    model = _model(tiny_backbone, official_compat=compat).eval()
    images = random_images()
    with torch.no_grad():
        model(images)  # official_compat: a state some forwards away from the initialisation
    save_checkpoint(tmp_path / "prompts.safetensors", model)
    loaded = load_model(tmp_path / "prompts.safetensors", tiny_backbone).eval()
    loaded.method.descriptions = _descriptions()
    assert loaded.method.official_compat == compat
    assert all(torch.equal(a, b) for a, b in zip(model.learnable_state().values(), loaded.learnable_state().values()))
    with torch.no_grad():  # the same next forward (official_compat: the same write-back)
        assert torch.equal(model(images), loaded(images))


def test_one_pass_over_all_classes_equals_each_label_space_scored_on_its_own(tiny_backbone):
    """F rows depend only on their class, so base and novel columns of the all-class score matrix
    (bmip.engine.scoring) are each label space's own logits."""
    model = _model(tiny_backbone).eval()
    images = random_images(2, 6)
    with torch.no_grad():
        text = model.text_features()
        matrix = model.logits_for(F.normalize(model.encode_image(images), dim=-1), text)[1]
        everything = model.method.classifier(model)
        for columns in ([0, 1, 2], [3, 4], [4, 0]):
            model.set_classnames([CLASSNAMES[c] for c in columns])
            assert torch.allclose(model.method.classifier(model), everything[columns], atol=1e-6)
            own = model(images, model.text_features())
            assert torch.allclose(matrix[:, columns], own, atol=1e-5)
            assert torch.equal(matrix[:, columns].argmax(-1), own.argmax(-1))


def test_fixed_classifier_uses_the_datasets_descriptions_or_its_template(tiny_backbone):
    from bmip.data.descriptions import TEMPLATE_FALLBACK

    model = _model(tiny_backbone, trained=False)
    with torch.no_grad():  # the mean of each class's normalised description features, renormalised
        for name, row in zip(CLASSNAMES, model.method.classifier(model)):
            feats = F.normalize(model.clip.encode_text(model.backbone.tokenizer(list(SENTENCES[name.replace("_", " ")]))), dim=-1)
            assert torch.allclose(row, F.normalize(feats.mean(0), dim=0), atol=1e-6)
    toy = SimpleNamespace(name="no_such_dataset", classnames=CLASSNAMES, template="a drawing of a {}.")
    record = model.prepare(toy)
    assert record["hicropl"]["descriptions"]["origin"] == TEMPLATE_FALLBACK
    with torch.no_grad():
        fixed = model.method.classifier(model)
        zero_shot = F.normalize(model.clip.encode_text(model.backbone.tokenizer(
            [f"a drawing of a {n.replace('_', ' ')}." for n in CLASSNAMES])), dim=-1)
    assert torch.allclose(fixed, zero_shot, atol=1e-6)  # one description per class: the zero-shot classifier


def test_options_the_towers_cannot_take_are_refused_by_name(tiny_backbone):
    for options, message in (({"cross_layer": 12}, "cross_layer=12"), ({"cross_layer": 0}, "cross_layer=0"),
                             ({"depth": 13}, "depth=13"), ({"heads": 5}, "heads=5")):
        with pytest.raises(MethodConfigError, match=message):
            build_model(tiny_backbone, "hicropl", CLASSNAMES, options=options)


def test_parameter_counts_at_vit_b16_are_the_releases():
    """The learnable tensors at ViT-B/16's widths (768 vision, 512 text, 12 blocks), built without a
    CLIP: the counts of the released trainable set (`hicropl.py:444-456`)."""
    widths = SimpleNamespace(text_width=512, vision_width=768, text_layers=12, vision_layers=12, n_tokens=lambda text: 4)
    method = HiCroPL(widths, HiCroPLConfig())
    count = lambda *names: sum(p.numel() for k, p in method.named_parameters() if k.split(".")[0] in names)  # noqa: E731
    assert count("text_prompts", "vision_prompts") == 245_760
    assert count("text_proxies", "vision_proxies") == 7_680
    assert count("text_to_vision") == 8_466_432
    assert count("vision_to_text") == 4_202_496
    assert count("text_pooling") == 6_316_032
    assert count("vision_pooling") == 14_192_640
    assert sum(p.numel() for p in method.parameters()) == 33_431_040
