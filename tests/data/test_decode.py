"""Odd but valid image files load as Dassl loads them (PIL convert("RGB")); broken ones raise naming
the file, what is wrong with it and what to do."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bmip.data import ImageDataset, Item, test_transform
from bmip.data.decode import image_problem, read_rgb
from bmip.data.errors import ImageDecodeError

RNG = np.random.default_rng(0)


def _rgb(h: int = 40, w: int = 56) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_odd_images(folder: Path) -> dict[str, Path]:
    """One valid file of each odd kind a real dataset holds."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "cmyk.jpg": Image.fromarray(_rgb()).convert("CMYK"),
        "gray16.png": Image.fromarray((RNG.integers(0, 65536, (40, 56))).astype(np.uint16)),
        "gray.jpg": Image.fromarray(_rgb()[..., 0]),
        "rgba.png": Image.fromarray(np.dstack([_rgb(), RNG.integers(0, 256, (40, 56), dtype=np.uint8)])),
        "la.png": Image.fromarray(_rgb()[..., 0]).convert("LA"),
    }
    palette = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 3  # one palette entry transparent, as in GIFs and web PNGs
    files["palette_transparent.png"] = palette
    paths = {}
    for name, image in files.items():
        paths[name] = folder / name
        kwargs = {"transparency": 3} if name == "palette_transparent.png" else {}
        image.save(paths[name], **kwargs)
    return paths


def write_broken_images(folder: Path) -> dict[str, Path]:
    """One unreadable file of each kind: empty, truncated JPEG and PNG, HTML saved as .jpg, binary junk."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(jpeg, "JPEG")
    Image.fromarray(_rgb(64, 64)).save(png, "PNG")
    contents = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "truncated.png": png.getvalue()[: len(png.getvalue()) // 2],
        "page.jpg": b"<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>\n",
        "junk.png": bytes(RNG.integers(0, 256, 300, dtype=np.uint8)),
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in contents}


def test_odd_but_valid_images_load_as_rgb_exactly_as_a_direct_pil_decode(tmp_path):
    paths = write_odd_images(tmp_path)
    with Image.open(paths["cmyk.jpg"]) as img:
        assert img.mode == "CMYK"
    with Image.open(paths["gray16.png"]) as img:
        assert img.mode.startswith("I")  # 16-bit grayscale
    with Image.open(paths["palette_transparent.png"]) as img:
        assert img.mode == "P" and "transparency" in img.info
    transform = test_transform(32)
    items = [Item(name, i, name) for i, name in enumerate(paths)]
    dataset = ImageDataset(items, tmp_path, transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's note on palette transparency
        for i, (name, path) in enumerate(paths.items()):
            image, label = dataset[i]
            with Image.open(path) as img:
                expected = transform(img.convert("RGB"))
            assert image.shape == (3, 32, 32) and label == i
            assert torch.equal(image, expected), name


def test_each_broken_file_says_what_is_wrong_with_it(tmp_path):
    paths = write_broken_images(tmp_path)
    said = {name: image_problem(path) for name, path in paths.items()}
    assert said["empty.jpg"].startswith("empty (0 bytes)")
    assert said["truncated.jpg"].startswith("truncated")
    assert said["truncated.png"].startswith("truncated")
    assert said["page.jpg"].startswith("not an image: a text file") and "<!DOCTYPE html>" in said["page.jpg"]
    assert said["junk.png"].startswith("not an image format PIL can read")
    assert image_problem(tmp_path / "absent.jpg") == "missing: no such file"
    for path in write_odd_images(tmp_path / "odd").values():
        assert image_problem(path) is None


def test_a_decode_error_names_the_file_the_split_and_what_to_do(tmp_path):
    paths = write_broken_images(tmp_path / "fish")
    dataset = ImageDataset([Item("fish/truncated.jpg", 0, "fish")], tmp_path, test_transform(32), "pond test images")
    with pytest.raises(ImageDecodeError) as caught:
        dataset[0]
    message = str(caught.value)
    assert str(paths["truncated.jpg"]) in message and "(pond test images)" in message
    assert "truncated" in message and "bmip check-data" in message and "bmip download" in message
    with pytest.raises(ImageDecodeError, match="empty.jpg.*empty"):
        read_rgb(paths["empty.jpg"])


def test_training_and_evaluation_loaders_name_the_file_they_cannot_decode(tmp_path):
    from bmip.engine.runtime import EvalImageCache, loader

    write_broken_images(tmp_path / "fish")
    items = [Item("fish/page.jpg", 0, "fish")]
    with pytest.raises(ImageDecodeError, match=r"page\.jpg \(pond train images\): not an image"):
        next(iter(loader(items, tmp_path, 32, 1, 0, "pond train images")))
    with pytest.raises(ImageDecodeError, match=r"page\.jpg \(pond base\): not an image"):
        next(EvalImageCache().batches(items, tmp_path, 32, 1, "pond base"))
