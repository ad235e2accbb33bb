"""MMRL against the released formulas (yunncheng/MMRL: trainers/mmrl.py, clip/model_mmrl.py),
recomputed here with plain torch ops on the tiny model's own weights: the insertion of the
representation tokens after SOS/CLS, the EOT shift, the causal mask at the new width, f_rep, the
two inference branches and the loss; then training, checkpoints and the one-pass evaluation."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bmip.checkpoint import load_model, read_checkpoint, save_checkpoint
from bmip.engine.schedule import make_optimizer
from bmip.methods import build_model
from bmip.methods.errors import MethodConfigError
from bmip.methods.mmrl import MMRL, MMRLConfig
from bmip.recipes import recipe
from tests.shared import CLASSNAMES, random_images, train_steps

TEMPLATE = "a photo of a {}, a type of pet."
BASE, NOVEL = CLASSNAMES[:3], CLASSNAMES[3:]


def _model(backbone, classnames=BASE, **options):
    torch.manual_seed(0)
    model = build_model(backbone, "mmrl", classnames, TEMPLATE, options)
    with torch.no_grad():  # away from the initialisation, so that every tensor matters
        for p in model.learnable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


# ---------------------------------------------------------------- the released formulas, by hand
def _block(block, x, mask):
    """open_clip's pre-norm residual block from its weights: x + MHA(LN x), then + MLP(LN x)."""
    attn, width = block.attn, x.shape[-1]
    heads = attn.num_heads
    h = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
    q, k, v = (t.unflatten(-1, (heads, width // heads)).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if mask is not None:
        scores = scores + mask
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
    x = x + F.linear(out, attn.out_proj.weight, attn.out_proj.bias)
    h = F.layer_norm(x, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
    return x + block.mlp.c_proj(F.gelu(block.mlp.c_fc(h)))


def _causal(width):
    return torch.full((width, width), float("-inf")).triu(1)


def _tower(blocks, x, reps, first, causal):
    """The release's ResidualAttentionBlock loop: before 1-based layer `first` the rep tokens are
    inserted after x[:, 0]; before each later listed layer they replace positions 1..N; the text
    mask is causal over the current width."""
    n = reps[0].shape[0] if reps else 0
    counter = 0
    for layer, block in enumerate(blocks, start=1):
        if reps and layer >= first:
            prefix, suffix = x[:, :1], x[:, 1:] if layer == first else x[:, 1 + n :]
            x = torch.cat([prefix, reps[counter].expand(x.shape[0], -1, -1), suffix], dim=1)
            counter += 1
        x = _block(block, x, _causal(x.shape[1]) if causal else None)
    return x


def _released(model, images, classnames, template=TEMPLATE, rep=True):
    """(f_cls, f_rep, t) of the released model for `images` and `classnames`; rep=False: frozen CLIP."""
    clip, method = model.clip, model.method
    R = method.rep_tokens
    text_reps = [proj(R) for proj in method.r2t] if rep else []
    vision_reps = [proj(R) for proj in method.r2v] if rep else []
    first = method.config.rep_layers[0]
    # text: the full 77-token prompts (the release never cuts them), EOT index + N
    tokens = model.backbone.tokenizer([template.format(c.replace("_", " ")) for c in classnames])
    x = clip.token_embedding(tokens) + clip.positional_embedding
    x = _tower(clip.transformer.resblocks, x, text_reps, first, causal=True)
    x = F.layer_norm(x, (x.shape[-1],), clip.ln_final.weight, clip.ln_final.bias, clip.ln_final.eps)
    eot = tokens.argmax(dim=-1) + (R.shape[0] if rep else 0)
    t = x[torch.arange(len(classnames)), eot] @ clip.text_projection
    # vision: [CLS, patches] + positional, ln_pre, the blocks; ln_post per token
    visual = clip.visual
    patches = F.conv2d(images, visual.conv1.weight, stride=visual.conv1.stride).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(len(images), 1, -1), patches], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x)
    x = _tower(visual.transformer.resblocks, x, vision_reps, first, causal=False)
    ln = lambda y: F.layer_norm(y, (y.shape[-1],), visual.ln_post.weight, visual.ln_post.bias, visual.ln_post.eps)
    f_cls = ln(x[:, 0]) @ visual.proj
    f_rep = ln(x[:, 1 : 1 + R.shape[0]]).mean(dim=1) @ method.proj_rep if rep else None
    return f_cls, f_rep, t


def _released_logits(model, images, classnames):
    f_cls, f_rep, t = _released(model, images, classnames)
    n = lambda y: y / y.norm(dim=-1, keepdim=True)
    logits = 100.0 * n(f_cls) @ n(t).t()
    logits_rep = 100.0 * n(f_rep) @ n(t).t()
    alpha = model.method.config.alpha
    return logits, logits_rep, alpha * logits + (1 - alpha) * logits_rep


# ---------------------------------------------------------------- forward and branches
def test_forward_equals_the_released_formulas_on_the_trained_classes(tiny_backbone):
    model, images = _model(tiny_backbone), random_images(1, 4)
    with torch.no_grad():
        cls, rep, fusion = _released_logits(model, images, BASE)
        ours = model(images)
        features = F.normalize(model.encode_image(images), dim=-1)
    assert features.shape == (4, 2, tiny_backbone.embed_dim)  # (f_cls, f_rep) per image
    torch.testing.assert_close(ours, fusion, rtol=1e-4, atol=1e-4)  # trained classes: the fused logits
    assert not torch.allclose(cls, fusion, atol=1e-2) and not torch.allclose(rep, fusion, atol=1e-2)


def test_other_classes_get_the_class_token_branch_and_a_mixed_set_is_scored_per_column(tiny_backbone):
    model, images = _model(tiny_backbone), random_images(1, 4)
    with torch.no_grad():
        model.set_classnames(NOVEL)
        torch.testing.assert_close(model(images), _released_logits(model, images, NOVEL)[0], rtol=1e-4, atol=1e-4)
        mixed = [NOVEL[0], BASE[1], NOVEL[1], BASE[0]]
        model.set_classnames(mixed)
        cls, _, fusion = _released_logits(model, images, mixed)
        trained = torch.tensor([False, True, False, True])
        assert torch.equal(model.trained_columns(), trained)
        torch.testing.assert_close(model(images), torch.where(trained, fusion, cls), rtol=1e-4, atol=1e-4)


def test_the_rep_tokens_act_from_block_6_on_without_positional_embedding(tiny_backbone):
    """Changing the projections of layers 6..12 changes the features; nothing before block 5 sees
    them (a hook on block 4's output is the frozen CLIP's), and block 5 sees them after CLS."""
    model, images = _model(tiny_backbone), random_images(1, 2)
    seen = {}
    handles = [model.clip.visual.transformer.resblocks[k].register_forward_hook(
        lambda mod, args, kwargs, out, k=k: seen.__setitem__(k, (args[0] if args else kwargs["x"]).clone()),
        with_kwargs=True) for k in (4, 5)]
    try:
        with torch.no_grad():
            model.encode_image(images)
    finally:
        for h in handles:
            h.remove()
    n_patches = (32 // 8) ** 2
    assert seen[4].shape[1] == 1 + n_patches and seen[5].shape[1] == 1 + 5 + n_patches
    expected = model.method.r2v[0](model.method.rep_tokens).detach()
    torch.testing.assert_close(seen[5][:, 1:6], expected.expand(2, -1, -1))  # no positional embedding added


def test_the_loss_is_the_released_one(tiny_backbone):
    model, images, labels = _model(tiny_backbone, reg_weight=3.0), random_images(1, 4), torch.tensor([0, 1, 2, 1])
    model.train()
    loss, logits = model.loss(images, labels)
    with torch.no_grad():
        cls, rep, fusion = _released_logits(model, images, BASE)
        f_cls, _, t = _released(model, images, BASE)
        z_img, _, z_txt = _released(model, images, BASE, rep=False)
        cos = lambda a, b: F.cosine_similarity(F.normalize(a, dim=-1), F.normalize(b, dim=-1), dim=1).mean()
        expected = (0.7 * F.cross_entropy(cls, labels) + 0.3 * F.cross_entropy(rep, labels)
                    + 3.0 * (1 - cos(f_cls, z_img)) + 3.0 * (1 - cos(t, z_txt)))
    torch.testing.assert_close(logits.detach(), fusion, rtol=1e-4, atol=1e-4)  # training accuracy: fusion
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)


def test_the_logit_scale_is_the_literal_100(tiny_backbone):
    model = _model(tiny_backbone)
    assert model.logit_scale().item() == 100.0 != pytest.approx(model.clip.logit_scale.exp().item())


# ---------------------------------------------------------------- training and state
def test_released_recipe_steps_lower_the_loss_and_move_only_the_methods_tensors(tiny_backbone):
    model = _model(tiny_backbone)
    frozen = {k: v.clone() for k, v in model.clip.state_dict().items()}
    settings = {**recipe({"recipes": {}}, "base2novel", "mmrl"), "lr": 0.01}
    assert settings["optimizer"] == "adamw" and settings["weight_decay"] == 5e-4
    optimiser = make_optimizer(model.learnable_parameters(), settings)
    images, labels = random_images(1, 6), torch.tensor([0, 1, 2, 0, 1, 2])
    losses = train_steps(model, images, labels, optimiser, 8)
    assert losses[-1] < losses[0] - 1e-2, losses
    assert all(torch.equal(v, frozen[k]) for k, v in model.clip.state_dict().items())


def test_text_features_are_never_cached_and_the_tower_is_not_frozen(tiny_backbone):
    """The release caches the eval text and rep features and never invalidates them (its quirk M1);
    here every evaluation recomputes them from the current tensors."""
    model = _model(tiny_backbone)
    assert not model.method.text_is_fixed and not model.frozen_image_tower
    before = model.text_features().detach()
    with torch.no_grad():
        model.method.rep_tokens.add_(0.5)
    assert not torch.allclose(model.text_features(), before)


def test_checkpoint_round_trip_keeps_the_trained_classes(tiny_backbone, tmp_path):
    model, images = _model(tiny_backbone), random_images(1, 4)
    path = tmp_path / "prompts.safetensors"
    save_checkpoint(path, model)
    _, meta = read_checkpoint(path)
    assert meta["trained_classnames"] == BASE and meta["options"]["rep_layers"] == list(range(6, 13))
    loaded = load_model(path, tiny_backbone, classnames=CLASSNAMES)  # loaded for all classes
    assert loaded.trained_classnames == BASE
    model.set_classnames(CLASSNAMES)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    torch.manual_seed(5)  # loading does not depend on the RNG: proj_rep comes from the checkpoint
    again = load_model(path, tiny_backbone)
    assert again.classnames == BASE and again.trained_classnames == BASE
    with torch.no_grad():  # the text tower cuts its sequences at another length: float32 rounding apart
        torch.testing.assert_close(again(images), model(images)[:, :3], rtol=1e-5, atol=1e-5)


def test_one_pass_over_all_classes_equals_each_label_space_on_its_own(tiny_backbone):
    """The score matrix's columns for base, novel, and a mixed open-world space equal that space
    scored alone: a column's branch depends on its class only."""
    model, images = _model(tiny_backbone), random_images(1, 6)
    with torch.no_grad():
        model.set_classnames(CLASSNAMES)
        everything = model(images)
        for columns in ([0, 1, 2], [3, 4], [4, 0, 3], list(range(5))):
            model.set_classnames([CLASSNAMES[c] for c in columns])
            torch.testing.assert_close(model(images), everything[:, columns], rtol=1e-5, atol=1e-5)
    assert model.method.label_space_independent


def test_training_crops_use_the_released_scale(tiny_backbone):
    model = _model(tiny_backbone)
    (transform,) = model.train_transforms(32)
    crop = transform.transforms[0]
    assert crop.scale == (0.5, 1.0) and crop.size == (32, 32)


# ---------------------------------------------------------------- sizes and options
def _vit_b16(rep_dim):
    backbone = SimpleNamespace(text_width=512, vision_width=768, text_layers=12, vision_layers=12, embed_dim=512)
    return MMRL(backbone, MMRLConfig(rep_dim=rep_dim))


@pytest.mark.parametrize("rep_dim, released", [(512, 4_992_256), (2048, 18_762_496)])
def test_parameter_count_at_vit_b16_is_the_releases(rep_dim, released):
    method = _vit_b16(rep_dim)
    assert sum(p.numel() for p in method.parameters()) == released
    # R, 7 + 7 projections (deep copies: equal at init), proj_rep
    assert len(method.r2v) == len(method.r2t) == 7
    assert torch.equal(method.r2v[0].weight, method.r2v[6].weight)


@pytest.mark.parametrize("bad", [{"rep_layers": []}, {"rep_layers": [7, 6]}, {"rep_layers": [6, 13]},
                                 {"alpha": 1.5}, {"crop_scale": [0.9, 0.5]}, {"n_rep_tokens": 0}])
def test_impossible_options_are_refused_by_name(tiny_backbone, bad):
    with pytest.raises(MethodConfigError, match="mmrl"):
        build_model(tiny_backbone, "mmrl", BASE, options=bad)


def test_the_recipe_is_the_releases_with_its_per_dataset_weights():
    cfg = {"recipes": {}}
    base = recipe(cfg, "base2novel", "mmrl")
    assert {k: base[k] for k in ("optimizer", "lr", "weight_decay", "epochs", "batch_size", "warmup_epochs",
                                 "warmup_lr")} == {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4, "epochs": 10,
                                                   "batch_size": 4, "warmup_epochs": 1, "warmup_lr": 1e-5}
    assert base["options"] == {"n_rep_tokens": 5, "rep_layers": list(range(6, 13)), "rep_dim": 512, "alpha": 0.7,
                               "reg_weight": 1.0}
    weights = {"stanford_cars": 7, "fgvc_aircraft": 6, "sun397": 6, "dtd": 6, "food101": 5, "oxford_flowers": 4,
               "ucf101": 3, "imagenet": 0.5, "caltech101": 0.5, "oxford_pets": 0.2, "eurosat": 0.01}
    for dataset, weight in weights.items():
        assert recipe(cfg, "base2novel", "mmrl", dataset)["options"]["reg_weight"] == weight, dataset
    assert recipe(cfg, "base2novel", "mmrl", "eurosat")["options"]["rep_dim"] == 2048
    imagenet = recipe(cfg, "base2novel", "mmrl", "imagenet")
    assert (imagenet["epochs"], imagenet["batch_size"]) == (5, 32)
    source = recipe(cfg, "cross_dataset", "mmrl", "imagenet")  # cross_datasets_train.sh
    assert (source["epochs"], source["batch_size"], source["warmup_epochs"]) == (1, 32, 0)
    assert source["options"]["reg_weight"] == 0.2 and source["options"]["rep_dim"] == 512


def test_the_mechanism_record_starts_at_the_first_representation_layer(tiny_backbone):
    """MMRL's tokens enter at block rep_layers[0] - 1: its mechanism record holds the blocks from
    there on, which the audit's check expects (not every block from 0, as for a prompt from layer 0)."""
    from bmip.engine import mechanism

    model = build_model(tiny_backbone, "mmrl", CLASSNAMES, options={"rep_layers": [6, 9, 12]})
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with mechanism.recording(model) as towers, torch.no_grad():
        model(images)
    assert {tower: sorted(map(int, towers[tower]["blocks"])) for tower in ("vision", "text")} == {
        "vision": list(range(5, 12)), "text": list(range(5, 12))}
    identity = {"protocol": "base2novel", "method": "mmrl", "dataset": "toy", "seed": 1}
    doc = {"format": mechanism.FORMAT, **identity, "masks": False, "parts": {"base": towers, "novel": towers}}
    assert mechanism.problems(doc, identity, first=5) == []
    assert any("expected ['0'" in p for p in mechanism.problems(doc, identity))
