"""Image captions as a pipeline stage: one file per dataset, keyed by image path and content hash.

What a method calls::

    from bmip.captions import load_captions, captions_for
    captions = load_captions(config, "eurosat")            # <experiment>/captions/eurosat.json
    text = captions.caption(item.path, sha256)              # refused if missing or the image changed
    texts, record = captions_for(config, dataset, items)    # hashes the items' files, then looks up each

The stage itself: bmip/captions/stage.py (`bmip captions`, workflow/rules/captions.smk); the file
format: bmip/captions/store.py; the captioners: bmip/captions/captioners.py; docs/captions.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bmip.captions.store import (
    FOLDER,
    Captions,
    CaptionsError,
    MissingCaptionError,
    StaleCaptionError,
    captions_path,
    read_captions,
)
from bmip.data import Dataset, Item

__all__ = ["FOLDER", "Captions", "CaptionsError", "MissingCaptionError", "StaleCaptionError", "captions_for",
           "captions_path", "load_captions", "read_captions"]


def load_captions(config: dict[str, Any], dataset: str) -> Captions:
    """The captions of `dataset` in the config's experiment folder."""
    from bmip.engine.paths import experiment_dir

    return read_captions(captions_path(experiment_dir(config), dataset))


def captions_for(config: dict[str, Any], data: Dataset, items: Sequence[Item],
                 name: str | None = None) -> tuple[list[str], dict[str, Any]]:
    """The caption of each item, in order, and the record of their file and captioner
    (`Captions.record`, for the run's provenance): each image file is hashed (the inventory's hash
    cache spares an unchanged one) and its caption looked up by path and content; a missing caption
    or a changed image is refused, naming the image. `name`: the dataset as the config names it
    (default `data.name`)."""
    from bmip.captions.stage import image_hashes
    from bmip.engine.paths import experiment_dir

    name = name or data.name
    captions = load_captions(config, name)
    paths = [item.path for item in items]
    hashes = image_hashes(config, name, Path(data.image_root), sorted(set(paths)), experiment_dir(config))
    return captions.captions(paths, hashes), captions.record()
