"""The registry describes the paper's 15 datasets as CoOp lays them out, with honest sources."""
from __future__ import annotations

import re
from pathlib import Path

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


# The only files checked by trust on first use: nothing is published for them (sources.py).
TOFU = {"UCF-101-midframes.zip", "imagenet_prompt.json"}
# Published SHA-256 of the archives that used to be pinned on first use (TFDS; HF datasets for Sketch).
PUBLISHED_SHA256 = {
    "fgvc-aircraft-2013b.tar.gz": "d5f68b1b81d6d7831eb9d5c5517074176b5dfbce6bcb43dc14ed1c66a87b8d75",
    "imagenetv2-matched-frequency.tar.gz": "f0c37fdf925916b19ea1323cd9a2208cdb6959ba2c32eef2a7fc393835c9ca7c",
    "ImageNet-Sketch.zip": "4d3ce6b82a7c48aabf14aeac105eb533e75707f152cc858f55bfc022031a72ed",
    "imagenet-a.tar": "3bb3632277e6ba6392ea64c02ddbf4dd2266c9caffd6bc09c9656d28f012589e",
    "imagenet-r.tar": "18c6bf493b39a0d975d48e587437f562caab9c52ae6327dcfa9dd8eb54aa1b52",
    "cars_train.tgz": "512b227b30e2f0a8aab9e09485786ab4479582073a144998da74d64b801fd288",
    "cars_test.tgz": "bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243",
    "SUN397.tar.gz": "f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec",
}


def test_sources_are_well_formed():
    for spec in DATASETS.values():
        for s in spec.sources:
            assert s.urls or s.dead_urls or s.bundled, s.filename
            assert s.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", s.sha256)
            assert s.md5 is None or re.fullmatch(r"[0-9a-f]{32}", s.md5)
            assert s.git_blob is None or re.fullmatch(r"[0-9a-f]{7,40}", s.git_blob)
            assert not s.nested or s.member, s.filename
            assert s.has_published_checksum == bool(s.published), s.filename  # each checksum says who published it
            assert s.has_published_checksum or s.filename in TOFU, f"{s.filename} is pinned on first use"
    assert DATASETS["imagenet"].manual and DATASETS["imagenet"].required


def test_archives_are_checked_against_their_published_sha256():
    sources = {s.filename: s for spec in DATASETS.values() for s in spec.sources}
    for filename, sha256 in PUBLISHED_SHA256.items():
        assert sources[filename].sha256 == sha256 and sources[filename].size, filename
    assert sources["SUN397.tar.gz"].size == 39_077_296_924
    assert (sources["cars_train.tgz"].md5, sources["cars_test.tgz"].md5) == (
        "065e5b463ae28d29e77c1b4b166cfe61", "4ce7ebf6a94d07f1952d94dd34c4d501")
    # the split files of Food101 and SUN397 come from the pinned commit first, Drive second
    for name in ("split_zhou_Food101.json", "split_zhou_SUN397.json"):
        assert "cross_modal_adaptation/c7e7e68ae4eeadfab98e7886b2d6c9cf48a7ceb5/splits/" in sources[name].urls[0]
        assert "drive.usercontent.google.com" in sources[name].urls[1] and sources[name].git_blob


@pytest.mark.parametrize("name", ["stanford_cars", "sun397"])
def test_datasets_without_a_live_source_are_manual(name):
    spec = DATASETS[name]
    assert spec.manual and spec.required
    archives = [s for s in spec.sources if s.extract]
    assert archives and all(not s.urls and s.dead_urls for s in archives)
    text = spec.manual.format(root="/data")
    assert all(s.sha256 in text and s.md5 in text and f"{s.size:,}" in text for s in archives)
    assert all(f"/data/_downloads/{s.filename}" in text for s in archives)


def test_hugging_face_sources_name_a_revision():
    from bmip.data.hub import hub_file

    hub = [hub_file(u) for spec in DATASETS.values() for s in spec.sources for u in s.urls if hub_file(u)]
    assert {(h.repo_id, h.revision) for h in hub} == {
        ("torchgeo/eurosat", "c877bcd43f099cd0196738f714544e355477f3fd"),
        ("vaishaal/ImageNetV2", "d626240be2538720e83103a0e1178d24aca8b12c"), ("vaishaal/ImageNetV2", "main"),
        ("songweig/imagenet_sketch", "main")}
    assert all(h.repo_type == "dataset" for h in hub)


def test_bundled_files_match_the_recorded_checksums():
    """Every bundled source names a shipped file with the pinned size and SHA-256, and every shipped
    data file is a source's (the 7 split files, cat_to_name.json and CoPrompt's 10 description files),
    listed with its hash in its folder's README beside a licence; ImageNet's classnames.txt is the text
    built from open_clip's CLIP class names and timm's wnid list, as that README says."""
    bundled = {s.bundled: s for spec in DATASETS.values() for s in spec.sources if s.bundled}
    for name, s in bundled.items():
        local = BUNDLED_DIR / name
        assert (local.stat().st_size, file_sha256(local)) == (s.size, s.sha256), name
        assert s.sha256 in (local.parent / "README.md").read_text() and (local.parent / "LICENSE").is_file()
    shipped = {p.relative_to(BUNDLED_DIR).as_posix() for p in BUNDLED_DIR.rglob("*")
               if p.is_file() and p.name not in ("README.md", "LICENSE")}
    assert shipped == set(bundled) and len(bundled) == 19
    import open_clip.zero_shot_metadata as meta
    import timm

    wnids = (Path(timm.__file__).parent / "data/_info/imagenet_synsets.txt").read_text().split()
    built = "".join(f"{w} {n}\n" for w, n in zip(wnids, meta.IMAGENET_CLASSNAMES))
    assert (BUNDLED_DIR / "imagenet" / "classnames.txt").read_text(encoding="utf-8") == built and len(wnids) == 1000


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
    import bmip.data

    readme = (Path(bmip.data.__file__).parent / "README.md").read_text()
    assert all(f"| `{key}` | {spec.display_name} |" in readme for key, spec in DATASETS.items())
