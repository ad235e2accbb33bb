"""Downloads are streamed with progress, resumed, verified and installed; only 127.0.0.1 is contacted."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile

import pytest

from bmip.data import (
    ChecksumError,
    DeadSourceError,
    DownloadError,
    ManualDownloadRequired,
    download,
    download_file,
    load_dataset,
)
from bmip.data.registry import DATASETS, DatasetSpec
from bmip.data.sources import BUNDLED_DIR, Source

from .conftest import Route
from .helpers import tgz

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def fetch(server, dest, **kw):
    kw.setdefault("backoff", 0)
    kw.setdefault("timeout", 10)
    return download_file(server.url("/f.bin"), dest, **kw)


def test_progress_and_verified_download(http_server, tmp_path, capsys):
    http_server.routes["/f.bin"] = Route(PAYLOAD)
    digest = fetch(http_server, tmp_path / "f.bin", sha256=SHA, size=len(PAYLOAD), md5=MD5)
    assert digest == SHA and (tmp_path / "f.bin").read_bytes() == PAYLOAD
    err = capsys.readouterr().err
    assert "f.bin" in err and "100%" in err  # the tqdm bar reached the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no .part left


@pytest.mark.parametrize("wrong", [{"sha256": "0" * 64}, {"size": len(PAYLOAD) + 1}, {"md5": "0" * 32}])
def test_checksum_failure_rejects_the_file(http_server, tmp_path, wrong):
    http_server.routes["/f.bin"] = Route(PAYLOAD)
    with pytest.raises(ChecksumError, match="rejected"):
        fetch(http_server, tmp_path / "f.bin", **wrong)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial copy


def test_interrupted_transfer_is_resumed_by_a_rerun(http_server, tmp_path):
    http_server.routes["/f.bin"] = Route(PAYLOAD, drops=1, drop_after=300_000)
    with pytest.raises(DownloadError, match="connection closed after 300000"):
        fetch(http_server, tmp_path / "f.bin", sha256=SHA, retries=0)
    (part,) = tmp_path.glob("f.bin.*.part")
    assert part.stat().st_size == 300_000 and not (tmp_path / "f.bin").exists()
    assert fetch(http_server, tmp_path / "f.bin", sha256=SHA, retries=0) == SHA
    assert http_server.requests_for("/f.bin") == [None, "bytes=300000-"]
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD and not list(tmp_path.glob("*.part"))


def test_interruptions_are_retried_within_one_call(http_server, tmp_path):
    http_server.routes["/f.bin"] = Route(PAYLOAD, drops=2, drop_after=100_000)
    assert fetch(http_server, tmp_path / "f.bin", sha256=SHA, retries=3) == SHA
    assert http_server.requests_for("/f.bin") == [None, "bytes=100000-", "bytes=200000-"]


def test_server_without_range_support_restarts(http_server, tmp_path):
    http_server.routes["/f.bin"] = Route(PAYLOAD, drops=1, drop_after=500_000, ignore_range=True)
    assert fetch(http_server, tmp_path / "f.bin", sha256=SHA, retries=1) == SHA
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_corrupt_resumed_file_is_fetched_again_from_scratch(http_server, tmp_path):
    http_server.routes["/f.bin"] = Route(PAYLOAD)
    dest = tmp_path / "f.bin"
    part = tmp_path / f"f.bin.{hashlib.sha256(http_server.url('/f.bin').encode()).hexdigest()[:8]}.part"
    part.write_bytes(b"garbage" * 1000)  # a stale partial file with wrong bytes
    assert fetch(http_server, dest, sha256=SHA) == SHA
    assert http_server.requests_for("/f.bin") == ["bytes=7000-", None]


def test_html_page_and_404_move_on_to_the_next_mirror(http_server, tmp_path):
    http_server.routes["/login"] = Route(b"<html>sign in</html>", content_type="text/html; charset=utf-8")
    http_server.routes["/f.bin"] = Route(PAYLOAD)
    urls = [http_server.url("/missing"), http_server.url("/login"), http_server.url("/f.bin")]
    assert download_file(urls, tmp_path / "f.bin", sha256=SHA, backoff=0) == SHA
    with pytest.raises(DownloadError) as e:
        download_file(urls[:2], tmp_path / "g.bin", backoff=0)
    assert "HTTP 404" in str(e.value) and "HTML page" in str(e.value)


# --- installing a dataset -------------------------------------------------------------------------
def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


SPLIT = json.dumps({"train": [["a/1.jpg", 0, "a"], ["b/1.jpg", 1, "b"]], "val": [["a/2.jpg", 0, "a"]],
                    "test": [["b/2.jpg", 1, "b"]]}).encode()
IMAGES = {f"toy-1.0/images/{p}": b"img" for p in ("a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg")}


@pytest.fixture
def toy(http_server, monkeypatch):
    """A registry entry "toy" whose archive (images under a top folder) and split file are served locally."""
    archive = tgz({**IMAGES, "toy-1.0/README": b"r"})
    http_server.routes["/toy.tar.gz"] = Route(archive)
    http_server.routes["/split_toy.json"] = Route(SPLIT, content_type="application/json")
    spec = DatasetSpec(
        name="toy", display_name="Toy", coop_name="Toy", dataset_dir="toy", image_dir="images", reader="coop_json",
        template="a photo of a {}.", num_classes=2, test_images=2, split_file="split_toy.json",
        sources=(
            Source(filename="toy.tar.gz", dest="toy", urls=(http_server.url("/toy.tar.gz"),),
                   md5=hashlib.md5(archive).hexdigest(), extract=True, member="toy-1.0", provides="toy/images"),
            Source(filename="split_toy.json", dest="toy/split_toy.json", urls=(http_server.url("/split_toy.json"),),
                   sha256=hashlib.sha256(SPLIT).hexdigest(), size=len(SPLIT)),
        ),
    )
    monkeypatch.setitem(DATASETS, "toy", spec)
    return spec


def test_download_installs_a_loadable_dataset_and_reruns_do_nothing(toy, http_server, tmp_path):
    assert download("toy", tmp_path, progress=False, backoff=0) == tmp_path / "toy"
    ds = load_dataset("toy", tmp_path)
    assert ds.classnames == ["a", "b"] and len(ds.train) == 2
    manifest = json.loads((tmp_path / "_downloads" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"_downloads/toy.tar.gz", "toy/split_toy.json"}
    assert manifest["files"]["_downloads/toy.tar.gz"]["sha256"]  # pinned although only the md5 was known
    assert manifest["extracted"]["_downloads/toy.tar.gz"]["dest"] == "toy"
    assert not (tmp_path / "_downloads" / "toy.tar.gz").exists()  # archives are removed unless kept
    n = len(http_server.log)
    download("toy", tmp_path, progress=False)
    assert len(http_server.log) == n  # verified files are not fetched again


def test_existing_coop_folder_is_left_as_is(toy, http_server, tmp_path):
    (tmp_path / "toy" / "images").mkdir(parents=True)
    (tmp_path / "toy" / "split_toy.json").write_bytes(SPLIT)
    download("toy", tmp_path, progress=False)
    assert http_server.log == []


def test_nested_archive_like_caltech(http_server, tmp_path, monkeypatch):
    inner = tgz({"101_ObjectCategories/x/1.jpg": b"1"})
    outer = _zip({"caltech-101/101_ObjectCategories.tar.gz": inner, "caltech-101/Annotations.tar": b"a"})
    http_server.routes["/c.zip"] = Route(outer)
    source = Source(filename="c.zip", dest="caltech-101", urls=(http_server.url("/c.zip"),), extract=True,
                    member="caltech-101/101_ObjectCategories.tar.gz", nested=True,
                    provides="caltech-101/101_ObjectCategories", sha256=hashlib.sha256(outer).hexdigest())
    spec = DatasetSpec(name="nested", display_name="Nested", coop_name="Nested", dataset_dir="caltech-101",
                       image_dir="101_ObjectCategories", reader="coop_json", template="{}", num_classes=1,
                       test_images=1, sources=(source,))
    monkeypatch.setitem(DATASETS, "nested", spec)
    download("nested", tmp_path, progress=False, keep_archives=True)
    assert (tmp_path / "caltech-101/101_ObjectCategories/x/1.jpg").read_bytes() == b"1"
    assert sorted(p.name for p in (tmp_path / "_downloads").iterdir()) == ["c.zip", "manifest.json"]


def test_hand_supplied_archive_with_wrong_checksum_is_moved_aside(toy, tmp_path):
    (tmp_path / "_downloads").mkdir()
    (tmp_path / "_downloads" / "toy.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(ChecksumError, match=r"moved aside to .*toy.tar.gz.rejected"):
        download("toy", tmp_path, progress=False)
    assert not (tmp_path / "toy" / "images").exists()


def test_imagenet_asks_for_the_manual_download(tmp_path):
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01440764 tench\n")  # found in place: no network
    (tmp_path / "imagenet" / "imagenet_prompt.json").write_text('{"tench": ["a fish."]}')  # CoPrompt's, likewise
    with pytest.raises(ManualDownloadRequired) as e:
        download("imagenet", tmp_path, progress=False)
    msg = str(e.value)
    assert "image-net.org" in msg and "ILSVRC2012_img_train.tar" in msg
    assert str(tmp_path / "imagenet" / "images" / "train") in msg


def test_dead_source_says_how_to_supply_the_file(toy, tmp_path, monkeypatch):
    import dataclasses

    archive, split = toy.sources
    dead = dataclasses.replace(archive, urls=(), dead_urls=("http://gone.example/toy.tar.gz",), sha256="ab" * 32,
                               published="the toy's authors")
    monkeypatch.setitem(DATASETS, "toy", dataclasses.replace(toy, sources=(dead, split)))
    with pytest.raises(DeadSourceError) as e:
        download("toy", tmp_path, progress=False, backoff=0)
    msg = str(e.value)
    assert "gone.example" in msg and "no live source" in msg
    assert str(tmp_path / "_downloads" / "toy.tar.gz") in msg and str(tmp_path / "toy" / "images") in msg
    assert f"sha256 {'ab' * 32}" in msg and "the toy's authors" in msg  # what to check a copy against


def test_stanford_cars_is_manual_with_the_published_checksums(tmp_path):
    (tmp_path / "stanford_cars").mkdir()
    shutil.copyfile(BUNDLED_DIR / "split_zhou_StanfordCars.json",
                    tmp_path / "stanford_cars" / "split_zhou_StanfordCars.json")  # verified in place: no network
    with pytest.raises(ManualDownloadRequired) as e:
        download("stanford_cars", tmp_path, progress=False)
    msg = str(e.value)
    assert "ai.stanford.edu" in msg and "979,269,282 bytes" in msg and "065e5b463ae28d29e77c1b4b166cfe61" in msg
    assert "512b227b30e2f0a8aab9e09485786ab4479582073a144998da74d64b801fd288" in msg
    assert str(tmp_path / "_downloads" / "cars_train.tgz") in msg
    assert str(tmp_path / "stanford_cars" / "cars_train") in msg
    assert "Also:" not in msg  # the manual step covers the archives; nothing else went wrong
    manifest = json.loads((tmp_path / "_downloads" / "manifest.json").read_text())
    assert manifest["files"]["stanford_cars/split_zhou_StanfordCars.json"]["origin"] == "found in place"


def test_bundled_split_files_install_without_network(tmp_path):
    """The split file comes from the copy shipped with bmip (no URL is tried: there is no server)."""
    with pytest.raises(ManualDownloadRequired):  # the car images themselves have no live source
        download("stanford_cars", tmp_path, progress=False, retries=0)
    installed = tmp_path / "stanford_cars" / "split_zhou_StanfordCars.json"
    assert installed.read_bytes() == (BUNDLED_DIR / "split_zhou_StanfordCars.json").read_bytes()
    manifest = json.loads((tmp_path / "_downloads" / "manifest.json").read_text())
    assert manifest["files"]["stanford_cars/split_zhou_StanfordCars.json"]["origin"].startswith("bundled with bmip")


def test_imagenet_class_names_are_installed_from_the_bundled_copy(tmp_path):
    """Each of the 5 ImageNet-family folders gets classnames.txt with no download (there is no server)."""
    from bmip.data.coop import read_classnames_txt

    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "imagenet_prompt.json").write_text('{"tench": ["a fish."]}')  # CoPrompt's: in place
    with pytest.raises(ManualDownloadRequired):
        download("imagenet", tmp_path, progress=False)
    names = read_classnames_txt(tmp_path / "imagenet" / "classnames.txt")
    assert len(names) == 1000 and names["n01440764"] == "tench" and names["n15075141"] == "toilet paper"
    (tmp_path / "imagenet-adversarial" / "imagenet-a").mkdir(parents=True)  # images in place: nothing to fetch
    assert download("imagenet_a", tmp_path, progress=False) == tmp_path / "imagenet-adversarial"
    assert (tmp_path / "imagenet-adversarial" / "classnames.txt").read_bytes() == \
        (tmp_path / "imagenet" / "classnames.txt").read_bytes()


def test_a_modified_bundled_copy_is_never_installed(toy, http_server, tmp_path, monkeypatch, caplog):
    """A bundled copy whose bytes differ from the pinned hash is skipped for the download mirrors."""
    import dataclasses

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "split_toy.json").write_bytes(SPLIT.replace(b"a", b"b", 1))
    monkeypatch.setattr("bmip.data.downloads.BUNDLED_DIR", bundle)
    archive, split = toy.sources
    monkeypatch.setitem(DATASETS, "toy", dataclasses.replace(
        toy, sources=(archive, dataclasses.replace(split, bundled="split_toy.json"))))
    data = tmp_path / "data"
    download("toy", data, progress=False, backoff=0)
    assert (data / "toy" / "split_toy.json").read_bytes() == SPLIT
    assert "/split_toy.json" in [path for path, _ in http_server.log]
    assert "bundled with bmip is unusable" in caplog.text
    assert not list((data / "toy").glob(".*.copy"))


def test_manifest_merges_concurrent_writers(tmp_path):
    from bmip.data.manifest import Manifest

    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    first, second = Manifest(tmp_path), Manifest(tmp_path)
    first.record_file("a.txt", "1" * 64, "x")
    first.save()
    second.record_file("b.txt", "2" * 64, "y")
    second.save()
    assert set(Manifest(tmp_path).files) == {"a.txt", "b.txt"} and Manifest(tmp_path).is_current("a.txt")
    (tmp_path / "_downloads" / "manifest.json").write_text("{broken")
    assert Manifest(tmp_path).files == {}  # unreadable: everything is simply verified again
