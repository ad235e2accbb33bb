"""`bmip download` on a dataset root it cannot write (a shared read-only copy, or a CoOp-style
root whose dataset folders are links into one): it checks what is there and writes nothing; what
is missing is named with who can fix it. The read-only folder is a bind mount in a private mount
namespace (`unshare -m`), which even root cannot write."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from bmip.data.sources import BUNDLED_DIR

MOUNT = "mount --bind {d} {d} && mount -o remount,ro,bind {d} {d} && exec {command}"


def _download(read_only: Path, *argv: str) -> subprocess.CompletedProcess:
    d = shlex.quote(str(read_only))
    command = shlex.join([sys.executable, "-m", "bmip.cli", "download", *argv, "--no-progress"])
    return subprocess.run(["unshare", "-m", "sh", "-c", MOUNT.format(d=d, command=command)], capture_output=True,
                          text=True, timeout=120)


def _eurosat(folder: Path, split: bool = True) -> None:
    (folder / "2750" / "Forest").mkdir(parents=True)
    if split:
        shutil.copy(BUNDLED_DIR / "split_zhou_EuroSAT.json", folder)


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def test_a_complete_dataset_on_a_read_only_root_is_checked_and_nothing_is_written(tmp_path):
    root = tmp_path / "shared"
    _eurosat(root / "eurosat")  # CoOp's folder: no CoPrompt description file, the bundled one serves
    before = _files(root)
    done = _download(root, "eurosat", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "checked, nothing written" in done.stderr
    assert _files(root) == before


def test_a_dataset_missing_a_file_on_a_read_only_root_is_named_with_who_can_fix_it(tmp_path):
    root = tmp_path / "shared"
    _eurosat(root / "eurosat", split=False)
    before = _files(root)
    done = _download(root, "eurosat", "--root", str(root))
    assert done.returncode == 1
    assert f"missing {root / 'eurosat' / 'split_zhou_EuroSAT.json'}" in done.stderr
    assert f"Whoever can write there runs `bmip download eurosat --root {root}`" in done.stderr
    assert "no network" not in done.stderr  # nothing was fetched: not a network problem
    assert _files(root) == before


def test_a_root_of_links_into_read_only_dataset_folders_writes_only_its_own_records(tmp_path):
    """CoOp's recommended layout: a root of one's own whose dataset folders link to the shared copy."""
    shared = tmp_path / "shared"
    _eurosat(shared / "eurosat")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "eurosat").symlink_to(shared / "eurosat")
    before = _files(shared)
    done = _download(shared, "eurosat", "--root", str(mine))
    assert done.returncode == 0, done.stderr
    assert "the copy bundled with bmip is read instead" in done.stderr  # no description file in CoOp's folder
    assert "downloading it instead" not in done.stderr
    assert _files(shared) == before
