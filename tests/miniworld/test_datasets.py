from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from bmip.miniworld.datasets import (
    DATASETS,
    SIZES,
    WORLD_FILE,
    dataset_classes,
    generate_world,
    is_up_to_date,
    world_spec,
)
from bmip.miniworld.render import IMAGE_SIZE
from bmip.miniworld.world import concept_from_name


def _split(root: Path, name: str) -> dict:
    return json.loads((root / DATASETS[name].dir / "split.json").read_text())


def test_benchmark_has_the_paper_roles() -> None:
    downstream = [s for s in DATASETS.values() if s.role == "downstream"]
    source = [s for s in DATASETS.values() if s.role == "source"]
    shifts = [s for s in DATASETS.values() if s.role == "shift"]
    assert len(downstream) >= 5 and all(s.n_classes >= 10 for s in downstream)
    assert len({s.style for s in downstream}) == len(downstream)
    assert len(source) == 1 and source[0].n_classes >= 40
    assert len(shifts) == 4 and all(s.source == source[0].name for s in shifts)


def test_every_dataset_has_images_and_a_coop_split(world_root: Path, world_seed: int) -> None:
    preset = SIZES["test"]
    for name, spec in DATASETS.items():
        split = _split(world_root, name)
        assert set(split) == {"train", "val", "test"}
        classes = [c.name for c in dataset_classes(spec, world_seed)]
        per_class = {"train": preset.train, "val": preset.val, "test": preset.test}
        if spec.role == "shift":
            per_class = {"train": 0, "val": 0, "test": preset.shift_test}
        seen_paths = set()
        for part, items in split.items():
            assert len(items) == per_class[part] * len(classes)
            for rel, label, classname in items:
                assert classes[label] == classname
                assert rel.split("/")[0] == classname.replace(" ", "_")
                assert rel not in seen_paths
                seen_paths.add(rel)
        labels = sorted({label for items in split.values() for _, label, _ in items})
        assert labels == list(range(len(classes)))
        folders = sorted(p.name for p in (world_root / spec.dir / "images").iterdir())
        assert folders == sorted(c.replace(" ", "_") for c in classes)
        rel = split["test"][0][0]
        image = Image.open(world_root / spec.dir / "images" / rel)
        assert image.mode == "RGB" and image.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_class_names_are_valid_distinct_phrases(world_seed: int) -> None:
    for name, spec in DATASETS.items():
        classes = [c.name for c in dataset_classes(spec, world_seed)]
        assert len(classes) == spec.n_classes == len(set(classes))
        for classname in classes:
            assert concept_from_name(classname).name == classname


def test_shift_variants_keep_source_classes_in_source_order(world_seed: int) -> None:
    for spec in DATASETS.values():
        if spec.role != "shift":
            continue
        source = [c.name for c in dataset_classes(DATASETS[spec.source], world_seed)]
        mine = [c.name for c in dataset_classes(spec, world_seed)]
        positions = [source.index(c) for c in mine]
        assert positions == sorted(positions)


def test_base_and_novel_halves_both_exist() -> None:
    for spec in DATASETS.values():
        n = spec.n_classes
        assert 0 < n - math.ceil(n / 2) <= math.ceil(n / 2)


def test_world_json_detects_stale_roots(world_root: Path, world_seed: int) -> None:
    assert is_up_to_date(world_root, world_seed, "test")
    assert not is_up_to_date(world_root, world_seed + 1, "test")
    assert not is_up_to_date(world_root, world_seed, "default")
    record = json.loads((world_root / "world.json").read_text())
    assert record["spec"] == world_spec(world_seed, "test")
    assert record["spec"]["generator_version"]


def test_generation_is_deterministic_and_seeded(tmp_path: Path, world_root: Path, world_seed: int) -> None:
    # world_root was written by worker processes; this copy is written serially: same bytes.
    names = ["aerial", "objects_a"]
    record = generate_world(tmp_path / "again", seed=world_seed, size="test", datasets=names, workers=1)
    assert record["generation"]["workers"] == 1
    assert json.loads((world_root / WORLD_FILE).read_text())["generation"]["workers"] == 2
    for name in names:
        assert _split(world_root, name) == _split(tmp_path / "again", name)
        for rel, _, _ in _split(world_root, name)["test"]:
            a = (world_root / name / "images" / rel).read_bytes()
            b = (tmp_path / "again" / name / "images" / rel).read_bytes()
            assert a == b
    other = world_spec(world_seed + 1, "test")["datasets"]["toys"]["classnames"]
    assert other != world_spec(world_seed, "test")["datasets"]["toys"]["classnames"]


def test_up_to_date_root_is_not_rewritten(tmp_path: Path) -> None:
    root = tmp_path / "w"
    generate_world(root, seed=0, size="test", datasets=["aerial"])
    split = root / "aerial" / "split.json"
    stamp = split.stat().st_mtime_ns
    generate_world(root, seed=0, size="test", datasets=["aerial"])
    assert split.stat().st_mtime_ns == stamp
    assert not any(p.name.startswith(".") for p in root.iterdir())


def test_downstream_images_of_a_class_vary(world_root: Path) -> None:
    split = _split(world_root, "toys")
    rels = [rel for rel, label, _ in split["train"] if label == 0]
    images = [np.asarray(Image.open(world_root / "toys" / "images" / r)) for r in rels]
    assert not np.array_equal(images[0], images[1])
