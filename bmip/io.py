"""Small file helpers shared by the package: atomic writes and content hashes."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

_CHUNK = 1 << 20


def ordinary_mode(folder: bool = False) -> int:
    """The permissions an ordinary new file (or folder) gets under the process's umask. Temporary
    files and folders are private (0600/0700); a result moved into place from one gets these."""
    mask = os.umask(0o022)  # Python 3.11 can only read the umask by setting it
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


class DiskFullError(OSError):
    """A result could not be written for lack of space (or quota); nothing partial was left."""


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How writers that are not Python's own file objects report a full disk: safetensors (Rust) says
# "No space left on device (os error 28)"; torch.save fails with an unrelated-looking position
# error, which only the free space at that moment tells apart.
_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122")
_NEARLY_FULL = 1 << 20


def _disk_full(err: BaseException, folder: Path) -> bool:
    if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
        return True
    if any(text in str(err) for text in _FULL_MESSAGES):
        return True
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL
    except OSError:
        return False


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call `write(tmp_path)`, fsync, and move the result into place: a reader never sees a partial file.

    A write that fails (a full disk included, which may surface only at fsync) leaves nothing:
    neither `path` (an older version of it stays as it was) nor the temporary file. A full disk
    raises DiskFullError, which says so and where.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, ordinary_mode())  # mkstemp makes it 0600; results are shared like any file
        os.replace(tmp, path)
    except BaseException as err:
        full = isinstance(err, Exception) and _disk_full(err, path.parent)  # before the partial file goes
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise DiskFullError(
                errno.ENOSPC, f"no space left on the device holding {path.parent} while writing {path.name} "
                f"({type(err).__name__}: {err}); nothing was left half-written. Free space there (or set "
                "results_dir to a disk with room) and rerun: finished results are kept") from err
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: Path, data: Any, *, sort_keys: bool = True) -> None:
    """Atomically write indented UTF-8 JSON."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks so multi-GB archives do not fill memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")
