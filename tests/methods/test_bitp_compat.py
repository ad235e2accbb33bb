"""`bitp_compat`: the released BITP connectors, against their formulas written out from the release.

The reference below is `CustomCLIP.forward` of LAMDASZ-ML/BMIP's `trainers/bitp.py` and the
`ResidualAttentionBlock_BITP` / `VisionTransformer_BITP` forward of its `clip/model.py`, written
again here on the model's own tensors (fp32 instead of the release's fp16): the prompt lists each
connector builds, the blocks' list-length rule that decides which block takes which entry, and the
two towers around them. It shares no code with bmip.methods.bitp or bmip.prompting.
"""
import pytest
import torch
import torch.nn.functional as F

from bmip.checkpoint import load_model, save_checkpoint
from bmip.methods import MethodConfigError, build_model
from tests.shared import CLASSNAMES, adam_steps, random_images

CASES = [("joint", 1, 9), ("joint", 2, 9), ("add", 2, 9), ("add", 1, 4), ("atten", 2, 9), ("atten", 1, 9),
         ("exchange", 2, 9), ("exchange", 1, 3)]


def _model(backbone, connector, n_ctx=2, depth=9, name="bmip"):
    torch.manual_seed(0)
    model = build_model(backbone, name, CLASSNAMES, options={"bitp_compat": connector, "n_ctx": n_ctx, "depth": depth})
    with torch.no_grad():  # away from the small initial values, so that every term shows in the logits
        for p in model.method.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _atten(output_tensor, weight_tensor):
    """The release's Atten: softmax(output · weightᵀ, dim=1) · output."""
    return torch.softmax(output_tensor @ weight_tensor.T, dim=1) @ output_tensor


def released_prompts(method, connector, n, depth):
    """(text layer-0 context, vision layer-0 prompt, text deep list, vision deep list) as
    `MultiModalPromptLearner.forward` and `CustomCLIP.forward` build them, SHARE True/True."""
    ctx_t = method.ctx
    compound_text = [method.text_prompts[c] for c in range(depth - 1)] if depth > 1 else []
    ctx_v = method.vision_prompts[0] if hasattr(method, "vision_prompts") else None  # ctx_v[:N], every alias
    shared_ctx = method.proj_tv[0](ctx_t)  # proj_t(ctx_t)
    single_layer_t = method.proj_tv[1] if len(method.proj_tv) > 1 else None
    single_layer_v = method.proj_vt[0] if hasattr(method, "proj_vt") else None
    visual_deep = [single_layer_t(t) for t in compound_text] if single_layer_t else []  # deep_compound_prompts_vision_t
    text_v = [single_layer_v(ctx_v) for _ in compound_text] if single_layer_v else [None] * len(compound_text)
    text_v.append(ctx_t)  # the release appends ctx_t; no block ever reads it
    dt, dv = ctx_t.shape[-1], shared_ctx.shape[-1]
    if connector == "joint":
        text = [torch.stack([text_v[i], compound_text[i]], dim=0).view(2 * n, dt) if text_v[i] is not None else None
                for i in range(depth - 1)]
        vision = [torch.stack([ctx_v, visual_deep[i]], dim=0).view(2 * n, dv) for i in range(depth - 1)]
        shared_ctx = torch.stack([shared_ctx, ctx_v], dim=0).view(2 * n, dv)
    elif connector == "atten":
        text = [_atten(text_v[i], compound_text[i]) + compound_text[i] if text_v[i] is not None else None
                for i in range(depth - 1)]
        vision = [_atten(visual_deep[i], ctx_v) + ctx_v for i in range(depth - 1)]
        shared_ctx = _atten(shared_ctx, ctx_v) + ctx_v
    elif connector == "add":
        text = compound_text + text_v
        vision = [ctx_v] * (depth - 1) + visual_deep
        shared_ctx = shared_ctx + ctx_v
    else:  # exchange
        text = [method.exchange_t(torch.stack([text_v[i], compound_text[i]], dim=0).view(n, 2 * dt))
                if text_v[i] is not None else None for i in range(depth - 1)]
        vision = [method.exchange_v(torch.stack([ctx_v, visual_deep[i]], dim=0).view(n, 2 * dv))
                  for i in range(depth - 1)]
    return ctx_t, shared_ctx, text, vision


def released_schedule(text, vision, blocks):
    """Which block takes which entry: ResidualAttentionBlock_BITP replaces the prompt slots of block
    i >= 1 while the counter c (= i - 1) satisfies c <= len - 1 (vision) or c <= len - 2 (text)."""
    fed_v = {i: vision[i - 1] for i in range(1, blocks) if i - 1 <= len(vision) - 1}
    fed_t = {i: text[i - 1] for i in range(1, blocks) if i - 1 <= len(text) - 2}
    return fed_t, fed_v


