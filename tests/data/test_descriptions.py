"""Class descriptions: CoPrompt's files checked against their SHA-256 wherever they come from
(bundled, installed, downloaded), and a named fallback for datasets that have none."""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest

from bmip.data import ChecksumError, DataError, Dataset, ManualDownloadRequired, class_descriptions, download, load_dataset
from bmip.data.registry import DATASETS
from bmip.data.sources import BUNDLED_DIR, DESCRIPTIONS

from .conftest import Route
from .helpers import REAL_SPLITS

COMMIT = "a2a6c12e3622cfe4b3a127f4ba0c4f3eb841418c"


def _dataset(name: str, classnames: list[str], template: str = "a photo of a {}.") -> Dataset:
    return Dataset(name=name, image_root=Path("."), train=[], val=[], test=[], classnames=classnames, template=template)


def test_bundled_files_describe_every_class_of_their_dataset(splits_root):
    """With nothing under the data root, the bundled copy is used (after its SHA-256 check); its keys
    are the split files' class names with underscores as spaces."""
    for name in REAL_SPLITS:
        ds = load_dataset(name, splits_root, check_images=False)
        found = class_descriptions(ds, splits_root)
        source = DESCRIPTIONS[name]
        assert found.record == {"origin": "coprompt", "file": str(BUNDLED_DIR / source.bundled),
                                "sha256": source.sha256, "url": source.urls[0]}
        assert f"ShuvenduRoy/CoPrompt/{COMMIT}/gpt_file/" in source.urls[0]
        assert all(found.per_class(ds.classnames)), name
    assert set(DESCRIPTIONS) == {"imagenet", *REAL_SPLITS, "food101", "fgvc_aircraft", "sun397"}
    assert not DESCRIPTIONS["imagenet"].bundled and all(s.bundled for k, s in DESCRIPTIONS.items() if k != "imagenet")


def test_an_installed_copy_is_verified_and_a_modified_one_refused(tmp_path):
    ds = _dataset("eurosat", ["Annual_Crop_Land"])
    installed = tmp_path / DESCRIPTIONS["eurosat"].dest
    installed.parent.mkdir(parents=True)
    shutil.copyfile(BUNDLED_DIR / DESCRIPTIONS["eurosat"].bundled, installed)
    found = class_descriptions(ds, tmp_path)
    assert found.record["file"] == str(installed) and len(found.per_class(ds.classnames)[0]) == 10
    installed.write_bytes(installed.read_bytes().replace(b"Crop", b"Corn", 1))
    with pytest.raises(ChecksumError, match=r"eurosat_prompt.json is not CoPrompt's description file .*SHA-256.*"
                                            r"delete it to use the copy bundled with bmip"):
        class_descriptions(ds, tmp_path)


def test_a_modified_bundled_copy_is_refused(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle" / "coprompt"
    bundle.mkdir(parents=True)
    original = (BUNDLED_DIR / DESCRIPTIONS["dtd"].bundled).read_bytes()
    (bundle / "dtd_prompt.json").write_bytes(original.replace(b"a", b"b", 1))
    monkeypatch.setattr("bmip.data.descriptions.BUNDLED_DIR", bundle.parent)
    with pytest.raises(ChecksumError, match="dtd_prompt.json: SHA-256"):
        class_descriptions(_dataset("dtd", ["banded"]), tmp_path)


def test_bmip_download_installs_the_bundled_descriptions_offline(tmp_path):
    """No URL is tried (only 127.0.0.1 may be contacted, and no server runs)."""
    with pytest.raises(DataError):  # the car images themselves have no live source
        download("stanford_cars", tmp_path, progress=False, retries=0)
    rel = DESCRIPTIONS["stanford_cars"].dest
    assert (tmp_path / rel).read_bytes() == (BUNDLED_DIR / DESCRIPTIONS["stanford_cars"].bundled).read_bytes()
    manifest = json.loads((tmp_path / "_downloads" / "manifest.json").read_text())
    assert manifest["files"][rel]["origin"].startswith("bundled with bmip")


def test_imagenet_descriptions_download_only_and_are_pinned(http_server, tmp_path, monkeypatch):
    ds = _dataset("imagenet", ["tench", "goldfish"])
    with pytest.raises(DataError, match=r"imagenet_prompt.json not found; run `bmip download imagenet"):
        class_descriptions(ds, tmp_path)
    body = json.dumps({"tench": ["a fish.", "a green fish."], "goldfish": ["an orange fish.", "a pet fish."]}).encode()
    http_server.routes["/imagenet_prompt.json"] = Route(body, content_type="application/json")
    served = dataclasses.replace(DESCRIPTIONS["imagenet"], urls=(http_server.url("/imagenet_prompt.json"),))
    monkeypatch.setitem(DESCRIPTIONS, "imagenet", served)
    spec = DATASETS["imagenet"]
    monkeypatch.setitem(DATASETS, "imagenet", dataclasses.replace(
        spec, sources=tuple(served if s.filename == served.filename else s for s in spec.sources)))
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01440764 tench\n")  # found in place
    with pytest.raises(ManualDownloadRequired):  # the images need the manual step; the descriptions do not
        download("imagenet", tmp_path, progress=False, backoff=0)
    found = class_descriptions(ds, tmp_path)
    assert found.per_class(["tench", "goldfish"]) == [("a fish.", "a green fish."), ("an orange fish.", "a pet fish.")]
    pinned = json.loads((tmp_path / "_downloads" / "manifest.json").read_text())["files"]["imagenet/imagenet_prompt.json"]
    assert found.sha256 == pinned["sha256"]
    (tmp_path / "imagenet" / "imagenet_prompt.json").write_bytes(body.replace(b"green", b"brown"))
    with pytest.raises(ChecksumError, match="rerun `bmip download imagenet`"):
        class_descriptions(ds, tmp_path)


def test_a_dataset_without_descriptions_falls_back_to_its_template_and_says_so(caplog):
    ds = _dataset("toys", ["red_striped_circle", "blue plain star"], template="a photo of a {}, a toy.")
    with caplog.at_level(logging.WARNING, logger="bmip.data.descriptions"):
        found = class_descriptions(ds, "unused-root")
    assert "dataset 'toys' has no class-description file: falling back to its prompt template" in caplog.text
    assert found.record["origin"] == "template" and found.record["template"] == "a photo of a {}, a toy."
    assert found.per_class(ds.classnames) == [("a photo of a red striped circle, a toy.",),
                                              ("a photo of a blue plain star, a toy.",)]
