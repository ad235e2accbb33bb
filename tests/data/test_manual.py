"""Datasets without a live source (SUN397, Stanford Cars): what the user is told, what a supplied
copy is checked against, and how a copy nested one folder too deep is refused with its fix."""
from __future__ import annotations

import dataclasses
import hashlib
import re
import subprocess

import pytest

from bmip.data import ManualDownloadRequired, download
from bmip.data.errors import NestedCopyError
from bmip.data.registry import DATASETS

from .helpers import tgz


def _sun397_without_split(monkeypatch, archive_source=None):
    """SUN397 as registered, minus its split file (fetched from GitHub, which tests cannot reach)."""
    spec = DATASETS["sun397"]
    archive = archive_source or next(s for s in spec.sources if s.filename == "SUN397.tar.gz")
    others = tuple(s for s in spec.sources if s.filename not in ("SUN397.tar.gz", "split_zhou_SUN397.json"))
    monkeypatch.setitem(DATASETS, "sun397", dataclasses.replace(spec, sources=(archive, *others)))
    return archive


def test_sun397_is_manual_with_the_published_size_and_hashes(tmp_path, monkeypatch):
    _sun397_without_split(monkeypatch)
    with pytest.raises(ManualDownloadRequired) as e:
        download("sun397", tmp_path, progress=False)
    msg = str(e.value)
    assert "39,077,296,924 bytes" in msg and "8ca2778205c41d23104230ba66911c7a" in msg
    assert "f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec" in msg
    assert str(tmp_path / "_downloads" / "SUN397.tar.gz") in msg  # where to put the archive
    assert str(tmp_path / "sun397" / "SUN397" / "<letter>") in msg  # the layout of an extracted copy
    assert "vision.princeton.edu" in msg and "404" in msg
    assert "Download SUN397.tar.gz (from http://vision.princeton.edu" not in msg  # never sent back to the dead URL


def test_a_supplied_sun397_archive_is_checked_against_the_published_values(tmp_path, monkeypatch):
    _sun397_without_split(monkeypatch)
    (tmp_path / "_downloads").mkdir()
    (tmp_path / "_downloads" / "SUN397.tar.gz").write_bytes(b"a re-packed copy")
    with pytest.raises(ManualDownloadRequired) as e:
        download("sun397", tmp_path, progress=False)
    msg = str(e.value)
    assert "size is 16 bytes, but the expected size is 39,077,296,924" in msg
    assert "moved aside to" in msg and (tmp_path / "_downloads" / "SUN397.tar.gz.rejected").exists()


def test_a_supplied_archive_that_matches_is_extracted(tmp_path, monkeypatch):
    """The same path with a (small) archive whose values are the registered ones: verified, extracted."""
    data = tgz({"SUN397/ClassName.txt": b"/a/abbey\n", "SUN397/a/abbey/sun_a.jpg": b"jpg"})
    real = next(s for s in DATASETS["sun397"].sources if s.filename == "SUN397.tar.gz")
    _sun397_without_split(monkeypatch, dataclasses.replace(
        real, size=len(data), md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest()))
    (tmp_path / "_downloads").mkdir()
    (tmp_path / "_downloads" / "SUN397.tar.gz").write_bytes(data)
    assert download("sun397", tmp_path, progress=False) == tmp_path / "sun397"
    assert (tmp_path / "sun397" / "SUN397" / "a" / "abbey" / "sun_a.jpg").read_bytes() == b"jpg"


def test_a_hand_supplied_archive_with_the_wrong_checksum_is_refused(tmp_path, monkeypatch):
    data = tgz({"SUN397/a/abbey/sun_a.jpg": b"jpg"})
    real = next(s for s in DATASETS["sun397"].sources if s.filename == "SUN397.tar.gz")
    _sun397_without_split(monkeypatch, dataclasses.replace(real, size=len(data)))  # right size, other bytes
    (tmp_path / "_downloads").mkdir()
    (tmp_path / "_downloads" / "SUN397.tar.gz").write_bytes(data)
    with pytest.raises(ManualDownloadRequired) as e:
        download("sun397", tmp_path, progress=False)
    assert "SHA-256 is " + hashlib.sha256(data).hexdigest() in str(e.value)
    assert "f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec" in str(e.value)
    assert not (tmp_path / "sun397" / "SUN397").exists()


def test_nested_stanford_cars_copy_is_refused_with_the_command_that_fixes_it(tmp_path):
    cars = tmp_path / "stanford_cars"
    (cars / "cars_train" / "cars_train").mkdir(parents=True)  # the common Kaggle copy
    (cars / "cars_train" / "cars_train" / "00001.jpg").write_bytes(b"jpg")
    (cars / "cars_test").mkdir()
    (cars / "cars_test" / "00001.jpg").write_bytes(b"jpg")
    with pytest.raises(NestedCopyError) as e:
        download("stanford_cars", tmp_path, progress=False)
    assert isinstance(e.value, ManualDownloadRequired)  # `bmip download` exits 2: a manual step
    msg = str(e.value)
    assert f"{cars / 'cars_train'} holds only the folder cars_train/" in msg and "cars_test" not in msg.split("\n")[0]
    fix = re.search(r"^  (mv .*)$", msg, re.M)[1]
    subprocess.run(fix, shell=True, check=True)  # the user runs the command as given
    assert (cars / "cars_train" / "00001.jpg").read_bytes() == b"jpg"
    assert download("stanford_cars", tmp_path, progress=False) == cars  # now accepted as installed
    assert sorted(p.name for p in cars.iterdir() if not p.name.endswith(".json")) == ["cars_test", "cars_train"]

