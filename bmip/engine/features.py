"""Frozen image features: one pass of the frozen image tower per test set, shared by every method
whose image tower is not prompted (zero-shot CLIP, CoOp, CoCoOp, deep language prompting), by
every seed and every protocol.

The file `<experiment>/features/<dataset>/image_features.safetensors` holds the normalised image
features of the dataset's whole test split, in its order, as the frozen tower computes them in
batches of `eval_batch_size` at the run's precision. Its metadata (one JSON entry) carry the key they were computed
for (`KEY_FIELDS`: backbone, its activation and the sha256 of its weights, dataset, split file and test images
hashes, image size, batch size, precision, device type) and that key's sha256. A file whose key
differs from the one an evaluation expects is refused, naming the fields that differ: a stale
cache (weights retrained, split changed) or a foreign one (copied from another experiment or
machine) is never used silently. It is written atomically: a run killed mid-write leaves no file,
and the next run builds it again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bmip.engine import paths
from bmip.io import atomic_write, file_sha256

if TYPE_CHECKING:  # the audit reads a file's key without torch
    import torch

    from bmip.backbone import Backbone
    from bmip.data import Dataset

log = logging.getLogger(__name__)

FORMAT = "bmip-image-features/1"
KEY_FIELDS = ("format", "model", "quick_gelu", "weights_sha256", "dataset", "split_file_sha256", "test_images_sha256",
              "image_size", "batch_size", "precision", "device_type")


class FeatureCacheError(RuntimeError):
    """A frozen-feature file that does not belong to the evaluation that would read it."""


@dataclass(frozen=True)
class FrozenFeatures:
    """A test set's frozen image features and where they came from (for provenance)."""

    features: "torch.Tensor"  # (n_images, embed_dim), normalised, in the compute precision's dtype
    path: Path
    sha256: str
    key_sha256: str
    built: bool  # True when this process computed them (image forwards), False when read

    def record(self) -> dict[str, Any]:
        return {"file": str(self.path), "sha256": self.sha256, "key_sha256": self.key_sha256}


