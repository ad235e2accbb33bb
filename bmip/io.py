"""Small file helpers shared by the package: atomic writes and content hashes."""
from __future__ import annotations

import hashlib
import json
import os
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


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call `write(tmp_path)`, fsync, and move the result into place: a reader never sees a partial file."""
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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
