"""The `file` captioner: your own captions (`captions.file`), checked against the images.

A CSV with a header row naming the columns `path` and `caption`, or a JSON object
`{"<path>": "<caption>", ...}`; `path` is the image's path relative to the dataset's image root, as
in its split file. A file may hold the captions of several datasets' images (a path names the same
image in each); entries for images no run reads are ignored. An image the config's runs read with no
caption in the file is refused, naming it. The provenance records the file's sha256, so editing it
captions again exactly the images whose caption changed: the rest are reused as they are.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from bmip.captions.captioners import ImageRef, code_sha256
from bmip.captions.store import CaptionsError, MissingCaptionError
from bmip.data import Dataset
from bmip.io import file_sha256


def read_caption_file(path: Path) -> dict[str, str]:
    """path -> caption from a CSV (columns path, caption) or JSON object file."""
    path = Path(path)
    if not path.is_file():
        raise CaptionsError(f"captions.file {path}: no such file (a CSV with columns path,caption or a JSON "
                            "object path -> caption; docs/captions.md)")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as err:
            raise CaptionsError(f"captions.file {path}: not JSON ({err})") from None
        if not (isinstance(doc, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items())):
            raise CaptionsError(f"captions.file {path}: must be one JSON object mapping each image path to its "
                                "caption text")
        return dict(doc)
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or not {"path", "caption"} <= set(rows[0]):
        raise CaptionsError(f"captions.file {path}: a CSV needs a header row with the columns path and caption")
    return {row["path"]: row["caption"] for row in rows}


class FileCaptioner:
    """Looks each image up in the user's captions file."""

    name = "file"

    def __init__(self, settings: dict[str, Any], config: dict[str, Any], data: Dataset) -> None:
        self.path = Path(settings["file"])
        self.data = data
        self.instruction = settings.get("instruction") or "the user's own captions (captions.file)"
        self.captions = read_caption_file(self.path)

    def provenance(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": f"captions file {self.path.name}",
            "revision": f"sha256 {file_sha256(self.path)}",
            "instruction": self.instruction,
            "generation": {},
            "libraries": {},
            "code_sha256": code_sha256(__name__),
        }

    def caption(self, images: Sequence[ImageRef]) -> list[str]:
        missing = [image.path for image in images if image.path not in self.captions]
        if missing:
            raise MissingCaptionError(
                f"{self.data.name}: {len(missing)} image(s) the config's runs read have no caption in captions.file "
                f"{self.path}, e.g. {', '.join(missing[:5])}: add a row for each (path relative to "
                f"{self.data.image_root})")
        return [self.captions[image.path] for image in images]
