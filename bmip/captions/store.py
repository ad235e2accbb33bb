"""The captions file: one per dataset, every image a run of the config reads, keyed by path and content.

`<experiment>/captions/<dataset>.json` (format `bmip-captions/1`)::

    {
      "format": "bmip-captions/1",
      "dataset": "toys",
      "captioner": {"name": ..., "model": ..., "revision": ..., "commit": ..., "instruction": ...,
                    "generation": {...}, "libraries": {...}, "code_sha256": ...},
      "images": {"n": 1234, "content_sha256": ...},
      "captions": {"<path>": {"sha256": "<image sha256>", "caption": "..."}, ...}
    }

`<path>` is the item's path relative to the dataset's image root (`bmip.data.Item.path`, as in the
split files), `sha256` the image file's content hash as the inventory (`inputs/<dataset>.json`,
bmip/engine/inventory.py) records it. `images.content_sha256` is computed exactly as the inventory's
`files.content_sha256` (sha256 over the sorted `path NUL sha256 LF` lines), so the audit compares the
two without reading an image: equal digests mean the same images with the same content.

The file is written atomically with sorted keys, so the same images captioned by the same captioner
give the same bytes; the captioner's provenance holds no time. A caption is looked up by path *and*
content hash: a caption of an image that has since changed is refused (`StaleCaptionError`), as is an
image without a caption (`MissingCaptionError`); both messages name the image and say what to run.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from bmip.data.errors import DataError
from bmip.io import atomic_write_bytes

FORMAT = "bmip-captions/1"
FOLDER = "captions"  # <experiment>/captions/<dataset>.json
PROVENANCE_KEYS = ("name", "model", "revision", "instruction", "generation", "libraries", "code_sha256")
RECORDED = ("name", "model", "revision", "commit", "instruction")  # what a run's records name of its captioner
RERUN = ("rerun the captions stage: the workflow's `captions` rule (snakemake reruns it when the images "
         "change), or by hand `bmip captions CONFIG --dataset {dataset}`; it captions only the images "
         "without a current caption and reuses the rest")


class CaptionsError(DataError):
    """Captions that cannot be used: a missing or malformed captions file."""


class MissingCaptionError(CaptionsError, KeyError):
    """An image has no caption in its dataset's captions file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class StaleCaptionError(CaptionsError):
    """An image's content changed since it was captioned: its caption describes another image."""


def captions_path(experiment: str | Path, dataset: str) -> Path:
    """Where the captions of `dataset` live in an experiment folder."""
    return Path(experiment) / FOLDER / f"{dataset}.json"


def previous_path(experiment: str | Path, dataset: str) -> Path:
    """A hidden copy of the last captions file written (no result: left out of the manifest and the
    crate). Snakemake deletes a job's output before it reruns it; this copy is what a rerun reuses."""
    return Path(experiment) / FOLDER / f".{dataset}.previous.json"


def content_digest(hashes: Mapping[str, str]) -> str:
    """sha256 over the sorted (path, content sha256) pairs: the inventory's `files.content_sha256`."""
    digest = hashlib.sha256()
    for rel in sorted(hashes):
        digest.update(f"{rel}\0{hashes[rel]}\n".encode())
    return digest.hexdigest()


