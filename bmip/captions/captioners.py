"""The captioners a config can name (`captions.captioner`), as a registry of name -> factory.

A captioner turns images into captions and says what made them (`provenance`): the model and its
revision, the instruction, the generation settings, the versions of the libraries that computed
them and a fingerprint of its own code. That record is what decides whether an earlier caption may
be reused (bmip.captions.store.reusable), so everything that can change a caption's text is in it.

* `miniworld` (bmip/captions/miniworld.py): the embedded benchmark's scene facts, the stand-in for
  an MLLM on miniworld;
* `mllm` (bmip/captions/mllm.py): a Hugging Face `transformers` image-text-to-text model;
* `file` (bmip/captions/user_file.py): your own captions, CSV or JSON, checked against the images.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from bmip.data import Dataset
from bmip.engine.dependencies import library_versions  # noqa: F401 (the captioners' provenance reads it here)


@dataclass(frozen=True)
class ImageRef:
    """One image to caption: its path relative to the dataset's image root (the captions file's
    key) and the file on this machine."""

    path: str
    file: Path


class Captioner(Protocol):
    name: str

    def provenance(self) -> dict[str, Any]:
        """What makes the captions: name, model, revision, instruction, generation, libraries, code_sha256."""

    def caption(self, images: Sequence[ImageRef]) -> list[str]:
        """One caption per image, in order."""


# name -> "module:factory"; a factory takes (the config's `captions:` section, the config, the
# dataset) and returns a Captioner. Modules are imported on use: the MLLM's imports torch.
CAPTIONERS: dict[str, str] = {
    "miniworld": "bmip.captions.miniworld:MiniworldCaptioner",
    "mllm": "bmip.captions.mllm:MllmCaptioner",
    "file": "bmip.captions.user_file:FileCaptioner",
}
# The captioners whose job wants a GPU (workflow/rules/captions.smk asks the executor for one).
GPU_CAPTIONERS = frozenset({"mllm"})


def build_captioner(config: dict[str, Any], data: Dataset) -> Captioner:
    """The captioner the config's `captions:` section names, for `data`."""
    settings = config["captions"]
    module, factory = CAPTIONERS[settings["captioner"]].split(":")
    make: Callable[..., Captioner] = getattr(importlib.import_module(module), factory)
    return make(settings, config, data)


def code_sha256(module: str) -> str:
    """sha256 of a module's syntax tree without docstrings: a comment or docstring edit keeps its
    captions, a code change makes them again."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()
