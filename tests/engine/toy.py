"""A toy dataset in the generic CoOp layout (images/ + split.json) and a tiny experiment config."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "purple": (150, 40, 170)}
SPLIT_SIZES = {"train": 6, "val": 3, "test": 4}


def make_toy_dataset(root: Path, name: str = "toy") -> Path:
    """5 colour classes of 32x32 noisy images; labels follow the sorted class order."""
    rng = np.random.default_rng(0)
    folder = root / name
    split: dict[str, list] = {key: [] for key in SPLIT_SIZES}
    for label, (colour, rgb) in enumerate(COLOURS.items()):
        (folder / "images" / colour).mkdir(parents=True, exist_ok=True)
        for key, count in SPLIT_SIZES.items():
            for i in range(count):
                pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                rel = f"{colour}/{key}_{i}.png"
                Image.fromarray(pixels).save(folder / "images" / rel)
                split[key].append([rel, label, f"{colour} colour"])
    (folder / "split.json").write_text(json.dumps(split))
    return folder


def toy_config(tmp: Path, **changes) -> dict:
    config = {
        "experiment": "toy",
        "results_dir": str(tmp / "results"),
        "data_root": str(tmp / "data"),
        "backbone": {"model": "test-vit-tiny", "pretrained": "none"},
        "seeds": [1],
        "shots": 4,
        "eval_batch_size": 8,
        "methods": ["bmip", "maple", "zsclip"],
        "protocols": {
            "base2novel": {"datasets": ["toy"]},
            "open_world": {"datasets": ["toy"], "ratios": [100, 50, 0]},
            "cross_dataset": {"source": "toy", "targets": ["toy"]},
        },
        "recipes": {"default": {
            "bmip": {"epochs": 3, "batch_size": 4, "options": {"depth": 3}},
            "maple": {"epochs": 2, "batch_size": 4, "options": {"depth": 3}},
        }},
    }
    config.update(changes)
    return config


def with_toy_captions(config: dict, name: str = "toy") -> dict:
    """The config with a `captions:` section (a user's captions file: one caption per image of the
    toy dataset) and its captions file built, as the workflow's captions stage builds it."""
    from bmip.captions import stage
    from bmip.config import validate
    from bmip.data import dataset_root, load_dataset
    from bmip.engine import inventory

    data = load_dataset(name, dataset_root(config, name))
    mine = {item.path: f"a noisy square, image {i}" for i, item in enumerate([*data.train, *data.val, *data.test])}
    path = Path(config["results_dir"]).parent / f"{name}_captions.json"
    path.write_text(json.dumps(mine))
    config = validate({**config, "captions": {"captioner": "file", "file": str(path)}})
    inventory.update_inventories(config, stage.caption_datasets(config))
    stage.build_captions(config, name)
    return config
