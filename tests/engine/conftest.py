"""Fixtures for the engine tests: the toy dataset and config from `toy.py`."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.engine.toy import make_toy_dataset, toy_config


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_toy_dataset(root)
    return root


@pytest.fixture
def toy_setup(tmp_path, toy_data):
    """(config dict, config file path) with results under tmp_path and the shared toy data."""
    from bmip.config import validate

    raw = toy_config(tmp_path, data_root=str(toy_data))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return validate(raw), path
