"""Class descriptions: sentences describing each class, the frozen text targets of CoPrompt's loss.

`class_descriptions(dataset, data_root)` gives a dataset's descriptions and what provenance records:

* a registry dataset with a CoPrompt description file (`sources.DESCRIPTIONS`: ImageNet and the 10
  base-to-novel datasets) reads it from its folder under the data root, where `bmip download` puts
  it, or else from the copy bundled with bmip (all but ImageNet's); either is checked against its
  SHA-256 first;
* any other dataset (miniworld, your own data) falls back to its prompt template filled with the
  class name: one description per class, so the text target is the frozen zero-shot classifier
  (what the prompted text features start from). The fallback is logged as a warning and recorded
  in the training run's provenance, never silent.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .downloads import verify_file
from .errors import ChecksumError, DataError, DatasetNotFoundError
from .items import Dataset
from .manifest import Manifest
from .sources import BUNDLED_DIR, DESCRIPTIONS

logger = logging.getLogger(__name__)

TEMPLATE_FALLBACK = "template"


@dataclass(frozen=True)
class ClassDescriptions:
    """Sentences per class name (underscores as spaces, as in CoPrompt's files) and their origin."""

    sentences: Mapping[str, tuple[str, ...]]
    record: dict[str, Any]

    @property
    def sha256(self) -> str:
        """Identifies the sentences: the file's SHA-256, or that of the fallback's canonical JSON."""
        return self.record["sha256"]

    def per_class(self, classnames: Sequence[str]) -> list[tuple[str, ...]]:
        """The sentences of each class in `classnames`, in order; refuses classes it does not describe."""
        keys = [name.replace("_", " ") for name in classnames]
        missing = [key for key in keys if key not in self.sentences]
        if missing:
            where = self.record.get("file") or f"the {self.record['origin']} descriptions"
            raise DataError(
                f"{where} has no descriptions for {len(missing)} class(es): {missing[:5]}; "
                "its class names must be the dataset's (underscores as spaces)"
            )
        return [self.sentences[key] for key in keys]


def read_descriptions(path: Path) -> dict[str, tuple[str, ...]]:
    """A description file: a JSON object of class name -> non-empty list of sentences."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable JSON description file ({err})") from err
    if not isinstance(doc, dict) or not doc:
        raise DataError(f"{path}: expected a JSON object of class name -> list of sentences")
    for name, sentences in doc.items():
        if not (isinstance(sentences, list) and sentences and all(isinstance(s, str) for s in sentences)):
            raise DataError(f"{path}: class {name!r} must map to a non-empty list of sentences")
    return {name: tuple(sentences) for name, sentences in doc.items()}


def template_descriptions(classnames: Sequence[str], template: str, reason: str) -> ClassDescriptions:
    """The fallback: the dataset's prompt template filled with each class name."""
    sentences = {name.replace("_", " "): (template.format(name.replace("_", " ")),) for name in classnames}
    digest = hashlib.sha256(json.dumps(sentences, sort_keys=True).encode()).hexdigest()
    return ClassDescriptions(sentences, {"origin": TEMPLATE_FALLBACK, "template": template, "reason": reason,
                                         "sha256": digest})


def class_descriptions(dataset: Dataset, data_root: str | Path | None) -> ClassDescriptions:
    """A dataset's class descriptions (see the module docstring for where they come from)."""
    source = DESCRIPTIONS.get(dataset.name)
    url = source.urls[0] if source is not None and source.urls else None
    if source is None:
        reason = f"dataset {dataset.name!r} has no class-description file"
        logger.warning("%s: falling back to its prompt template %r, one description per class", reason, dataset.template)
        return template_descriptions(dataset.classnames, dataset.template, reason)
    root = Path(data_root) if data_root is not None else None
    path = root / source.dest if root is not None else None
    if path is not None and path.is_file():
        pinned = source.sha256 or Manifest(root).pinned_sha256(source.dest)
        try:
            digest = verify_file(path, sha256=pinned, size=source.size)
        except ChecksumError as err:
            fix = "delete it to use the copy bundled with bmip" if source.bundled else f"rerun `bmip download {dataset.name}`"
            raise ChecksumError(f"{path} is not CoPrompt's description file ({err}); {fix}") from err
        if pinned is None:
            logger.warning("%s has no recorded checksum (not installed by `bmip download`); using it as is", path)
    elif source.bundled:
        path = BUNDLED_DIR / source.bundled
        digest = verify_file(path, sha256=source.sha256, size=source.size)
    else:
        raise DatasetNotFoundError(
            f"{dataset.display_name or dataset.name}: class descriptions {path or source.dest} not found; run "
            f"`bmip download {dataset.name} --root {root or '<data_root>'}` to fetch them ({url})"
        )
    logger.info("%s: class descriptions from %s", dataset.name, path)
    return ClassDescriptions(read_descriptions(path), {"origin": "coprompt", "file": str(path), "sha256": digest,
                                                       "url": url})

