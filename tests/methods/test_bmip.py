"""BMIP's gates, per-sample statistics, and the official_compat reproduction."""
import torch

from bmip.methods.base import Slots
from bmip.methods.bmip import slot_attention
from tests.shared import CLASSNAMES, random_images, seeded_model


def _record(model, images):
    model.method.recorded_gates = {}
    with torch.no_grad():
        logits = model(images)
    gates, model.method.recorded_gates = model.method.recorded_gates, None
    return logits, gates


def test_gates_lie_strictly_between_zero_and_one(tiny_backbone):
    for compat in (False, True):
        model = seeded_model(tiny_backbone, official_compat=compat)
        with torch.no_grad():  # move the gates off their initial values
            for p in model.method.parameters():
                p.add_(torch.randn_like(p))
        _, gates = _record(model, random_images(0))
        assert gates
        for w in gates.values():
            assert torch.all((w > 0) & (w < 1))


def test_default_logits_do_not_depend_on_batch_mates(tiny_backbone):
    model = seeded_model(tiny_backbone)
    a, b = random_images(1), random_images(2)
    b[0] = a[0]
    assert torch.equal(model(a)[0], model(b)[0])


def test_official_compat_logits_do_depend_on_batch_mates(tiny_backbone):
    model = seeded_model(tiny_backbone, official_compat=True)
    with torch.no_grad():
        model.method.vision_gate[:, 0] = 50.0  # make the batch statistic matter visibly
    a, b = random_images(1), random_images(2)
    b[0] = a[0]
    assert not torch.equal(model(a)[0], model(b)[0])


def test_default_text_gate_changes_with_the_input(tiny_backbone):
    model = seeded_model(tiny_backbone)
    with torch.no_grad():
        model.method.text_gate[:, 0] = 40.0
    _, gates = _record(model, random_images(0))
    w = gates[("text", 1)]
    assert w.shape == (len(CLASSNAMES), 2)
    assert not torch.allclose(w[0], w[1])  # different class prompts, different gates
    model.set_classnames(["lighthouse", "x"])
    _, other = _record(model, random_images(0))
    assert other[("text", 1)].shape == (2, 2)


def test_official_compat_text_gate_is_sigmoid_of_bias(tiny_backbone):
    model = seeded_model(tiny_backbone, official_compat=True)
    _, gates = _record(model, random_images(0))
    for k in range(1, 8):
        assert torch.equal(gates[("text", k)], torch.sigmoid(model.method.text_gate_bias[k - 1]).detach().view(1, 1))
    assert not hasattr(model.method, "text_gate")


def test_sos_row_attention_to_prompts_is_exactly_zero(tiny_backbone):
    """Why the released text gate is constant: under the causal mask SOS sees only itself."""
    model = seeded_model(tiny_backbone)
    block = model.clip.transformer.resblocks[1]
    x = torch.randn(len(CLASSNAMES), model.tokens.shape[1], tiny_backbone.text_width)
    mask = model.clip.attn_mask[: x.shape[1], : x.shape[1]]
    weights = slot_attention(block, x, Slots(1, 2, mask, model.eot), slice(0, 1))
    assert torch.equal(weights, torch.zeros_like(weights))


def test_official_compat_vision_statistic_is_the_batch_mean(tiny_backbone):
    default, compat = seeded_model(tiny_backbone), seeded_model(tiny_backbone, official_compat=True)
    block = tiny_backbone.clip.visual.transformer.resblocks[3]
    x = torch.randn(4, 17 + 2, tiny_backbone.vision_width)
    slots = Slots(17, 2)
    per_image = default.method.vision_statistic(block, x, slots)
    assert per_image.shape == (4, 2)
    assert torch.allclose(compat.method.vision_statistic(block, x, slots), per_image.mean(0, keepdim=True))


def test_prompts_enter_the_blocks_methods_md_names(tiny_backbone):
    _, gates = _record(seeded_model(tiny_backbone), random_images(0))
    assert sorted(k for t, k in gates if t == "vision") == list(range(1, 9))
    assert sorted(k for t, k in gates if t == "text") == list(range(1, 9))
    _, gates = _record(seeded_model(tiny_backbone, official_compat=True), random_images(0))
    assert sorted(k for t, k in gates if t == "vision") == list(range(1, 9))
    assert sorted(k for t, k in gates if t == "text") == list(range(1, 8))  # the released off-by-one


def test_official_compat_shares_one_visual_deep_prompt(tiny_backbone):
    assert seeded_model(tiny_backbone).method.vision_prompts.shape[0] == 8
    assert seeded_model(tiny_backbone, official_compat=True).method.vision_prompts.shape[0] == 1


def test_per_layer_projections(tiny_backbone):
    method = seeded_model(tiny_backbone, per_layer_projections=True).method
    assert len(method.proj_tv) == 9 and len(method.proj_vt) == 8
