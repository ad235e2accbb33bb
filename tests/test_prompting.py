"""The shared prompted forward pass against open_clip's own encoders."""
import torch

from bmip.methods import build_model
from tests.shared import CLASSNAMES


def test_zsclip_features_equal_open_clip(tiny_backbone):
    clip = tiny_backbone.clip
    model = build_model(tiny_backbone, "zsclip", CLASSNAMES, template="a photo of a {}, a type of thing.")
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours_image = model.encode_image(images)
        ours_text = model.encode_text()
        ref_image = clip.encode_image(images)
        prompts = [f"a photo of a {c.replace('_', ' ')}, a type of thing." for c in CLASSNAMES]
        ref_text = clip.encode_text(tiny_backbone.tokenizer(prompts))
    assert (ours_image - ref_image).abs().max() <= 1e-5
    assert (ours_text - ref_text).abs().max() <= 1e-5


def _full_length(model):
    """Swap the cut token sequence for the full 77-token context."""
    tokens = model.backbone.tokenizer([model.method.prompt_template(model.template).format(c.replace("_", " ")) for c in model.classnames])
    model.tokens = tokens
    model.token_embeds = model.clip.token_embedding(tokens).detach()


def test_cut_text_sequence_gives_same_features(tiny_backbone):
    for name in ("bmip", "maple", "coop", "lang"):
        torch.manual_seed(0)
        model = build_model(tiny_backbone, name, CLASSNAMES)
        with torch.no_grad():
            cut = model.encode_text()
            assert model.tokens.shape[1] < 77
            _full_length(model)
            full = model.encode_text()
        assert (cut - full).abs().max() <= 1e-5, name


def test_cocoop_text_passes_give_the_features_of_one_pass(tiny_backbone, monkeypatch):
    """Image-conditioned prompts run the text tower in passes of about TEXT_PASS sequences."""
    from bmip import prompting

    torch.manual_seed(0)
    model = build_model(tiny_backbone, "cocoop", CLASSNAMES).eval()
    image = torch.nn.functional.normalize(torch.randn(7, tiny_backbone.embed_dim), dim=-1)
    with torch.no_grad():
        context = model.method.conditional_context(image)
        monkeypatch.setitem(prompting.TEXT_PASS, "cpu", 10**6)
        one_pass = model.encode_text(context)
        monkeypatch.setitem(prompting.TEXT_PASS, "cpu", 2 * len(CLASSNAMES))  # passes of 2 images
        passes = model.encode_text(context)
    assert passes.shape == one_pass.shape == (7, len(CLASSNAMES), tiny_backbone.embed_dim)
    assert (passes - one_pass).abs().max() <= 1e-6


def test_slots_are_replaced_only_in_prompted_blocks_and_carried_after(tiny_backbone):
    """MaPLe depth 3: blocks 1-2 receive the method's prompts; later blocks carry them along."""
    torch.manual_seed(0)
    model = build_model(tiny_backbone, "maple", CLASSNAMES, options={"depth": 3})
    blocks = model.clip.visual.transformer.resblocks
    inputs, outputs = {}, {}
    hooks = [b.register_forward_pre_hook(lambda m, a, k=k: inputs.__setitem__(k, a[0].detach())) for k, b in enumerate(blocks)]
    hooks += [b.register_forward_hook(lambda m, a, o, k=k: outputs.__setitem__(k, o.detach())) for k, b in enumerate(blocks)]
    with torch.no_grad():
        model.encode_image(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    n = model.method.vision_tokens
    for k in (1, 2):
        expected = model.method.deep_proj[k - 1](model.method.text_prompts[k - 1]).detach()
        assert torch.allclose(inputs[k][:, -n:], expected.expand(2, -1, -1))
    for k in range(3, len(blocks)):
        assert torch.equal(inputs[k][:, -n:], outputs[k - 1][:, -n:])
