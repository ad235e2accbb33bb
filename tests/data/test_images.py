"""Images load as (tensor, label) with CoOp's CLIP train/test transforms, at any size."""
from __future__ import annotations

import torch
from torchvision import transforms as T

from bmip.data import CLIP_MEAN, CLIP_STD, ImageDataset, Item
from bmip.data import images as image_module

from .helpers import write_png


def test_image_dataset_returns_tensor_and_label(tmp_path):
    write_png(tmp_path / "a" / "1.png", size=(50, 40), color=(255, 0, 0))
    write_png(tmp_path / "b" / "1.png", size=(30, 60), color=(0, 0, 255))
    data = ImageDataset([Item("a/1.png", 0, "a"), Item("b/1.png", 1, "b")], tmp_path, image_module.test_transform(32))
    assert len(data) == 2
    image, label = data[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 1
    blue = (1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(image[:, 16, 16], torch.tensor([-CLIP_MEAN[0] / CLIP_STD[0], -CLIP_MEAN[1] / CLIP_STD[1],
                                                          blue[2].item()]), atol=1e-4)


def test_grayscale_is_converted_to_rgb_and_default_is_to_tensor(tmp_path):
    from PIL import Image

    Image.new("L", (8, 6), 128).save(tmp_path / "g.png")
    image, label = ImageDataset([Item("g.png", 3, "g")], tmp_path)[0]
    assert image.shape == (3, 6, 8) and label == 3


def test_train_transform_is_coops():
    t = image_module.train_transform(64)
    crop, flip, to_tensor, norm = t.transforms
    assert isinstance(crop, T.RandomResizedCrop) and crop.size == (64, 64) and crop.scale == (0.08, 1.0)
    assert crop.interpolation == T.InterpolationMode.BICUBIC
    assert isinstance(flip, T.RandomHorizontalFlip) and isinstance(to_tensor, T.ToTensor)
    assert tuple(norm.mean) == CLIP_MEAN and tuple(norm.std) == CLIP_STD


def test_test_transform_resizes_the_shorter_side_then_crops(tmp_path):
    resize, crop, _, norm = image_module.test_transform(224).transforms
    assert resize.size == 224 and resize.interpolation == T.InterpolationMode.BICUBIC  # int: shorter side
    assert crop.size == (224, 224) and tuple(norm.std) == CLIP_STD
    from PIL import Image

    out = T.Compose([resize, crop])(Image.new("RGB", (300, 150)))
    assert out.size == (224, 224)
    assert T.Resize(224, interpolation=T.InterpolationMode.BICUBIC)(Image.new("RGB", (300, 150))).size == (448, 224)
