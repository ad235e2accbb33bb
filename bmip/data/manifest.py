"""The verified-downloads manifest: re-running a download does nothing for files already verified.

`<root>/_downloads/manifest.json` records, per file (path relative to the data root), its size,
mtime, SHA-256 and where it came from, plus which archives were extracted where. A file whose size
and mtime still match its entry counts as verified without re-hashing. For the few files whose
checksum is published nowhere (UCF101's middle frames, ImageNet's CoPrompt descriptions), the
recorded SHA-256 is the only reference: a later download must match the first verified one (trust
on first use).

Several `bmip download` processes may share a root. A save holds a lock on `manifest.json.lock`
while it reads the file, adds the entries this process recorded, and writes it back; the write goes
to a temporary file that replaces the manifest only when complete, so an interrupted save leaves the
previous manifest whole.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from bmip.io import write_json

from .locking import locked
from .sources import DOWNLOADS_DIR

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VERSION = 1


class Manifest:
    """Load, query and atomically save the manifest of one data root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / DOWNLOADS_DIR / MANIFEST
        self.files, self.extracted = self._read()
        self._new_files: set[str] = set()
        self._new_extracted: set[str] = set()

    def _read(self) -> tuple[dict[str, dict], dict[str, dict]]:
        if not self.path.is_file():
            return {}, {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return dict(doc.get("files", {})), dict(doc.get("extracted", {}))
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            logger.warning("%s is unreadable; starting a new manifest (files will be re-verified)", self.path)
            return {}, {}

    def is_current(self, rel: str) -> bool:
        """Whether `rel` exists and is unchanged since it was verified."""
        entry, path = self.files.get(rel), self.root / rel
        if entry is None or not path.is_file():
            return False
        st = path.stat()
        return st.st_size == entry.get("size") and st.st_mtime_ns == entry.get("mtime_ns")

    def pinned_sha256(self, rel: str) -> str | None:
        entry = self.files.get(rel)
        return entry.get("sha256") if entry else None

    def record_file(self, rel: str, sha256: str, origin: str) -> None:
        st = (self.root / rel).stat()
        self.files[rel] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha256": sha256,
            "origin": origin,
            "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._new_files.add(rel)

    def record_extracted(self, archive_rel: str, dest_rel: str, sha256: str) -> None:
        self.extracted[archive_rel] = {"dest": dest_rel, "sha256": sha256}
        self._new_extracted.add(archive_rel)

    def save(self) -> None:
        """Merge this process's new entries into the manifest on disk, under the lock, and write it atomically."""
        lock = self.path.with_name(MANIFEST + ".lock")
        with locked(lock, waiting=f"waiting for another bmip process to finish writing {self.path}"):
            files, extracted = self._read()
            files.update({k: self.files[k] for k in self._new_files})
            extracted.update({k: self.extracted[k] for k in self._new_extracted})
            for leftover in self.path.parent.glob(f".{MANIFEST}.*.tmp"):  # a killed writer's; no writer is active
                leftover.unlink(missing_ok=True)
            write_json(self.path, {"version": VERSION, "files": files, "extracted": extracted}, sort_keys=False)
        self.files, self.extracted = files, extracted
        self._new_files.clear()
        self._new_extracted.clear()
