"""Advisory locks between `bmip download` processes that share a data root.

Up to 15 download jobs (and a user on the login node) may write one root at once. A lock file
beside the shared state (the manifest, a file being fetched, a temporary extraction folder) is held
with `fcntl.flock` while that state is read, changed or filled, and removed afterwards. The kernel
drops the lock when its holder exits, killed or not, so a lock file a killed process leaves on disk
never blocks anyone; `is_held` is how a later run tells a live process's temporary folder from a
dead one's. Locks work across the nodes
of a cluster on NFS (Linux maps flock to NFS byte-range locks); some parallel filesystems (Lustre
mounted with `localflock`) only lock per node.
"""
from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)


@contextmanager
def locked(path: Path, *, waiting: str = "") -> Iterator[None]:
    """Hold an exclusive lock on the file `path` for the block; wait if another process holds it,
    logging `waiting` first so that a long wait is not mistaken for a hang.

    The lock file is created for the block and removed at its end (before the lock is released); a
    process that was waiting on the removed file notices and locks the current one instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = open(path, "a+b")  # "a": create without truncating another holder's file
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                logger.info("%s", waiting)
            fcntl.flock(fh, fcntl.LOCK_EX)
        if _same_file(fh, path):
            break
        fh.close()  # the holder removed this lock file when it finished: lock the current one
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _same_file(fh, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fh.fileno())
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on `path` (False when the file does not exist)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False