def released_logits(model, images, connector, n):
    """The released towers (TextEncoder, VisionTransformer_BITP) with the released prompts; also what
    each block is fed."""
    method, clip = model.method, model.clip
    depth = method.depth
    slots = 2 * n if connector == "joint" else n  # bitp_length
    ctx_t, shared_ctx, text, vision = released_prompts(method, connector, n, depth)
    fed_t, fed_v = released_schedule(text, vision, len(clip.transformer.resblocks))

    embeds = model.token_embeds  # the class prompts "<prefix> <class>.", tokenised
    x = torch.cat([embeds[:, :1], ctx_t.expand(len(embeds), -1, -1), embeds[:, 1 + n:]], dim=1)
    x = x + clip.positional_embedding[: x.shape[1]]
    mask = clip.attn_mask[: x.shape[1], : x.shape[1]]
    for i, block in enumerate(clip.transformer.resblocks):
        if i in fed_t:
            x = torch.cat([x[:, :1], fed_t[i].expand(len(x), -1, -1), x[:, 1 + slots:]], dim=1)
        x = block(x, attn_mask=mask)
    x = clip.ln_final(x)[torch.arange(len(x)), model.eot]
    text_features = x @ clip.text_projection if not isinstance(clip.text_projection, torch.nn.Linear) \
        else clip.text_projection(x)

    visual = clip.visual
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.view(1, 1, -1).expand(len(x), -1, -1), x], dim=1)
    x = x + visual.positional_embedding
    x = visual.ln_pre(torch.cat([x, shared_ctx.expand(len(x), -1, -1)], dim=1))
    for i, block in enumerate(visual.transformer.resblocks):
        if i in fed_v:
            x = torch.cat([x[:, :-slots], fed_v[i].expand(len(x), -1, -1)], dim=1)
        x = block(x)
    image_features = visual.ln_post(x[:, 0]) @ visual.proj

    logits = clip.logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    return logits, fed_t, fed_v, shared_ctx


def _recorded(model, images):
    """Run the model, recording what its deep hooks feed each block, and its logits."""
    method, fed = model.method, {"text": {}, "vision": {}}

    def recording(tower, hook):
        def deep(k, block, x, slots):
            prompts = hook(k, block, x, slots)
            if prompts is not None:
                fed[tower][k] = prompts.detach()
            return prompts
        return deep

    method.text_deep, method.vision_deep = recording("text", method.text_deep), recording("vision", method.vision_deep)
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        del method.text_deep, method.vision_deep
    return logits, fed


@pytest.mark.parametrize("connector, n, depth", CASES, ids=lambda c: str(c))
def test_each_connector_computes_the_released_formula(tiny_backbone, connector, n, depth):
    model = _model(tiny_backbone, connector, n, depth)
    images = random_images(4)
    logits, fed = _recorded(model, images)
    with torch.no_grad():
        expected, fed_t, fed_v, shared_ctx = released_logits(model, images, connector, n)
        assert torch.allclose(model.method.vision_shallow(), shared_ctx, atol=1e-6)
    assert sorted(fed["vision"]) == sorted(fed_v) and sorted(fed["text"]) == sorted(fed_t)
    for k, prompts in fed_v.items():
        assert torch.allclose(fed["vision"][k], prompts, atol=1e-6), ("vision", k)
    for k, prompts in fed_t.items():
        assert torch.allclose(fed["text"][k], prompts, atol=1e-6), ("text", k)
    assert (logits - expected).abs().max() < 1e-4


def test_the_blocks_each_connector_feeds(tiny_backbone):
    """BMIPRS's configs at depth 9 on a 12-block model: text stops at D-2 but for `add`, whose
    concatenated lists reach blocks D..2D-2 (here up to 11) with the other tower's prompts."""
    for connector, text_blocks, vision_blocks in [("joint", 7, 8), ("atten", 7, 8), ("exchange", 7, 8),
                                                  ("add", 11, 11)]:
        _, fed = _recorded(_model(tiny_backbone, connector), random_images(4))
        assert sorted(fed["text"]) == list(range(1, text_blocks + 1)), connector
        assert sorted(fed["vision"]) == list(range(1, vision_blocks + 1)), connector


def test_joint_puts_the_foreign_prompt_first_on_text_and_keeps_the_prefix_word(tiny_backbone):
    method = _model(tiny_backbone, "joint", n_ctx=1).method
    assert method.text_tokens == method.vision_tokens == 2 and method.prompt_prefix == "a photo of a"
    foreign = method.proj_vt[0](method.vision_prompts[0])
    assert torch.equal(method.text_deep(1, None, None, None), torch.cat([foreign, method.text_prompts[0]]))
    layer0 = method.text_shallow()
    assert torch.equal(layer0[0], method.ctx[0])
    assert torch.equal(layer0[1], tiny_backbone.word_embeddings("a photo of a")[1])  # "photo", fixed
    assert torch.equal(method.vision_shallow(), torch.cat([method.proj_tv[0](method.ctx), method.vision_prompts[0]]))


