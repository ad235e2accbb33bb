"""Every method: frozen backbone, no dead parameters, loss goes down, Adam stays finite."""
import pytest
import torch

from bmip.methods import build_model, method_names
from tests.shared import CLASSNAMES

LEARNING = [m for m in method_names() if m != "zsclip"]


def _batch():
    """Images, labels, and a second view of the images (CoPrompt's frozen-CLIP input)."""
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(8, 3, 32, 32, generator=gen)
    return images, torch.arange(8) % len(CLASSNAMES), [images.flip(-1)]


@pytest.mark.parametrize("name", LEARNING)
def test_only_declared_tensors_change_and_all_get_gradients(tiny_backbone, name):
    torch.manual_seed(0)
    model = build_model(tiny_backbone, name, CLASSNAMES)
    frozen = {k: v.clone() for k, v in model.clip.state_dict().items()}
    declared = dict(model.named_learnable_parameters())
    before = {k: v.detach().clone() for k, v in declared.items()}
    assert declared and all(p.dtype == torch.float32 for p in declared.values())
    # Like the released code, hand the optimiser *every* parameter: frozen ones must not move.
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    images, labels, views = _batch()
    model.train()
    for _ in range(2):
        optimiser.zero_grad()
        loss, _ = model.loss(images, labels, views)
        loss.backward()
        for key, p in declared.items():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: {key} got no gradient"
        optimiser.step()
    for key, value in model.clip.state_dict().items():
        assert torch.equal(value, frozen[key]), f"{name}: frozen {key} changed"
    for key, p in declared.items():
        assert not torch.equal(p.detach(), before[key]), f"{name}: {key} did not change"


@pytest.mark.parametrize("name", LEARNING)
def test_a_few_adam_steps_lower_the_loss_and_stay_finite(tiny_backbone, name):
    torch.manual_seed(0)
    model = build_model(tiny_backbone, name, CLASSNAMES)
    # BMIP's official optimiser: Adam, L2 weight decay 5e-4 added to the gradient.
    optimiser = torch.optim.Adam(model.learnable_parameters(), lr=0.01, weight_decay=5e-4)
    images, labels, views = _batch()
    model.train()
    losses = []
    for _ in range(12):
        optimiser.zero_grad()
        loss, _ = model.loss(images, labels, views)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        assert all(torch.isfinite(p).all() for p in model.learnable_parameters())
    assert losses[-1] < losses[0] - 1e-3, losses
