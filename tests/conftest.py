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
