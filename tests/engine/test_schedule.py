"""Optimisers of the recipes: Adam's L2 decay vs AdamW's decoupled decay, the optional `eps`."""
import pytest
import torch

from bmip.config import ConfigError, validate
from bmip.engine.schedule import ADAM_EPS, epoch_lr, make_optimizer
from bmip.recipes import RECIPE_DEFAULTS, recipe


def _recipe(**changes):
    return {**RECIPE_DEFAULTS, "lr": 0.1, "weight_decay": 0.5, **changes}


def _one_step(optimiser_recipe, value=1.0, grad=0.5):
    p = torch.nn.Parameter(torch.tensor([value]))
    optimiser = make_optimizer([p], optimiser_recipe)
    p.grad = torch.tensor([grad])
    optimiser.step()
    return p.detach().item(), optimiser


def test_adamw_decays_the_weight_apart_from_the_adaptive_step():
    lr, wd = 0.1, 0.5
    after, optimiser = _one_step(_recipe(optimizer="adamw"))
    assert isinstance(optimiser, torch.optim.AdamW)
    # First step: the bias-corrected Adam step is lr * g / (|g| + eps) = lr (up to eps), and the
    # decoupled decay multiplies the weight by (1 - lr * wd) before it.
    assert after == pytest.approx(1.0 * (1 - lr * wd) - lr, abs=1e-6)
    # Adam adds wd * p to the gradient instead: its first step is lr whatever the decay.
    adam_after, optimiser = _one_step(_recipe(optimizer="adam"))
    assert type(optimiser) is torch.optim.Adam and adam_after == pytest.approx(1.0 - lr, abs=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_eps_defaults_to_torch_and_dassl_and_is_read_from_the_recipe(name):
    _, default = _one_step(_recipe(optimizer=name))
    assert default.defaults["eps"] == ADAM_EPS == 1e-8 and default.defaults["betas"] == (0.9, 0.999)
    # A large eps damps the first step: lr * g / (|g| + eps), here with no decay.
    after, optimiser = _one_step(_recipe(optimizer=name, eps=1e-3, weight_decay=0.0), grad=1e-3)
    assert optimiser.defaults["eps"] == 1e-3
    assert after == pytest.approx(1.0 - 0.1 * 1e-3 / (1e-3 + 1e-3), rel=1e-4)


def test_existing_recipes_resolve_without_eps():
    """`eps` is optional: absent, a run's resolved recipe (and config hash) is what it was."""
    assert "eps" not in RECIPE_DEFAULTS
    assert "eps" not in recipe({"recipes": {}}, "base2novel", "bmip")


def test_the_schema_accepts_adamw_and_eps_and_refuses_bad_values(tmp_path):
    from tests.engine.toy import toy_config

    good = toy_config(tmp_path, recipes={"default": {"bmip": {"optimizer": "adamw", "eps": 1e-3}}})
    assert validate(good)["recipes"]["default"]["bmip"]["eps"] == 1e-3
    for bad in ({"eps": 0}, {"eps": "small"}, {"optimizer": "lamb"}):
        with pytest.raises(ConfigError):
            validate(toy_config(tmp_path, recipes={"default": {"bmip": bad}}))


def test_warmup_then_cosine_restarted_after_the_warmup():
    schedule = {"warmup_epochs": 1, "warmup_lr": 1e-5, "lr": 1e-3, "epochs": 10}
    assert epoch_lr(0, schedule) == 1e-5
    assert epoch_lr(1, schedule) == pytest.approx(1e-3)
    assert epoch_lr(9, schedule) == pytest.approx(1e-3 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 0.8)).item()))
