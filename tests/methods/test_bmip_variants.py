"""BMIP's mixing and direction variants (`aggregation`, `directions`): options of the one method."""
import pytest
import torch

from bmip.checkpoint import CheckpointError, load_model, save_checkpoint
from bmip.methods import MethodConfigError, build_model
from bmip.methods.bmip import AGGREGATIONS, DIRECTIONS, BMIP
from tests.shared import CLASSNAMES, adam_steps, seeded_model

VARIANTS = [{"aggregation": a} for a in AGGREGATIONS] + [{"directions": d} for d in DIRECTIONS[1:]] + [
    {"aggregation": a, "directions": d} for a in ("sum", "exchange", "constant_gate") for d in DIRECTIONS[1:]]


def _batch():
    gen = torch.Generator().manual_seed(3)
    return torch.randn(6, 3, 32, 32, generator=gen), torch.arange(6) % len(CLASSNAMES)


def _two_steps(model):
    images, labels = _batch()
    adam_steps(model, images, labels)
    model.eval()
    with torch.no_grad():
        return model(images)


class _ReleasedEquations(BMIP):
    """BMIP's deep hooks written out as the equations of docs/methods.md (the code before the
    variants existed), the reference the default variant must reproduce bit for bit."""

    def vision_deep(self, k, block, x, slots):
        if k >= self.depth:
            return None
        a, b = self.vision_gate[k - 1]
        w = torch.sigmoid(a * self.vision_statistic(block, x, slots) + b).unsqueeze(-1)
        return w * self.vision_prompts[k - 1] + (1 - w) * self._tv(k)(self.text_prompts[k - 1])

    def text_deep(self, k, block, x, slots):
        if k > self.last_text_block:
            return None
        a, b = self.text_gate[k - 1]
        w = torch.sigmoid(a * self.text_statistic(block, x, slots) + b).unsqueeze(-1)
        return w * self.text_prompts[k - 1] + (1 - w) * self._vt(k)(self.vision_prompts[k - 1])


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(o.values()))
def test_every_variant_trains_two_steps_and_evaluates(tiny_backbone, options):
    model = seeded_model(tiny_backbone, **options)
    before = model.learnable_state()
    logits = _two_steps(model)
    assert logits.shape == (6, len(CLASSNAMES)) and torch.isfinite(logits).all()
    after = model.learnable_state()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved == list(before), f"{options}: tensors that never train: {sorted(set(before) - set(moved))}"


def test_gate_is_todays_bmip_bit_for_bit(tiny_backbone, tmp_path):
    default, explicit = seeded_model(tiny_backbone), seeded_model(tiny_backbone, aggregation="gate", directions="both")
    torch.manual_seed(0)
    reference = build_model(tiny_backbone, "bmip", CLASSNAMES)
    torch.manual_seed(0)
    released = _ReleasedEquations(tiny_backbone, reference.method.config)
    reference.method = released
    assert list(default.learnable_state()) == list(released.state_dict())
    outputs = [_two_steps(m) for m in (default, explicit, reference)]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    for key, value in default.learnable_state().items():
        assert torch.equal(value, released.state_dict()[key]), key
    save_checkpoint(tmp_path / "a.safetensors", default)
    save_checkpoint(tmp_path / "b.safetensors", explicit)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_mean_and_sum_have_no_gate_and_constant_gate_no_attention_weight(tiny_backbone):
    gate = set(seeded_model(tiny_backbone).learnable_state())
    for mix in ("mean", "sum", "attention_pool", "joint"):
        names = set(seeded_model(tiny_backbone, aggregation=mix).learnable_state())
        assert not any("gate" in n for n in names) and names == gate - {"vision_gate", "text_gate"}, mix
    constant = seeded_model(tiny_backbone, aggregation="constant_gate").method
    assert constant.vision_gate_bias.shape == constant.text_gate_bias.shape == (8,)
    assert not hasattr(constant, "vision_gate") and not hasattr(constant, "text_gate")