def test_exchange_is_a_per_token_concatenation_only_for_one_token(tiny_backbone):
    for n in (1, 2):
        method = _model(tiny_backbone, "exchange", n_ctx=n).method
        own, foreign = method.vision_prompts[0], method.proj_tv[1](method.text_prompts[0])
        per_token = method.exchange_v(torch.cat([own, foreign], dim=-1))
        assert torch.equal(method.vision_deep(1, None, None, None), per_token) == (n == 1)


def test_only_the_tensors_a_connector_uses_are_created(tiny_backbone):
    common = {"ctx", "proj_tv.0.weight", "proj_tv.0.bias", "proj_tv.1.weight", "proj_tv.1.bias", "proj_vt.0.weight",
              "proj_vt.0.bias", "text_prompts", "vision_prompts"}
    for connector in ("joint", "add", "atten"):
        assert set(_model(tiny_backbone, connector).learnable_state()) == common, connector
    exchange = {"exchange_v.weight", "exchange_v.bias", "exchange_t.weight", "exchange_t.bias"}
    assert set(_model(tiny_backbone, "exchange").learnable_state()) == common | exchange
    method = _model(tiny_backbone, "atten").method
    assert method.vision_prompts.shape == (1, 2, tiny_backbone.vision_width)  # one shared V
    assert not any("gate" in name for name, _ in method.named_parameters())
    # depth 2: no text block is prompted (D-2 = 0), so no F_vt and no text exchange Linear
    assert set(_model(tiny_backbone, "exchange", depth=2).learnable_state()) == \
        common - {"proj_vt.0.weight", "proj_vt.0.bias"} | {"exchange_v.weight", "exchange_v.bias"}


def test_logits_do_not_depend_on_batch_mates(tiny_backbone):
    model = _model(tiny_backbone, "joint", n_ctx=1)
    a, b = random_images(1), random_images(2)
    b[0] = a[0]
    with torch.no_grad():
        assert torch.allclose(model(a)[0], model(b)[0], atol=1e-6)
    assert model.method.label_space_independent


@pytest.mark.parametrize("options, message", [
    ({"bitp_compat": "concat"}, r"option bitp_compat: unknown value 'concat'; choose one of \['joint', 'add'"),
    ({"bitp_compat": "joint", "official_compat": True}, "cannot be combined with official_compat: True"),
    ({"bitp_compat": "add", "aggregation": "sum"}, "cannot be combined with aggregation: 'sum'"),
    ({"bitp_compat": "atten", "directions": "text_to_vision"}, "cannot be combined with directions: 'text_to_vision'"),
    ({"bitp_compat": "exchange", "per_layer_projections": True}, "cannot be combined with per_layer_projections"),
])
def test_bad_combinations_are_refused_naming_the_option(tiny_backbone, options, message):
    with pytest.raises(MethodConfigError, match=message):
        build_model(tiny_backbone, "bmip", CLASSNAMES, options=options)


@pytest.mark.parametrize("connector", ["joint", "exchange"])
def test_checkpoint_round_trip(tiny_backbone, tmp_path, connector):
    model = _model(tiny_backbone, connector, n_ctx=1, name=f"bmip@bitp_{connector}")
    path = tmp_path / "prompts.safetensors"
    save_checkpoint(path, model)
    loaded = load_model(path, tiny_backbone, expect_method=f"bmip@bitp_{connector}")
    assert type(loaded.method).__name__ == "ReleasedBITP" and loaded.method.connector == connector
    images = random_images(4)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    for key, value in model.learnable_state().items():
        assert torch.equal(loaded.learnable_state()[key], value), key


@pytest.mark.parametrize("connector", ["joint", "add", "atten", "exchange"])
def test_two_training_steps_move_every_tensor(tiny_backbone, connector):
    model = _model(tiny_backbone, connector, depth=4)
    before = model.learnable_state()
    adam_steps(model, random_images(5, 6), torch.arange(6) % len(CLASSNAMES))
    after = model.learnable_state()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved == list(before), f"{connector}: tensors that never train: {sorted(set(before) - set(moved))}"
    # V trains as one alias per use, as the release's optimiser holds it: layer 0's ctx_v first
    aliases = model.learnable_parameters()[1]["params"]
    assert len(aliases) == (3 if connector == "exchange" else 4)
