"""Method checkpoints: only the learnable tensors (safetensors) plus a JSON metadata record.

The tensors are the method's prompts (and projections, gates) and a regulariser's own tensors
(CoPrompt's adapters, stored as "coprompt.<name>").

The frozen backbone is never stored: a checkpoint names it, and loading checks that the
backbone it is applied to is the same one. Class-dependent state (tokens, embeddings, cached
features) is rebuilt for whatever class set the model is loaded for (novel classes, another
dataset), since no learnable tensor of any method depends on the class set. Which classes the
model was trained on travels in the metadata (`trained_classnames`): MMRL scores those classes with
its fused logits and every other class with its class-token branch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

import bmip
from bmip.io import atomic_write

if TYPE_CHECKING:  # torch and open_clip load with the model, not to read metadata (the audit)
    import torch

    from bmip.backbone import Backbone
    from bmip.prompting import PromptedCLIP

FORMAT = "bmip-prompts/1"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or belongs to another method or backbone."""


def save_checkpoint(path: Path, model: "PromptedCLIP", extra: dict[str, Any] | None = None) -> None:
    """Write the method's learnable tensors and metadata to `path` atomically."""
    import torch
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.named_learnable_parameters()}
    meta = {
        "format": FORMAT,
        "bmip_version": bmip.__version__,
        "method": model.method_name,
        "options": model.method_options,
        "backbone": {"name": model.backbone.name, "pretrained": model.backbone.pretrained},
        "classnames": model.classnames,
        "trained_classnames": model.trained_classnames,
        "template": model.template,
        **(extra or {}),
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"bmip": json.dumps(meta)}))


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a checkpoint file, refusing anything that is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {}).get("bmip", "null"))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable bmip checkpoint ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a bmip checkpoint (format {FORMAT!r} expected)")
    return meta


def read_checkpoint(path: Path) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """(tensors, metadata) of a checkpoint file, refusing anything that is not one of ours."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable bmip checkpoint ({err})") from err
    return tensors, meta


def load_model(
    path: Path,
    backbone: "Backbone",
    classnames: list[str] | None = None,
    template: str | None = None,
    expect_method: str | None = None,
) -> "PromptedCLIP":
    """Rebuild a trained model from a checkpoint, for its own or a new class set."""
    from bmip.methods import build_model

    tensors, meta = read_checkpoint(path)
    if expect_method is not None and meta["method"] != expect_method:
        raise CheckpointError(f"{path} holds method {meta['method']!r}, not {expect_method!r}")
    want = {"name": backbone.name, "pretrained": backbone.pretrained}
    if meta["backbone"] != want:
        raise CheckpointError(f"{path} was trained on backbone {meta['backbone']}, not {want}")
    model = build_model(backbone, meta["method"], classnames or meta["classnames"], template or meta["template"], meta["options"])
    # the classes it was trained on, whatever class set it is loaded for (MMRL scores them apart);
    # a checkpoint written before this field existed was saved for its trained classes
    model.trained_classnames = meta.get("trained_classnames", meta["classnames"])
    try:
        model.load_learnable_state(tensors)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: tensors do not match method {meta['method']!r} ({err})") from err
    return model
