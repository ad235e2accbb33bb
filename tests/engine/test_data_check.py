"""`bmip check-data`: every image a config reads is decoded before any training; every unreadable
file is listed at once; an unchanged dataset is not decoded again, a changed one is."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmip.config import validate
from bmip.data.errors import DataCheckError
from bmip.engine.data_check import check_data, record_path
from tests.data.test_decode import write_broken_images, write_odd_images

CLASSES = ("fish", "frog", "newt", "toad")  # 2 base, 2 new: what base-to-novel needs


def make_pond(data_root: Path) -> dict[str, Path]:
    """A class-folder dataset (bring your own) with 10 good images per class, the odd but valid
    files in `fish/` and the broken ones in `frog/`; returns the broken files by name."""
    rng = np.random.default_rng(1)
    for name in CLASSES:
        folder = data_root / "pond" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"good_{i}.png")
    write_odd_images(data_root / "pond" / "fish")
    return write_broken_images(data_root / "pond" / "frog")


def pond_config(tmp_path: Path, **changes) -> dict:
    raw = {
        "experiment": "pond",
        "results_dir": str(tmp_path / "results"),
        "data_root": str(tmp_path / "data"),
        "backbone": {"model": "test-vit-tiny", "pretrained": "none"},
        "seeds": [1, 2],
        "shots": 16,  # more than each class's train part: every image of the dataset is read
        "methods": ["zsclip"],
        "protocols": {"base2novel": {"datasets": ["pond"]}},
    }
    raw.update(changes)
    return validate(raw)


def test_every_unreadable_file_is_listed_in_one_message_and_odd_valid_ones_pass(tmp_path):
    broken = make_pond(tmp_path / "data")
    config = pond_config(tmp_path)
    with pytest.raises(DataCheckError) as caught:
        check_data(config, workers=2)
    message = str(caught.value)
    listed = {line.strip().split(": ")[0] for line in message.splitlines() if line.startswith("  /")}
    assert listed == {str(path) for path in broken.values()}  # exactly the broken files, all of them
    assert f"{len(broken)} image file(s) in 1 dataset(s) cannot be read" in message
    for kind in ("empty (0 bytes)", "truncated", "not an image: a text file", "not an image format"):
        assert kind in message
    assert "what to do: replace each file with a good copy, or delete it" in message
    record = record_path(config, "pond")
    assert '"status": "failed"' in record.read_text()


def test_an_unchanged_dataset_is_not_decoded_again_and_a_changed_file_is(tmp_path, caplog):
    broken = make_pond(tmp_path / "data")
    for path in broken.values():
        path.unlink()
    config = pond_config(tmp_path)
    first = check_data(config, workers=2)
    assert [c.decoded for c in first] == [46]  # 4 classes x 10 good and 6 odd-valid fish (the broken frogs removed)
    with caplog.at_level(logging.INFO, logger="bmip"):
        again = check_data(config, workers=2)
    assert [c.decoded for c in again] == [0] and again[0].record == first[0].record
    assert "1 dataset(s) unchanged and not decoded again" in caplog.text
    # A file replaced in place (same name, new content and time) is decoded again: the whole dataset.
    target = tmp_path / "data" / "pond" / "fish" / "good_3.png"
    Image.new("RGB", (24, 24), (9, 9, 9)).save(target)
    os.utime(target, ns=(1, 1))
    assert [c.decoded for c in check_data(config, workers=2)] == [46]
    # ... and a file that breaks is found.
    target.write_bytes(target.read_bytes()[:40])
    with pytest.raises(DataCheckError, match="good_3.png: truncated"):
        check_data(config, workers=2)


def test_a_dataset_that_failed_is_checked_again_and_passes_once_fixed(tmp_path):
    broken = make_pond(tmp_path / "data")
    make_pond(tmp_path / "data_b")
    shutil.move(tmp_path / "data_b" / "pond", tmp_path / "data" / "clean")
    for path in (tmp_path / "data" / "clean" / "frog").iterdir():
        if path.name in broken:
            path.unlink()
    config = pond_config(tmp_path, protocols={"base2novel": {"datasets": ["clean", "pond"]}})
    with pytest.raises(DataCheckError, match="in 1 dataset"):
        check_data(config)
    for path in broken.values():
        path.unlink()
    checks = check_data(config)
    assert {c.dataset: c.decoded for c in checks} == {"clean": 0, "pond": 46}  # clean passed before


def test_only_the_images_the_config_reads_are_checked(tmp_path):
    import json

    from bmip.data import fewshot_split, load_dataset

    broken = make_pond(tmp_path / "data")
    config = pond_config(tmp_path, shots=1, seeds=[1])
    data = load_dataset("pond", config["data_root"])
    train, val = fewshot_split(data, 1, 1)
    read = {it.path for it in [*train, *val, *data.test]}
    expected = {f"frog/{name}" for name in broken} & read
    if expected:
        with pytest.raises(DataCheckError):
            check_data(config)
    else:
        check_data(config)
    record = json.loads(record_path(config, "pond").read_text())
    assert set(record["parts"]) == {"seed1 train", "seed1 val", "test"}
    assert record["parts"]["seed1 train"]["n"] == 4 and record["parts"]["seed1 val"]["n"] == 4  # 1 shot per class
    assert record["files"]["n"] == len(read) < len(data.train) + len(data.val) + len(data.test)
    assert {p["path"] for p in record["problems"]} == expected
