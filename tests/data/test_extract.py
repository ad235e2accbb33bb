"""Archives are extracted all-or-nothing and never write outside the target."""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from bmip.data import UnsafeArchiveError, safe_extract


def make_tar(path: Path, entries: list[tuple[str, str, bytes | str]], mode: str = "w:gz") -> Path:
    """entries: (name, kind, payload); kind file|dir|symlink|hardlink|chr|fifo (payload = data or link)."""
    with tarfile.open(path, mode) as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tf.addfile(info)
    return path


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


GOOD = [("ds/images/a/1.jpg", "file", b"x"), ("ds/images/b/2.jpg", "file", b"yy"), ("ds/README", "file", b"hi")]


def _leftovers(parent: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


@pytest.mark.parametrize("evil", [
    [("../evil.txt", "file", b"!")],
    [("ds/../../evil.txt", "file", b"!")],
    [("/tmp/bmip-evil-abs.txt", "file", b"!")],
    [("ds/link", "symlink", "../../evil-dir"), ("ds/link/evil.txt", "file", b"!")],
    [("ds/abslink", "symlink", "/etc")],
    [("ds/hard", "hardlink", "../outside.txt")],
    [("ds/dev", "chr", "")],
    [("ds/fifo", "fifo", "")],
])
def test_tar_with_unsafe_entries_is_refused_and_leaves_nothing(tmp_path, evil):
    work = tmp_path / "work"
    work.mkdir()
    archive = make_tar(tmp_path / "evil.tar.gz", GOOD + evil)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, work / "target")
    assert _leftovers(work, set()) == []  # no target, no temporary folder
    assert _leftovers(tmp_path, {"work", "evil.tar.gz"}) == []
    assert not Path("/tmp/bmip-evil-abs.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "ds/../../evil.txt", "C:/evil.txt"])
def test_zip_with_unsafe_entries_is_refused_and_leaves_nothing(tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    archive = make_zip(tmp_path / "evil.zip", {"ds/ok.txt": b"ok", name: b"!"})
    with pytest.raises(UnsafeArchiveError, match="refusing the whole archive"):
        safe_extract(archive, work / "target")
    assert _leftovers(work, set()) == [] and _leftovers(tmp_path, {"work", "evil.zip"}) == []


def test_zip_symlink_is_refused(tmp_path):
    info = zipfile.ZipInfo("ds/link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "l.zip", "w") as zf:
        zf.writestr(info, "../../etc")
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        safe_extract(tmp_path / "l.zip", tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_good_tar_extracts_with_links_inside(tmp_path):
    archive = make_tar(tmp_path / "ok.tar", GOOD + [("ds/alias", "symlink", "images/a/1.jpg")], mode="w")
    out = safe_extract(archive, tmp_path / "target")
    assert (out / "ds/images/b/2.jpg").read_bytes() == b"yy"
    assert (out / "ds/alias").resolve() == (out / "ds/images/a/1.jpg").resolve()
    assert _leftovers(tmp_path, {"ok.tar", "target"}) == []


def test_member_subtree_becomes_the_target(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"top/data/images/1.jpg": b"1", "top/data/list.txt": b"l", "top/other": b"o"})
    out = safe_extract(archive, tmp_path / "fgvc", member="top/data")
    assert sorted(p.name for p in out.iterdir()) == ["images", "list.txt"]
    with pytest.raises(UnsafeArchiveError, match="no entry 'top/missing'"):
        safe_extract(archive, tmp_path / "x", member="top/missing")
    assert not (tmp_path / "x").exists()


def test_merges_into_an_existing_folder_without_overwriting(tmp_path):
    target = tmp_path / "pets"
    target.mkdir()
    (target / "split.json").write_text("{}")
    safe_extract(make_tar(tmp_path / "images.tgz", [("images/a.jpg", "file", b"a")]), target)
    assert sorted(p.name for p in target.iterdir()) == ["images", "split.json"]
    with pytest.raises(FileExistsError, match="refusing to overwrite 1 existing"):
        safe_extract(make_tar(tmp_path / "again.tgz", [("images/b.jpg", "file", b"b")]), target)
    assert sorted(p.name for p in (target / "images").iterdir()) == ["a.jpg"]
    assert _leftovers(tmp_path, {"pets", "images.tgz", "again.tgz"}) == []


def test_not_an_archive(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"not an archive at all")
    with pytest.raises(UnsafeArchiveError, match="neither a tar nor a zip"):
        safe_extract(tmp_path / "x.tar", tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_an_extracted_dataset_folder_is_readable_as_the_umask_allows(tmp_path):
    """Extraction goes through a private temporary folder, which becomes the dataset folder: it
    must end with the permissions of an ordinary folder (a shared data root serves a whole group)."""
    import os

    archive = make_tar(tmp_path / "good.tar.gz", GOOD)
    old = os.umask(0o022)
    try:
        target = safe_extract(archive, tmp_path / "target")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o755