def test_mean_mixes_half_and_half(tiny_backbone):
    method = seeded_model(tiny_backbone, aggregation="mean").method
    own, foreign = method.vision_prompts[0], method._tv(1)(method.text_prompts[0])
    mixed = method.vision_deep(1, None, None, None)
    assert torch.allclose(mixed, (own + foreign) / 2)


def test_joint_has_two_n_slots_per_group(tiny_backbone):
    n = 2
    method = seeded_model(tiny_backbone, aggregation="joint", n_ctx=n).method
    assert method.text_tokens == method.vision_tokens == 2 * n
    assert method.text_shallow().shape[0] == method.vision_shallow().shape[0] == 2 * n
    deep = method.vision_deep(1, None, None, None)
    assert deep.shape == (2 * n, tiny_backbone.vision_width)
    assert torch.equal(deep[:n], method.vision_prompts[0])
    assert method.text_deep(1, None, None, None).shape == (2 * n, tiny_backbone.text_width)


def test_one_direction_keeps_the_other_tower_on_its_own_prompts(tiny_backbone):
    t2v = seeded_model(tiny_backbone, directions="text_to_vision").method
    assert not hasattr(t2v, "proj_vt") and not hasattr(t2v, "text_gate")
    assert torch.equal(t2v.text_deep(1, None, None, None), t2v.text_prompts[0])
    v2t = seeded_model(tiny_backbone, directions="vision_to_text").method
    assert len(v2t.proj_tv) == 1 and not hasattr(v2t, "vision_gate")  # layer 0's F_tv only
    assert torch.equal(v2t.vision_deep(1, None, None, None), v2t.vision_prompts[0])


def test_attention_pool_adds_the_softmax_pooled_foreign_tokens(tiny_backbone):
    method = seeded_model(tiny_backbone, aggregation="attention_pool").method
    own, foreign = method.text_prompts[2], method._vt(3)(method.vision_prompts[2])
    expected = torch.stack([own[i] + sum(torch.softmax(own[i] @ foreign.T, 0)[j] * foreign[j] for j in range(2))
                            for i in range(2)])
    assert torch.allclose(method.text_deep(3, None, None, None), expected, atol=1e-6)


def test_exchange_maps_the_concatenation_back_to_the_width(tiny_backbone):
    method = seeded_model(tiny_backbone, aggregation="exchange").method
    assert method.exchange_v.in_features == 2 * tiny_backbone.vision_width
    assert method.exchange_t.out_features == tiny_backbone.text_width


def test_a_variant_checkpoint_refuses_to_load_as_another(tiny_backbone, tmp_path):
    path = tmp_path / "sum.safetensors"
    save_checkpoint(path, seeded_model(tiny_backbone, "bmip@sum", aggregation="sum"))
    loaded = load_model(path, tiny_backbone, expect_method="bmip@sum")
    assert loaded.method.aggregation == "sum"
    with pytest.raises(CheckpointError, match="holds method 'bmip@sum', not 'bmip@mean'"):
        load_model(path, tiny_backbone, expect_method="bmip@mean")
    with pytest.raises(CheckpointError, match="not 'bmip'"):
        load_model(path, tiny_backbone, expect_method="bmip")
    gate = tmp_path / "gate.safetensors"
    save_checkpoint(gate, seeded_model(tiny_backbone))
    tensors_of_gate = load_model(gate, tiny_backbone).learnable_state()
    with pytest.raises(RuntimeError, match="vision_gate"):
        seeded_model(tiny_backbone, aggregation="mean").load_learnable_state(tensors_of_gate)


@pytest.mark.parametrize("options, message", [
    ({"aggregation": "max"}, r"option aggregation: unknown value 'max'; choose one of \['gate', 'sum'"),
    ({"directions": "up"}, r"option directions: unknown value 'up'; choose one of \['both'"),
    ({"aggregation": "sum", "official_compat": True}, "official_compat reproduces the released gated BMIP"),
    ({"aggregation": "joint", "directions": "text_to_vision"}, "it needs directions: both"),
])
def test_impossible_variants_are_refused_naming_the_option(tiny_backbone, options, message):
    with pytest.raises(MethodConfigError, match=message):
        seeded_model(tiny_backbone, **options)
