"""The verified-downloads manifest: re-running a download does nothing for files already verified.

`<root>/_downloads/manifest.json` records, per file (path relative to the data root), its size,
mtime, SHA-256 and where it came from, plus which archives were extracted where. A file whose size
and mtime still match its entry counts as verified without re-hashing. The recorded SHA-256 also
pins files whose checksum is not published: a later download must match the first verified one.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from bmip.io import write_json
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

    def record_extracted(self, archive_rel: str, dest_rel: str, sha256: str) -> None:
        self.extracted[archive_rel] = {"dest": dest_rel, "sha256": sha256}

    def save(self) -> None:
        """Write atomically, merged with what is on disk now (another `bmip download` may share the root)."""
        files, extracted = self._read()
        self.files, self.extracted = {**files, **self.files}, {**extracted, **self.extracted}
        write_json(self.path, {"version": VERSION, "files": self.files, "extracted": self.extracted}, sort_keys=False)
