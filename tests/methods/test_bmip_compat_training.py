"""official_compat BMIP trains like the released code: the shared visual deep prompt is updated
as D-1 aliases, each with its own gradient and optimiser state, one after the other in place.

The reference below is a plain loop written from that description, not from the implementation:
per-block gradients come from giving each block its own copy of the prompt, and Adam / SGD are
written out by hand.
"""
import copy

import pytest
import torch

from bmip.engine.schedule import make_optimizer
from bmip.methods import build_model
from tests.shared import CLASSNAMES

DEPTH = 5  # 4 aliases; text blocks 1..3 take aliases 0..2 (the released off-by-one), alias 3 is vision-only
RECIPES = {
    "adam": {"optimizer": "adam", "lr": 0.002, "weight_decay": 5e-4},
    "sgd": {"optimizer": "sgd", "lr": 0.0035, "weight_decay": 5e-4, "momentum": 0.9},
}
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def _model(backbone, compat=True):
    torch.manual_seed(0)
    return build_model(backbone, "bmip", CLASSNAMES, options={"official_compat": compat, "depth": DEPTH})


def _batch(step):
    gen = torch.Generator().manual_seed(100 + step)
    return torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, len(CLASSNAMES), (4,), generator=gen)


def _engine_step(model, optimiser, step):
    images, labels = _batch(step)
    loss, _ = model.loss(images, labels)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


class PlainReference:
    """The released update, by hand: every tensor one optimiser state, except the shared visual
    prompt V, which D-1 aliases update in turn (gradient of the alias's own block only, weight
    decay on V as the earlier aliases left it, its own moments and step count)."""

    def __init__(self, model, recipe):
        self.model, self.recipe = model, recipe
        method = model.method
        self.V = method.vision_prompts  # (1, N, d_v)
        self.others = [p for name, p in method.named_parameters() if name != "vision_prompts"]
        self.state = {id(p): {} for p in self.others}
        self.alias_state = [{} for _ in range(DEPTH - 1)]
        self.copies: list[torch.Tensor] = []
        # Block k (vision, and text through the V->T projection) reads its own copy of V.
        method._vision_prompt = lambda k: self.copies[k - 1][0]

    def _update(self, p, g, state):
        lr, wd = self.recipe["lr"], self.recipe["weight_decay"]
        g = g + wd * p
        state["t"] = t = state.get("t", 0) + 1
        if self.recipe["optimizer"] == "sgd":
            state["buf"] = g.clone() if t == 1 else self.recipe["momentum"] * state["buf"] + g
            p -= lr * state["buf"]
            return
        state["m"] = BETA1 * state.get("m", torch.zeros_like(p)) + (1 - BETA1) * g
        state["v"] = BETA2 * state.get("v", torch.zeros_like(p)) + (1 - BETA2) * g * g
        denom = state["v"].sqrt() / (1 - BETA2**t) ** 0.5 + EPS
        p -= lr / (1 - BETA1**t) * state["m"] / denom

    def step(self, step):
        images, labels = _batch(step)
        self.copies = [self.V.detach().clone().requires_grad_() for _ in range(DEPTH - 1)]
        loss, _ = self.model.loss(images, labels)
        grads = torch.autograd.grad(loss, self.others + self.copies, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(self.others, grads):
                if g is not None:
                    self._update(p, g, self.state[id(p)])
            for c, g in enumerate(grads[len(self.others):]):  # all taken at the pre-step V
                self._update(self.V, g, self.alias_state[c])  # V already holds aliases 0..c-1's writes


def _max_difference(a, b):
    pa, pb = dict(a.method.named_parameters()), dict(b.method.named_parameters())
    assert pa.keys() == pb.keys()
    return max(float((pa[k] - pb[k]).detach().abs().max()) for k in pa)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_compat_training_matches_the_plain_alias_reference(tiny_backbone, optimizer):
    model, twin = _model(tiny_backbone), _model(tiny_backbone)
    reference = PlainReference(twin, RECIPES[optimizer])
    optimiser = make_optimizer(model.learnable_parameters(), RECIPES[optimizer])
    start = model.method.vision_prompts.detach().clone()
    for step in range(3):
        _engine_step(model, optimiser, step)
        reference.step(step)
        assert _max_difference(model, reference.model) <= 1e-6, f"{optimizer} step {step + 1}"
    if optimizer == "adam":  # one Adam state moves an element by at most lr per step; D-1 aliases, more
        assert (model.method.vision_prompts - start).abs().max() > 1.5 * 3 * RECIPES["adam"]["lr"]


def test_aliases_differ_from_one_state_and_only_in_compat(tiny_backbone):
    """One Adam step: alias updates vs the same gradients applied as one parameter with one state.
    Everything but the shared visual prompt agrees; the default mode has no aliases at all."""
    aliased, single = _model(tiny_backbone), _model(tiny_backbone)
    start = aliased.method.vision_prompts.detach().clone()
    _engine_step(aliased, make_optimizer(aliased.learnable_parameters(), RECIPES["adam"]), 0)

    images, labels = _batch(0)
    loss, _ = single.loss(images, labels)
    loss.backward()
    method = single.method
    method.vision_prompts.grad = sum(alias.grad for alias in method.visual_aliases())
    torch.optim.Adam(method.parameters(), lr=0.002, weight_decay=5e-4).step()

    a, s = dict(aliased.method.named_parameters()), dict(method.named_parameters())
    for name in a:
        if name != "vision_prompts":
            assert torch.equal(a[name], s[name]), name
    step_aliased = (a["vision_prompts"] - start).abs().max()
    step_single = (s["vision_prompts"] - start).abs().max()
    assert step_single <= 0.002 + 1e-6 and step_aliased > 2 * step_single

    default = _model(tiny_backbone, compat=False)
    params = default.learnable_parameters()
    declared = list(default.method.parameters())
    assert len(params) == len(declared) and all(p is q for p, q in zip(params, declared))
    assert len({p.data_ptr() for p in params}) == len(params)
    optimiser = make_optimizer(params, RECIPES["adam"])
    _engine_step(default, optimiser, 0)
    assert len(optimiser.state) == len(params)


def test_aliases_follow_the_prompt_through_copies_and_loading(tiny_backbone):
    model, clone = _model(tiny_backbone), _model(tiny_backbone)
    clone.method = copy.deepcopy(model.method)  # new storage for every tensor, aliases included
    with torch.no_grad():
        clone.method.vision_prompts.add_(1.0)
    images, _ = _batch(0)
    with torch.no_grad():
        assert not torch.equal(model(images), clone(images))
        model.method.load_state_dict(clone.method.state_dict())
        assert torch.equal(model(images), clone(images))
    for alias in clone.method.visual_aliases():
        assert alias.data_ptr() == clone.method.vision_prompts.data_ptr()
