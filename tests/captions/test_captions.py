"""The captions stage: deterministic files keyed by path and content, reuse, refusals, captioners, audit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bmip.audit.captions import check_captions
from bmip.audit.findings import Findings
from bmip.audit.layout import Experiment
from bmip.captions import (
    CaptionsError,
    MissingCaptionError,
    StaleCaptionError,
    captions_for,
    captions_path,
    load_captions,
    read_captions,
)
from bmip.captions import stage
from bmip.captions.stage import build_captions
from bmip.config import validate
from bmip.data import load_dataset
from bmip.engine import inventory as INV
from bmip.engine import paths
from bmip.io import file_sha256
from bmip.miniworld.datasets import generate_world
from bmip.miniworld.world import COLOURS, PATTERN_WORDS

DATASETS = ["toys", "objects_a"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("miniworld")
    generate_world(root, seed=0, size="test", datasets=DATASETS, workers=1)
    return root


def _config(tmp: Path, data_root: Path, captions: dict, **changes) -> dict:
    config = {
        "experiment": "captions", "results_dir": str(tmp / "results"), "data_root": str(data_root),
        "backbone": {"model": "test-vit-tiny", "pretrained": "none"}, "miniworld": {"size": "test"},
        "seeds": [1, 2], "shots": 2, "methods": ["coop"],
        "protocols": {"base2novel": {"datasets": ["toys"]},
                      "domain_generalization": {"source": "toys", "targets": ["objects_a"]}},
        "captions": captions,
    }
    config.update(changes)
    return validate(config)


def _copy_world(world: Path, tmp: Path) -> Path:
    import shutil

    return Path(shutil.copytree(world, tmp / "data"))


def _record_images(config: dict) -> None:
    """What the workflow does when it starts: the inventories of the images the runs read."""
    INV.update_inventories(config, stage.caption_datasets(config))


def _count_captioned(monkeypatch) -> list[str]:
    """The paths every captioner is asked to caption, from now on."""
    asked: list[str] = []
    real = stage.build_captioner

    def spy(config, data):
        captioner = real(config, data)
        caption = captioner.caption
        captioner.caption = lambda images: (asked.extend(i.path for i in images), caption(images))[1]
        return captioner

    monkeypatch.setattr(stage, "build_captioner", spy)
    return asked


def _darken(path: Path) -> None:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    Image.fromarray((pixels * 0.2).astype(np.uint8)).save(path)


def test_miniworld_captions_every_image_read_and_the_same_images_give_the_same_bytes(world, tmp_path):
    config = _config(tmp_path, world, {"captioner": "miniworld"})
    _record_images(config)
    out = build_captions(config, "toys")
    first = out.read_bytes()
    doc = json.loads(first)
    parts = INV.checked_parts(config, ["toys"])["toys"][1]
    assert set(doc["captions"]) == {it.path for items in parts.values() for it in items}
    assert set(parts) == {"seed1 train", "seed1 val", "seed2 train", "seed2 val", "test"}
    assert doc["images"]["content_sha256"] == json.loads(INV.inventory_path(tmp_path / "results" / "captions",
                                                                            "toys").read_text())["files"]["content_sha256"]
    provenance = doc["captioner"]
    assert provenance["name"] == "miniworld" and provenance["instruction"] and provenance["libraries"]["numpy"]
    out.unlink()
    stage.previous_path(out.parent.parent, "toys").unlink()
    assert build_captions(config, "toys").read_bytes() == first  # from scratch: the same bytes
    assert build_captions(config, "toys").read_bytes() == first  # reused: the same bytes


def test_miniworld_captions_never_name_the_class(world, tmp_path):
    config = _config(tmp_path, world, {"captioner": "miniworld"})
    for dataset in DATASETS:
        build_captions(config, dataset)
        data = load_dataset(dataset, world)
        classes = {it.path: it.classname for it in data.train + data.val + data.test}
        for path, entry in read_captions(captions_path(tmp_path / "results" / "captions", dataset)).entries.items():
            colour, pattern, shape = classes[path].split()
            words = entry[1].replace(",", " ").replace(".", " ").split()
            assert classes[path] not in entry[1] and shape not in words, entry
            assert not set(PATTERN_WORDS[pattern]) & set(words), entry
            if dataset == "objects_a":  # camouflage: the background's hue is the object's, so it is never named
                assert not set(COLOURS) & set(words), entry


def test_a_changed_image_gets_a_new_caption_and_only_it(world, tmp_path, monkeypatch):
    config = _config(tmp_path, _copy_world(world, tmp_path), {"captioner": "miniworld"})
    _record_images(config)
    before = json.loads(build_captions(config, "toys").read_text())["captions"]
    changed = sorted(before)[3]
    _darken(Path(config["data_root"]) / "toys" / "images" / changed)
    with pytest.raises(CaptionsError, match="not those .* records"):  # the workflow records the images first
        build_captions(config, "toys")
    _record_images(config)
    asked = _count_captioned(monkeypatch)
    after = json.loads(build_captions(config, "toys").read_text())["captions"]
    assert asked == [changed]
    assert after[changed]["sha256"] != before[changed]["sha256"] and "in the dark" in after[changed]["caption"]
    assert {p: e for p, e in after.items() if p != changed} == {p: e for p, e in before.items() if p != changed}


def test_a_missing_caption_or_a_changed_image_is_refused_naming_the_image(world, tmp_path):
    config = _config(tmp_path, _copy_world(world, tmp_path), {"captioner": "miniworld"})
    _record_images(config)
    build_captions(config, "toys")
    data = load_dataset("toys", Path(config["data_root"]))
    captions = load_captions(config, "toys")
    with pytest.raises(MissingCaptionError, match=r"toys: image other/9\.png has no caption .*bmip captions"):
        captions.caption("other/9.png", "0" * 64)
    test = data.test[:3]
    texts, record = captions_for(config, data, test)
    assert texts == [captions.entries[it.path][1] for it in test]
    assert record["file"] == "captions/toys.json" and record["captioner"]["name"] == "miniworld"
    assert record["sha256"] == file_sha256(captions_path(paths.experiment_dir(config), "toys"))
    _darken(data.image_root / test[1].path)
    with pytest.raises(StaleCaptionError, match=rf"toys: image {test[1].path} changed since it was captioned"):
        captions_for(config, data, test)
    with pytest.raises(CaptionsError, match="no captions for objects_a"):
        load_captions(config, "objects_a")


def test_the_miniworld_captioner_refuses_a_dataset_it_did_not_generate(tmp_path):
    from tests.engine.toy import make_toy_dataset

    make_toy_dataset(tmp_path / "data", "toy")
    config = _config(tmp_path, tmp_path / "data", {"captioner": "miniworld"},
                     protocols={"base2novel": {"datasets": ["toy"]}})
    with pytest.raises(CaptionsError, match="captions only the generated miniworld datasets"):
        build_captions(config, "toy")


def test_a_users_captions_file_is_checked_against_the_images(world, tmp_path):
    data = load_dataset("objects_a", world)
    mine = {it.path: f"my caption {i}" for i, it in enumerate(data.test)}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mine))
    config = _config(tmp_path, world, {"captioner": "file", "file": str(path)},
                     protocols={"base2novel": {"datasets": ["toys"]},
                                "domain_generalization": {"source": "toys", "targets": ["objects_a"]}})
    out = build_captions(config, "objects_a")
    assert {p: e["caption"] for p, e in json.loads(out.read_text())["captions"].items()} == mine
    missing = sorted(mine)[0]
    del mine[missing]
    csv = tmp_path / "mine.csv"
    csv.write_text("path,caption\n" + "".join(f"{p},{c}\n" for p, c in mine.items()))
    config["captions"]["file"] = str(csv)
    with pytest.raises(MissingCaptionError, match=rf"objects_a: 1 image\(s\) .* no caption .*{missing}"):
        build_captions(config, "objects_a")


def test_the_audit_checks_captions_against_the_inventory(world, tmp_path):
    config = _config(tmp_path, world, {"captioner": "miniworld"})
    _record_images(config)
    exp_dir = tmp_path / "results" / "captions"
    exp = Experiment(path=exp_dir, config=config, root=tmp_path)
    findings = Findings()
    check_captions(exp, findings)
    assert [f.file for f in findings.problems] == ["captions/toys.json", "captions/objects_a.json"]
    for dataset in DATASETS:
        build_captions(config, dataset)
    findings = Findings()
    check_captions(exp, findings)
    assert findings.items == [] and findings.counts["captions files"] == 2
    inventory = INV.inventory_path(exp_dir, "toys")
    doc = json.loads(inventory.read_text())
    doc["files"]["content_sha256"] = "0" * 64
    inventory.write_text(json.dumps(doc))
    doc = json.loads(captions_path(exp_dir, "objects_a").read_text())
    del doc["captioner"]["instruction"]
    captions_path(exp_dir, "objects_a").write_text(json.dumps(doc))
    findings = Findings()
    check_captions(exp, findings)
    messages = {f.file: f.message for f in findings.problems}
    assert "the images changed after they were captioned" in messages["captions/toys.json"]
    assert "lacks instruction" in messages["captions/objects_a.json"]


def test_config_problems_name_what_the_captioner_needs(world, tmp_path):
    config = _config(tmp_path, world, {"captioner": "file"})
    assert stage.config_problems(config) == [
        "captions.file: the file captioner needs the path of your captions file (CSV path,caption or JSON)"]
    config = _config(tmp_path, world, {"captioner": "miniworld"})
    del config["miniworld"]
    assert "generates none" in stage.config_problems(config)[0]
    assert stage.caption_datasets({k: v for k, v in config.items() if k != "captions"}) == []


@pytest.fixture(scope="module")
def tiny_mllm(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from tests.captions.tiny_mllm import make_tiny_mllm

    return make_tiny_mllm(tmp_path_factory.mktemp("tiny-mllm"))


def test_the_mllm_captioner_on_a_tiny_random_model(world, tiny_mllm, tmp_path, monkeypatch):
    """The real loading and generation code, on a model built from a config: deterministic bytes,
    and a changed image captioned again alone (objects_a's 72 test images, fp32 on the CPU)."""
    config = _config(tmp_path, _copy_world(world, tmp_path),
                     {"captioner": "mllm", "model": str(tiny_mllm), "batch_size": 8, "max_new_tokens": 4},
                     device="cpu", seeds=[1])
    _record_images(config)
    out = build_captions(config, "objects_a")
    first = out.read_bytes()
    doc = json.loads(first)
    provenance = doc["captioner"]
    assert provenance["name"] == "mllm" and provenance["model"] == str(tiny_mllm) and len(doc["captions"]) == 72
    assert provenance["generation"]["dtype"] == "float32" and provenance["generation"]["do_sample"] is False
    assert provenance["libraries"]["transformers"] and "category" in provenance["instruction"]
    assert any(entry["caption"] for entry in doc["captions"].values())  # random weights: some say nothing
    out.unlink()
    stage.previous_path(out.parent.parent, "objects_a").unlink()
    assert build_captions(config, "objects_a").read_bytes() == first
    changed = sorted(doc["captions"])[5]
    _darken(Path(config["data_root"]) / "objects_a" / "images" / changed)
    _record_images(config)
    asked = _count_captioned(monkeypatch)
    after = json.loads(build_captions(config, "objects_a").read_text())["captions"]
    assert asked == [changed]
    assert after[changed]["sha256"] != doc["captions"][changed]["sha256"]
    assert {p: e for p, e in after.items() if p != changed} == \
           {p: e for p, e in doc["captions"].items() if p != changed}
