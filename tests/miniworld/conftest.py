"""A small generated world shared by the miniworld tests (reduced sizes: seconds, not minutes)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bmip.miniworld.datasets import generate_world

SEED = 3


@pytest.fixture(scope="session")
def world_seed() -> int:
    return SEED


@pytest.fixture(scope="session")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("miniworld")
    generate_world(root, seed=SEED, size="test", workers=2)
    return root
