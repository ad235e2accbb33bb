"""Shared test fixtures."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_backbone():
    """A randomly initialised 12-block open_clip ViT CLIP small enough for CPU tests."""
    import torch

    from bmip.backbone import load_backbone

    torch.manual_seed(0)
    return load_backbone("test-vit-tiny", "none")