def document(dataset: str, captioner: dict[str, Any], entries: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """The captions document of `entries` (path -> (image sha256, caption))."""
    return {
        "format": FORMAT,
        "dataset": dataset,
        "captioner": captioner,
        "images": {"n": len(entries), "content_sha256": content_digest({p: h for p, (h, _) in entries.items()})},
        "captions": {path: {"sha256": sha, "caption": text} for path, (sha, text) in sorted(entries.items())},
    }


def encode(doc: dict[str, Any]) -> bytes:
    """The file's bytes: indented UTF-8 JSON with sorted keys (the same document, the same bytes)."""
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_captions(path: Path, doc: dict[str, Any]) -> None:
    """Write a captions document atomically (a reader never sees half a file)."""
    atomic_write_bytes(Path(path), encode(doc))


def problems(doc: Any) -> list[str]:
    """What is wrong with a captions document (empty when it is well-formed)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return [f"not a {FORMAT} document"]
    out = []
    captioner = doc.get("captioner")
    if not isinstance(captioner, dict):
        out.append("no captioner provenance")
    else:
        missing = [key for key in PROVENANCE_KEYS if key not in captioner]
        if missing:
            out.append(f"the captioner's provenance lacks {', '.join(missing)}")
    captions = doc.get("captions")
    if not isinstance(captions, dict):
        return out + ["no `captions` mapping"]
    bad = [path for path, entry in captions.items()
           if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                   and isinstance(entry.get("caption"), str))]
    if bad:
        out.append(f"{len(bad)} entries without a sha256 and a caption text, e.g. {bad[0]}")
    images = doc.get("images")
    if not isinstance(images, dict) or images.get("n") != len(captions):
        out.append("`images.n` is not the number of captions")
    elif not bad and images.get("content_sha256") != content_digest({p: e["sha256"] for p, e in captions.items()}):
        out.append("`images.content_sha256` does not match the captions' image hashes")
    return out


@dataclass(frozen=True)
class Captions:
    """A dataset's captions as read from its file: what a method asks for an image's caption."""

    dataset: str
    captioner: dict[str, Any]
    entries: dict[str, tuple[str, str]]  # path -> (image sha256, caption)
    source: Path
    sha256: str  # of the file's bytes as read: what a run that read these captions records

    def record(self) -> dict[str, Any]:
        """What a training or evaluation that read these captions records in its provenance (and an
        evaluation in its metrics): the file (relative to the experiment folder), its sha256 (the
        audit compares it with the file there now) and who made the captions with what instruction."""
        return {"file": f"{FOLDER}/{self.source.name}", "sha256": self.sha256,
                "captioner": {key: self.captioner.get(key) for key in RECORDED}}

    def caption(self, path: str, sha256: str) -> str:
        """The caption of the image at `path` (relative to the image root) whose content hash is
        `sha256`; refused, naming the image, when it has none or was captioned with other content."""
        entry = self.entries.get(path)
        if entry is None:
            raise MissingCaptionError(
                f"{self.dataset}: image {path} has no caption in {self.source} ({len(self.entries)} images "
                f"captioned by {self.captioner.get('name')}): {RERUN.format(dataset=self.dataset)}")
        captioned, text = entry
        if captioned != sha256:
            raise StaleCaptionError(
                f"{self.dataset}: image {path} changed since it was captioned (its content sha256 is now "
                f"{sha256[:12]}…, the caption in {self.source} is of {captioned[:12]}…): "
                f"{RERUN.format(dataset=self.dataset)}")
        return text

    def captions(self, paths: Sequence[str], hashes: Mapping[str, str]) -> list[str]:
        """The captions of `paths`, in order, each checked against its content hash in `hashes`."""
        return [self.caption(path, hashes[path]) for path in paths]


def read_captions(path: Path) -> Captions:
    """A captions file, checked; CaptionsError names the file and what to run when it is unusable."""
    path = Path(path)
    dataset = path.stem
    try:
        raw = path.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise CaptionsError(f"{path}: no captions for {dataset}: {RERUN.format(dataset=dataset)} (the config "
                            "needs a `captions:` section naming the captioner; docs/captions.md)") from None
    except (OSError, ValueError) as err:
        raise CaptionsError(f"{path}: unreadable captions file ({err}): {RERUN.format(dataset=dataset)}") from None
    found = problems(doc)
    if found:
        raise CaptionsError(f"{path}: {'; '.join(found)}: {RERUN.format(dataset=dataset)}")
    entries = {p: (e["sha256"], e["caption"]) for p, e in doc["captions"].items()}
    return Captions(str(doc.get("dataset") or dataset), doc["captioner"], entries, path, hashlib.sha256(raw).hexdigest())


def reusable(previous: Iterable[Path], captioner: dict[str, Any], hashes: Mapping[str, str]) -> dict[str, str]:
    """Captions among earlier captions files that still hold: made by the same captioner (its whole
    provenance: model, revision, instruction, generation settings, library versions, code) for the
    same path with the same content. Unreadable or foreign files are ignored."""
    keep: dict[str, str] = {}
    for path in previous:
        try:
            old = read_captions(path)
        except CaptionsError:
            continue
        if _identity(old.captioner) != _identity(captioner):
            continue
        for rel, (sha, text) in old.entries.items():
            if hashes.get(rel) == sha:
                keep.setdefault(rel, text)
    return keep


def _identity(captioner: dict[str, Any]) -> dict[str, Any]:
    """What decides a caption's text: the provenance less what is only recorded (the commit a hub
    revision resolved to)."""
    return {key: value for key, value in captioner.items() if key != "commit"}
