"""Small builders shared by the data-layer tests."""
from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path
from typing import Iterable

from PIL import Image

from bmip.data.items import Item
from bmip.data.registry import DATASETS
from bmip.data.sources import BUNDLED_DIR

# The split files bundled with the package, their registry datasets, and CoOp's split sizes
# (train, val, test, classes).
REAL_SPLITS = {
    "eurosat": ("split_zhou_EuroSAT.json", 13500, 5400, 8100, 10),
    "dtd": ("split_zhou_DescribableTextures.json", 2820, 1128, 1692, 47),
    "oxford_pets": ("split_zhou_OxfordPets.json", 2944, 736, 3669, 37),
    "oxford_flowers": ("split_zhou_OxfordFlowers.json", 4093, 1633, 2463, 102),
    "caltech101": ("split_zhou_Caltech101.json", 4128, 1649, 2465, 100),
    "stanford_cars": ("split_zhou_StanfordCars.json", 6509, 1635, 8041, 196),
    "ucf101": ("split_zhou_UCF101.json", 7639, 1898, 3783, 101),
}


def touch_all(image_root: Path, relpaths: Iterable[str]) -> None:
    """Empty placeholder files at `relpaths` (the loader only checks that images exist)."""
    made: set[str] = set()
    for rel in relpaths:
        folder = os.path.dirname(rel)
        if folder not in made:
            (image_root / folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        open(image_root / rel, "wb").close()


def install_real_split(root: Path, name: str, images: bool = True) -> Path:
    """A CoOp folder for registry dataset `name` under `root`: the real split file (plus placeholder images)."""
    import json

    spec = DATASETS[name]
    split_name = REAL_SPLITS[name][0]
    dataset_dir = root / spec.dataset_dir
    dataset_dir.mkdir(parents=True)
    shutil.copyfile(BUNDLED_DIR / split_name, dataset_dir / split_name)
    if not images:
        return dataset_dir
    doc = json.loads((dataset_dir / split_name).read_text())
    image_root = dataset_dir / spec.image_dir if spec.image_dir else dataset_dir
    touch_all(image_root, (row[0] for key in ("train", "val", "test") for row in doc[key]))
    return dataset_dir


def png_bytes(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(size, color))


def items(spec: str) -> list[Item]:
    """Items from a compact label string: "0 0 1 2 1" -> paths i.jpg with those labels, names c<label>."""
    return [Item(f"{i}.jpg", int(y), f"c{y}") for i, y in enumerate(spec.split())]


def tgz(entries: dict[str, bytes]) -> bytes:
    """A gzipped tar archive in memory holding `entries` (name -> bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
