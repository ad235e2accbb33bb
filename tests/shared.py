"""Constants and steps shared by the model tests."""

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
    import torch

    return train_steps(model, images, labels, torch.optim.Adam(model.learnable_parameters(), lr=lr), steps)
