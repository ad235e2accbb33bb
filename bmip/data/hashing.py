"""Checksums of downloaded files, all in one read.

A 39 GB archive is read once however many digests it is checked against: its SHA-256 (always:
the manifest records it), the published MD5 and the git blob id where those are known. A git blob
id is the SHA-1 of `blob <size>\\0<content>`, the name git (and GitHub's tree listings) gives a
file's bytes; a published prefix of it is checked as a prefix.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ChecksumError

CHUNK = 1 << 20


def file_digests(path: Path, *, md5: bool = False, git_blob: bool = False) -> dict[str, str]:
    """{"sha256": ..., and "md5", "git_blob" when asked} of the file, read once in 1 MiB chunks."""
    digests = {"sha256": hashlib.sha256()}
    if md5:
        digests["md5"] = hashlib.md5(usedforsecurity=False)
    if git_blob:
        digests["git_blob"] = hashlib.sha1(b"blob %d\0" % Path(path).stat().st_size, usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def verify_file(
    path: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    git_blob: str | None = None,
    where: str = "",
) -> str:
    """Check size, then SHA-256, MD5 and git blob id (one read) where known; return the SHA-256.

    Raises ChecksumError naming the file, the expected and the actual value; `where` says where the
    expected values come from (who published them, or that the manifest pinned them).
    """
    path = Path(path)
    source = f" ({where})" if where else ""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{path.name}: size is {actual_size:,} bytes, but the expected size is {size:,}{source}")
    actual = file_digests(path, md5=md5 is not None, git_blob=git_blob is not None)
    expected = {"sha256": sha256, "md5": md5, "git_blob": git_blob}
    for name, label in (("sha256", "SHA-256"), ("md5", "MD5"), ("git_blob", "git blob id")):
        want = expected[name].lower() if expected[name] is not None else None
        if want is None:
            continue
        matches = actual[name].startswith(want) if name == "git_blob" else actual[name] == want
        if not matches:
            raise ChecksumError(f"{path.name}: {label} is {actual[name]}, but the expected {label} is {want}{source}")
    return actual["sha256"]
