"""Constants and steps shared by the model tests."""
import torch

from bmip.methods import build_model

CLASSNAMES = ["cat", "golden_retriever", "airplane", "big red fire truck", "sea or lake"]


def train_steps(model, images, labels, optimiser, steps: int) -> list[float]:
    """`steps` steps of `optimiser` on `model`'s own loss on one batch; the losses before each step
    (the model is left in training mode)."""
    model.train()
    losses = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss, _ = model.loss(images, labels)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def adam_steps(model, images, labels, steps: int = 2, lr: float = 0.01) -> list[float]:
    """`steps` Adam steps of `model`'s own loss on one batch (`train_steps`)."""
    return train_steps(model, images, labels, torch.optim.Adam(model.learnable_parameters(), lr=lr), steps)


def random_images(seed: int = 1, n: int = 3) -> torch.Tensor:
    """`n` random 32x32 RGB images (the tiny test models' size), the same for the same seed."""
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def seeded_model(backbone, name: str = "bmip", classnames=CLASSNAMES, **options):
    """`build_model` of `name` after torch.manual_seed(0): the same initial tensors in every test."""
    torch.manual_seed(0)
    return build_model(backbone, name, classnames, options=options)