def _tower_sha256(backbone: "Backbone") -> str:
    """Weights identity of a backbone: its weight file's sha256, or for random weights (tests) the
    sha256 of the image tower's tensors."""
    import torch

    from bmip.backbone import weights_sha256

    digest = weights_sha256(backbone)
    if digest is not None:
        return digest
    h = hashlib.sha256()
    for name, tensor in sorted(backbone.clip.visual.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return f"random-init:{h.hexdigest()}"


def cache_key(config: dict[str, Any], backbone: "Backbone", data: "Dataset", device: "torch.device",
              precision: str) -> dict[str, Any]:
    """What the frozen features of `data`'s test split depend on."""
    from bmip.data import items_hash

    return {
        "format": FORMAT,
        "model": backbone.name,
        "quick_gelu": config["backbone"].get("quick_gelu"),  # an activation: same weights, other features
        "weights_sha256": _tower_sha256(backbone),
        "dataset": data.name,
        "split_file_sha256": file_sha256(data.split_file) if data.split_file else None,
        "test_images_sha256": items_hash(data.test),
        "image_size": backbone.image_size,
        "batch_size": config["eval_batch_size"],
        "precision": precision,
        "device_type": device.type,
    }


METADATA = "bmip"  # the safetensors metadata entry holding {"format", "key"} as JSON


def key_sha256(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def features_path(config: dict[str, Any], dataset: str) -> Path:
    return paths.features_file(paths.experiment_dir(config), dataset)


def read_header(path: Path) -> dict[str, Any]:
    """A features file's safetensors header (8-byte length, then JSON: tensor shapes and
    `__metadata__`), read without torch and without reading a tensor."""
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > path.stat().st_size - 8:
                raise ValueError(f"a header of {length} bytes in a file of {path.stat().st_size}")
            header = json.loads(fh.read(length))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (OSError, ValueError, struct.error) as err:
        raise FeatureCacheError(f"{path} is not a readable {FORMAT} file ({err}); delete it and rerun") from None
    return header


def read_key(path: Path) -> dict[str, Any]:
    """The key a features file was computed for."""
    meta = read_header(path).get("__metadata__") or {}
    try:
        doc = json.loads(meta[METADATA])
        key = doc["key"] if isinstance(doc, dict) and doc.get("format") == FORMAT else None
    except (KeyError, ValueError, TypeError):
        key = None
    if not isinstance(key, dict):
        raise FeatureCacheError(f"{path} is not a {FORMAT} file; delete it and rerun (it is rebuilt)")
    return key


def rows(path: Path) -> int:
    """How many images a features file holds: the image forwards its image_features job ran."""
    return int(read_header(path)["features"]["shape"][0])


def check_key(path: Path, found: dict[str, Any], expected: dict[str, Any]) -> None:
    differ = [f"{k}: file {found.get(k)!r}, expected {expected.get(k)!r}" for k in KEY_FIELDS
              if found.get(k) != expected.get(k)]
    if differ:
        raise FeatureCacheError(
            f"{path} holds frozen image features computed for another setting ({'; '.join(differ)}); "
            "it is stale or foreign and is not used: delete it and rerun (snakemake reruns the "
            "image_features rule, or bmip features builds it)")


def compute(model_backbone: "Backbone", data: "Dataset", *, batch: int, workers: int, device: "torch.device",
            precision: str) -> "torch.Tensor":
    """Normalised frozen image features of `data`'s test split, `batch` images at a time: exactly
    what `PromptedCLIP.features` computes for a method without vision prompts."""
    import torch
    import torch.nn.functional as F

    from bmip.engine.runtime import autocast, eval_batches
    from bmip.methods import build_model

    model = build_model(model_backbone, "zsclip", [data.classnames[0]], data.template).eval()
    out = []
    with torch.no_grad(), autocast(device, precision):
        for images in eval_batches(data.test, data.image_root, model_backbone.image_size, batch, workers,
                                   f"{data.name} frozen image features"):
            out.append(F.normalize(model.encode_image(images.to(device)), dim=-1).cpu())
    return torch.cat(out)


def load_or_build(config: dict[str, Any], data: "Dataset", backbone: "Backbone | None" = None) -> FrozenFeatures:
    """The frozen features of `data`'s test split for this config: read from the experiment's file
    after checking its key, or computed and written (atomically) when there is none yet."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from bmip.engine.runtime import backbone_from, compute_setup

    device, precision = compute_setup(config)
    backbone = backbone or backbone_from(config, device)
    key = cache_key(config, backbone, data, device, precision)
    path = features_path(config, data.name)
    built = False
    if path.exists():
        check_key(path, read_key(path), key)
        with safe_open(str(path), framework="pt") as fh:
            # A tensor of its own: safetensors' may sit in its buffer at any alignment, and CPU
            # matrix kernels round otherwise on unaligned memory (the same features read gave other
            # last digits downstream than the freshly computed ones).
            features = fh.get_tensor("features").clone()
        if features.shape[0] != len(data.test):
            raise FeatureCacheError(f"{path} holds {features.shape[0]} feature rows for {len(data.test)} test images; "
                                    "delete it and rerun")
    else:
        features = compute(backbone, data, batch=config["eval_batch_size"], workers=config["workers"],
                           device=device, precision=precision)
        # One metadata entry: safetensors writes its metadata map in no fixed order, so several
        # entries would give other bytes for the same features in another process.
        meta = {METADATA: json.dumps({"format": FORMAT, "key": key}, sort_keys=True)}
        atomic_write(path, lambda tmp: save_file({"features": features.contiguous()}, str(tmp), metadata=meta))
        log.info("wrote the frozen image features of %s (%d images) to %s", data.name, len(data.test), path)
        built = True
    return FrozenFeatures(features, path, file_sha256(path), key_sha256(key), built)


def build(config: dict[str, Any], dataset: str) -> FrozenFeatures:
    """`bmip features`: the workflow's image_features rule, one test set."""
    from bmip.data import dataset_root, load_dataset

    return load_or_build(config, load_dataset(dataset, dataset_root(config, dataset)))
