"""Object masks: an optional per-item annotation, read where a dataset has them.

A dataset has masks when a `masks/` folder sits beside its image root and mirrors it
(`<dir>/masks/<item path>`: an 8-bit grayscale image, 255 = pixel fully covered by the object).
Only the generated miniworld datasets have them today; for every other dataset `has_masks` is
False and analyses report the foreground statistic as absent, never a proxy.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import DataError
from .items import Dataset, Item

if TYPE_CHECKING:
    import torch

MASK_DIR = "masks"


def mask_root(dataset: Dataset) -> Path:
    return Path(dataset.image_root).parent / MASK_DIR


def has_masks(dataset: Dataset) -> bool:
    """True when the dataset ships per-image object masks."""
    return mask_root(dataset).is_dir()


def patch_foreground(dataset: Dataset, items: Sequence[Item], size: int, patch: int) -> "torch.Tensor":
    """(len(items), (size / patch)^2) foreground share of every patch the model sees: each mask goes
    through the test transform's geometry (shorter side to `size`, centre crop), then is averaged
    over each patch, in the ViT's row-major patch order."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision.transforms as T
    from PIL import Image

    geometry = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(size)])
    root = mask_root(dataset)
    masks = []
    for item in items:
        path = root / item.path
        if not path.is_file():
            raise DataError(f"{path}: mask missing for {item.path} ({dataset.name} has a {MASK_DIR}/ folder, so every "
                            "image needs one); regenerate the dataset (`bmip miniworld-generate --force`)")
        with Image.open(path) as image:
            masks.append(np.asarray(geometry(image.convert("L")), dtype=np.float32) / 255.0)
    stacked = torch.from_numpy(np.stack(masks)).unsqueeze(1) if masks else torch.zeros(0, 1, size, size)
    return F.avg_pool2d(stacked, patch).flatten(1)
