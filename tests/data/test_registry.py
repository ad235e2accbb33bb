"""The registry describes the paper's 15 datasets as CoOp lays them out, with honest sources."""
from __future__ import annotations

import re

import pytest

from bmip.data import DATASETS, file_sha256, get_spec, items_hash, resolve_name, zero_shot_prompts
from bmip.data.coop import READERS
from bmip.data.items import Item
from bmip.data.sources import BUNDLED_DIR

TEMPLATES = {
    "oxford_pets": "a photo of a {}, a type of pet.", "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.", "ucf101": "a photo of a person doing {}.",
    "food101": "a photo of {}, a type of food.", "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    **{k: "a photo of a {}." for k in ("imagenet", "sun397", "caltech101", "stanford_cars", "imagenetv2",
                                       "imagenet_sketch", "imagenet_a", "imagenet_r")},
}
DISPLAY = {"oxford_flowers": "Flowers102", "dtd": "DTD", "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R",
           "imagenet_sketch": "ImageNet-Sketch", "imagenetv2": "ImageNetV2", "fgvc_aircraft": "FGVCAircraft"}


def test_keys_templates_and_display_names():
    assert set(DATASETS) == set(TEMPLATES)
    for key, template in TEMPLATES.items():
        assert DATASETS[key].template == template and DATASETS[key].name == key
    for key, display in DISPLAY.items():
        assert DATASETS[key].display_name == display


def test_coop_folders_and_class_counts():
    spec = {k: (s.dataset_dir, s.image_dir, s.num_classes) for k, s in DATASETS.items()}
    assert spec["caltech101"] == ("caltech-101", "101_ObjectCategories", 100)
    assert spec["food101"] == ("food-101", "images", 101)
    assert spec["imagenet_a"] == ("imagenet-adversarial", "imagenet-a", 200)
    assert spec["imagenet_r"] == ("imagenet-rendition", "imagenet-r", 200)
    assert spec["stanford_cars"][:2] == ("stanford_cars", "")
    assert [k for k, s in DATASETS.items() if s.test_only] == ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    assert [k for k, s in DATASETS.items() if not s.sample_val] == ["imagenet"]
    assert all(s.reader in READERS for s in DATASETS.values())


@pytest.mark.parametrize("alias, key", [("OxfordPets", "oxford_pets"), ("Flowers102", "oxford_flowers"),
                                        ("DescribableTextures", "dtd"), ("ImageNet-Sketch", "imagenet_sketch"),
                                        ("caltech-101", "caltech101"), ("imagenet-a", "imagenet_a")])
def test_aliases(alias, key):
    assert resolve_name(alias) == key and get_spec(alias).name == key
    with pytest.raises(KeyError, match="known: imagenet"):
        get_spec("mnist")


def test_sources_are_well_formed():
    for spec in DATASETS.values():
        for s in spec.sources:
            assert s.urls or s.dead_urls or s.copy_from, s.filename
            assert s.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", s.sha256)
            assert s.md5 is None or re.fullmatch(r"[0-9a-f]{32}", s.md5)
            assert not s.nested or s.member, s.filename
    assert DATASETS["imagenet"].manual and DATASETS["imagenet"].required
    assert not DATASETS["stanford_cars"].sources[0].urls  # dead: supplied by hand


def test_bundled_files_match_the_recorded_checksums():
    """Every bundled source names a shipped file with the pinned size and SHA-256, and every shipped
    data file is a source's (the 7 split files, cat_to_name.json and CoPrompt's 10 description files),
    listed with its hash in its folder's README beside a licence."""
    bundled = {s.bundled: s for spec in DATASETS.values() for s in spec.sources if s.bundled}
    for name, s in bundled.items():
        local = BUNDLED_DIR / name
        assert (local.stat().st_size, file_sha256(local)) == (s.size, s.sha256), name
        assert s.sha256 in (local.parent / "README.md").read_text() and (local.parent / "LICENSE").is_file()
    shipped = {p.relative_to(BUNDLED_DIR).as_posix() for p in BUNDLED_DIR.rglob("*")
               if p.is_file() and p.name not in ("README.md", "LICENSE")}
    assert shipped == set(bundled) and len(bundled) == 18


def test_items_hash_is_canonical_and_order_sensitive():
    a, b = Item("x/1.jpg", 0, "x"), Item("y/ü.jpg", 1, "y")
    assert items_hash([a, b]) == items_hash((it for it in [a, b])) != items_hash([b, a])
    import hashlib

    canonical = '[["x/1.jpg",0,"x"],["y/ü.jpg",1,"y"]]'.encode()
    assert items_hash([a, b]) == hashlib.sha256(canonical).hexdigest()


def test_zero_shot_prompts():
    assert zero_shot_prompts("{} texture.", ["banded", "Apply_Eye_Makeup"]) == ["banded texture.",
                                                                                "Apply Eye Makeup texture."]


def test_readme_lists_every_dataset():
    from pathlib import Path

    import bmip.data

    readme = (Path(bmip.data.__file__).parent / "README.md").read_text()
    assert all(f"| `{key}` | {spec.display_name} |" in readme for key, spec in DATASETS.items())
