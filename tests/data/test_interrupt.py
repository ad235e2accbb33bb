"""A killed download or extraction leaves nothing the next run trips over, and concurrent runs on one
root never lose each other's manifest entries."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import bmip.data.hashing as hashing
from bmip.data import download
from bmip.data.extract import remove_stale_extractions, safe_extract, temporary_folder
from bmip.data.interrupt import EXIT_TERMINATED
from bmip.data.manifest import Manifest
from bmip.data.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]

# A registry entry "slow" whose archive is supplied by hand in <root>/_downloads, built the same way
# in this process and in the subprocess that gets killed.
SPEC = """
import dataclasses, hashlib, sys
from pathlib import Path
from bmip.data.registry import DATASETS, DatasetSpec
from bmip.data.sources import Source

def slow_spec(archive: Path) -> DatasetSpec:
    data = archive.read_bytes()
    source = Source(filename="slow.zip", dest="slow", sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                    md5=hashlib.md5(data).hexdigest(), published="the test", dead_urls=("http://gone.example/",),
                    extract=True, member="top", provides="slow/images")
    return DatasetSpec(name="slow", display_name="Slow", coop_name="Slow", dataset_dir="slow", image_dir="images",
                       reader="imagenet_wnids", template="{}", num_classes=1, test_images=1, sources=(source,))
"""

KILLED = SPEC + """
import time, zipfile
root = Path(sys.argv[1])
DATASETS["slow"] = slow_spec(root / "_downloads" / "slow.zip")
real = zipfile.ZipFile.extract
def slowly(self, *args, **kwargs):  # about 10 s for the whole archive: time to be killed midway
    time.sleep(0.02)
    return real(self, *args, **kwargs)
zipfile.ZipFile.extract = slowly
from bmip.data import download
download("slow", root, progress=False)
"""


def _archive(path: Path, entries: int = 500) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(entries):
            zf.writestr(f"top/images/c{i % 5}/{i}.jpg", b"x" * 100)
    return path


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".extract-" in p.name)


def test_sigterm_during_extraction_then_a_rerun(tmp_path, monkeypatch):
    root = tmp_path / "data"
    archive = _archive(root / "_downloads" / "slow.zip")
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(root)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any((p / "top").exists() for p in root.glob(".slow.extract-*")):  # extraction under way
        assert proc.poll() is None, f"ended before extracting: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "extraction did not start within 120 s"
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == EXIT_TERMINATED, proc.stderr.read()
    assert _temporaries(root) == [] and not (root / "slow").exists()  # the handler's cleanup ran
    manifest = json.loads((root / "_downloads" / "manifest.json").read_text())
    assert "_downloads/slow.zip" in manifest["files"]  # verified before extraction: not hashed again

    exec(SPEC, namespace := {})
    monkeypatch.setitem(DATASETS, "slow", namespace["slow_spec"](archive))
    read = []
    real_open = open
    monkeypatch.setattr(hashing, "open", lambda *a, **k: read.append(a[0]) or real_open(*a, **k), raising=False)
    assert download("slow", root, progress=False) == root / "slow"
    assert read == []  # the archive was not read again
    assert len(list((root / "slow" / "images").rglob("*.jpg"))) == 500
    assert _temporaries(root) == [] and not archive.exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # download() restored the default


def test_leftovers_of_a_killed_extraction_are_removed_but_a_live_one_is_kept(tmp_path):
    dead = tmp_path / ".pets.extract-0badf00d"
    (dead / "images").mkdir(parents=True)
    (dead / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / ".pets.extract-0badf00d.lock").touch()  # its owner died: nobody holds the lock
    (tmp_path / ".dtd.extract-12345678.lock").touch()  # a lock without a folder
    (tmp_path / "pets").mkdir()
    with temporary_folder(tmp_path, "flowers") as live:
        (live / "jpg").mkdir()
        assert remove_stale_extractions(tmp_path) == [dead]
        assert live.is_dir() and (live.parent / (live.name + ".lock")).exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pets", live.name, live.name + ".lock"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets"]  # the live one cleaned up after itself


def test_next_extraction_removes_a_killed_ones_folder(tmp_path):
    archive = _archive(tmp_path / "a.zip", entries=3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".ds.extract-deadbeef").mkdir()
    safe_extract(archive, tmp_path / "out" / "ds", member="top")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ds"]


WRITER = """
import sys, time
from pathlib import Path
from bmip.data.manifest import Manifest
root, who, n, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
manifest = Manifest(root)
time.sleep(max(0.0, start - time.time()))  # both writers begin together
for i in range(n):
    manifest.record_file(f"{who}/{i}", "0" * 64, who)
    manifest.save()
