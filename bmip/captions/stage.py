"""The captions stage: one dataset's captions file, written once and reused by every method and seed.

`build_captions(config, dataset)` captions every image a run of the config reads from the dataset
(the few-shot train and val images of every seed, every test image: the inventory's images,
bmip.engine.inventory.checked_parts), keyed by path and content hash. What an earlier captions file
of the same captioner already holds for an unchanged image is reused (the file itself when it is
still there, else the hidden copy of the last one written, which survives Snakemake deleting the
job's output before a rerun), so a changed image costs one caption, not a dataset's.

Which datasets get captions (`caption_datasets`): every dataset the config's runs read, when the
config has a `captions:` section or a method that reads captions (the registry's `captions` trait,
bmip.methods; `config_problems` then asks for the section).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from bmip.captions.captioners import CAPTIONERS, GPU_CAPTIONERS, ImageRef, build_captioner
from bmip.captions.store import (
    CaptionsError,
    captions_path,
    content_digest,
    document,
    encode,
    previous_path,
    reusable,
    write_captions,
)
from bmip.engine import inventory as INV
from bmip.engine import paths
from bmip.grid import datasets_read
from bmip.io import atomic_write_bytes

log = logging.getLogger(__name__)


def caption_methods(config: dict[str, Any]) -> list[str]:
    """The config's methods and ablation variants that read each image's caption (the registry's
    `captions` trait: MuGCP)."""
    from bmip.ablations import ablations
    from bmip.methods import reads_captions

    names = [*config.get("methods", []), *(v.name for a in ablations(config) for v in a.variants)]
    return [name for name in dict.fromkeys(names) if reads_captions(name)]


def caption_datasets(config: dict[str, Any]) -> list[str]:
    """The datasets the config wants captions of: every dataset its runs read, when it has a
    `captions:` section or a method that reads captions (`config_problems` then asks for the
    section); none otherwise."""
    return datasets_read(config) if "captions" in config or caption_methods(config) else []


def gpu_job(config: dict[str, Any]) -> bool:
    """Whether the config's captioner runs a model that wants a GPU (the workflow asks for one)."""
    return "captions" in config and config["captions"]["captioner"] in GPU_CAPTIONERS


def config_problems(config: dict[str, Any]) -> list[str]:
    """What the `captions:` section lacks for its captioner (the schema checks each key alone)."""
    if "captions" not in config:
        readers = caption_methods(config)
        return [f"method(s) {', '.join(readers)} read each image's caption, and the config has no `captions:` "
                "section naming the captioner (docs/captions.md)"] if readers else []
    section, out = config["captions"], []
    captioner = section["captioner"]
    if captioner not in CAPTIONERS:
        out.append(f"captions.captioner: {captioner!r} is none of {', '.join(CAPTIONERS)}")
    if captioner == "miniworld" and "miniworld" not in config:
        out.append("captions.captioner: miniworld captions the generated miniworld datasets from their scene facts, "
                   "and this config generates none (no `miniworld:` section): name mllm or file")
    if captioner == "file" and not section.get("file"):
        out.append("captions.file: the file captioner needs the path of your captions file (CSV path,caption or JSON)")
    if captioner != "file" and section.get("file"):
        out.append(f"captions.file is read by the file captioner only, and captions.captioner is {captioner}")
    return out


def image_hashes(config: dict[str, Any], dataset: str, root: Path, files: list[str], experiment: Path) -> dict[str, str]:
    """The content sha256 of each image file, as the inventory records it; the inventory's hash cache
    (file size and time) spares hashing an unchanged file again. The cache is only read: the
    workflow keeps it."""
    cache_file = INV._cache_path(experiment, dataset)  # (the inventory's own: one place knows where it is)
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    hashes = INV.content_hashes(root, files, cache if isinstance(cache, dict) else {}, f"hashing {dataset}")
    missing = [rel for rel, digest in hashes.items() if digest == INV.MISSING]
    if missing:
        raise CaptionsError(f"{dataset}: {len(missing)} image(s) the config's runs read are not under {root}, e.g. "
                            f"{', '.join(missing[:5])}: put the dataset back in place, or run the workflow, which "
                            "checks the data first")
    return hashes


def _check_inventory(experiment: Path, dataset: str, hashes: dict[str, str]) -> None:
    """The images are the ones the experiment's inventory records (when there is one): captions of
    other images than the runs read would be looked up in vain."""
    inventory = INV.inventory_path(experiment, dataset)
    if not inventory.is_file():
        log.warning("no %s: the images of %s are captioned as they are now", inventory, dataset)
        return
    recorded = json.loads(inventory.read_text(encoding="utf-8")).get("files", {})
    if recorded.get("n") != len(hashes) or recorded.get("content_sha256") != content_digest(hashes):
        raise CaptionsError(f"{dataset}: the images under its image root are not those {inventory} records (they "
                            "changed since the workflow started): run the workflow again, which records them anew "
                            "and captions what changed")


def build_captions(config: dict[str, Any], dataset: str, experiment: str | Path | None = None) -> Path:
    """Write `<experiment>/captions/<dataset>.json` for the config's runs; returns its path."""
    if "captions" not in config:
        raise CaptionsError("the config has no `captions:` section naming the captioner (docs/captions.md)")
    problems = config_problems(config)
    if problems:
        raise CaptionsError("; ".join(problems))
    exp = Path(experiment) if experiment is not None else paths.experiment_dir(config)
    (data, parts), = INV.checked_parts(config, [dataset]).values()
    files = sorted({item.path for items in parts.values() for item in items})
    hashes = image_hashes(config, dataset, Path(data.image_root), files, exp)
    _check_inventory(exp, dataset, hashes)
    captioner = build_captioner(config, data)
    provenance = captioner.provenance()
    out, previous = captions_path(exp, dataset), previous_path(exp, dataset)
    kept = reusable([out, previous], provenance, hashes)
    todo = [rel for rel in files if rel not in kept]
    log.info("%s: %d images, %d captions reused, %d to caption with %s", dataset, len(files), len(kept), len(todo),
             captioner.name)
    started = time.perf_counter()
    made = captioner.caption([ImageRef(rel, Path(data.image_root) / rel) for rel in todo]) if todo else []
    seconds = time.perf_counter() - started
    if todo:
        log.info("%s: captioned %d images in %.1f s (%.2f ms per image)", dataset, len(todo), seconds,
                 1000 * seconds / len(todo))
    provenance = captioner.provenance()
    if "commit" in provenance and provenance["commit"] is None and kept:  # nothing loaded: the reused ones'
        provenance["commit"] = _recorded_commit([out, previous])
    texts = {**kept, **dict(zip(todo, made))}
    doc = document(dataset, provenance, {rel: (hashes[rel], texts[rel]) for rel in files})
    write_captions(out, doc)
    atomic_write_bytes(previous, encode(doc))
    return out


def _recorded_commit(files: list[Path]) -> str | None:
    for path in files:
        try:
            commit = json.loads(path.read_text(encoding="utf-8"))["captioner"].get("commit")
        except (OSError, ValueError, KeyError, AttributeError):
            continue
        if commit:
            return commit
    return None
