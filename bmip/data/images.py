"""Images as a torch Dataset, and the CLIP train/test transforms CoOp uses (Dassl's INPUT settings)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset
from torchvision import transforms as T

from .decode import read_rgb
from .items import Item

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def train_transform(size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    """RandomResizedCrop(size, scale 0.08-1, bicubic) + horizontal flip + ToTensor + CLIP normalisation."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(CLIP_MEAN, CLIP_STD),
    ])


def randaugment_transform(size: int = 224, ops: int = 2, magnitude: int = 10) -> Callable[[Image.Image], torch.Tensor]:
    """CoPrompt's training augmentation (Dassl's INPUT.TRANSFORMS ["randaugment", "normalize"]): resize
    to size x size (bicubic) + RandAugment (Dassl's defaults: 2 ops at magnitude 10 of 30, here
    torchvision's RandAugment with 31 magnitude bins) + ToTensor + CLIP normalisation."""
    return T.Compose([
        T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC),
        T.RandAugment(num_ops=ops, magnitude=magnitude, num_magnitude_bins=31),
        T.ToTensor(),
        T.Normalize(CLIP_MEAN, CLIP_STD),
    ])


class Views:
    """Several independently augmented views of one image, as a tuple (one transform per view)."""

    def __init__(self, transforms: Sequence[Callable[[Image.Image], torch.Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, ...]:
        return tuple(transform(image) for transform in self.transforms)


def test_transform(size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side to `size` (bicubic) + CenterCrop(size) + ToTensor + CLIP normalisation."""
    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(CLIP_MEAN, CLIP_STD),
    ])


class ImageDataset(TorchDataset):
    """(image tensor, label) pairs for a list of items under `image_root`, images read as RGB
    (`read_rgb`: a file that cannot be decoded raises naming it, and `where`, e.g. "toy train")."""

    def __init__(self, items: Sequence[Item], image_root: Path, transform: Callable | None = None,
                 where: str = "") -> None:
        self.items = list(items)
        self.image_root = Path(image_root)
        self.transform = transform if transform is not None else T.ToTensor()
        self.where = where

    def __len__(self) -> int:
        return len(self.items)

    def load(self, item: Item) -> torch.Tensor:
        """One item's image, read as RGB and transformed."""
        return self.transform(read_rgb(self.image_root / item.path, self.where))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        return self.load(item), item.label


test_transform.__test__ = False  # a library function, not a pytest test, whatever imports it
