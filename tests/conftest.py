"""Shared test fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only shared material (real CoOp split files etc.) next to the checkout."""
    if not SHARED.is_dir():
        pytest.fail(f"expected the shared folder at {SHARED} (it sits beside the project checkout)")
    return SHARED


@pytest.fixture(scope="session")
def tiny_backbone():
    """A randomly initialised 12-block open_clip ViT CLIP small enough for CPU tests."""
    import torch

    from bmip.backbone import load_backbone

    torch.manual_seed(0)
    return load_backbone("test-vit-tiny", "none")