"""


def test_concurrent_processes_keep_each_others_manifest_entries(tmp_path):
    n = 150
    for who in ("a", "b"):
        (tmp_path / who).mkdir()
        for i in range(n):
            (tmp_path / who / str(i)).write_bytes(b"x")
    start = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who, str(n), start], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    files = Manifest(tmp_path).files
    assert len(files) == 2 * n and {e["origin"] for e in files.values()} == {"a", "b"}
    assert sorted(p.name for p in (tmp_path / "_downloads").iterdir()) == ["manifest.json"]  # no lock, no temp file


def test_an_interrupted_manifest_save_leaves_the_previous_manifest_whole(tmp_path, monkeypatch):
    import bmip.io

    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    manifest = Manifest(tmp_path)
    manifest.record_file("a.txt", "1" * 64, "x")
    manifest.save()
    before = (tmp_path / "_downloads" / "manifest.json").read_bytes()

    def killed(*args):
        raise SystemExit(EXIT_TERMINATED)  # as SIGTERM arrives between writing and renaming

    monkeypatch.setattr(bmip.io.os, "replace", killed)
    manifest.record_file("b.txt", "2" * 64, "y")
    with pytest.raises(SystemExit):
        manifest.save()
    monkeypatch.undo()
    assert (tmp_path / "_downloads" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "_downloads").iterdir()) == ["manifest.json"]
    again = Manifest(tmp_path)
    again.record_file("b.txt", "2" * 64, "y")
    again.save()
    assert set(Manifest(tmp_path).files) == {"a.txt", "b.txt"}


def test_sigterm_handler_turns_sigterm_into_systemexit():
    script = ("import os, signal, time\n"
              "from bmip.data.interrupt import install_sigterm_handler\n"
              "install_sigterm_handler()\n"
              "try:\n"
              "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
              "finally:\n"
              "    print('cleaned up')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_TERMINATED and "cleaned up" in done.stdout


def test_a_download_waits_for_another_process_fetching_the_same_file(http_server, tmp_path):
    """Two processes never write one partial file: the second waits, then finds the file verified."""
    from bmip.data.locking import locked

    from .conftest import Route

    data = os.urandom(50_000)
    http_server.routes["/f.bin"] = Route(data)
    dest = tmp_path / "f.bin"
    script = ("import sys\nfrom pathlib import Path\nfrom bmip.data import download_file\n"
              "print(download_file(sys.argv[1], Path(sys.argv[2]), sha256=sys.argv[3], progress=False))\n")
    with locked(tmp_path / ".f.bin.lock"):  # as if another process were fetching it
        proc = subprocess.Popen([sys.executable, "-c", script, http_server.url("/f.bin"), str(dest),
                                 hashlib.sha256(data).hexdigest()], cwd=REPO, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "no_proxy": "127.0.0.1"})
        time.sleep(1.0)
        assert proc.poll() is None and http_server.log == []  # waiting, not fetching
        dest.write_bytes(data)  # the other process finishes
    assert proc.wait(timeout=60) == 0 and proc.stdout.read().strip() == hashlib.sha256(data).hexdigest()
    assert http_server.log == []  # the file was verified in place, not fetched again
