"""Constants and steps shared by the model tests."""

CLASSNAMES = ["cat", "golden_retriever", "airplane", "big red fire truck", "sea or lake"]


def adam_steps(model, images, labels, steps: int = 2, lr: float = 0.01) -> None:
    """`steps` Adam steps of `model`'s own loss on one batch (the model is left in training mode)."""
    import torch

    optimiser = torch.optim.Adam(model.learnable_parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        loss, _ = model.loss(images, labels)
        loss.backward()
        optimiser.step()
