"""Load a frozen open_clip ViT CLIP by name and pretrained tag or local weight file.

The paper uses `ViT-B-16` with the `openai` weights. Tiny configurations for tests and the
miniworld demo ship in `bmip/model_configs/` and are registered with open_clip on import.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from safetensors.torch import save_file
from torch import nn

from bmip.io import atomic_write, file_sha256

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)

RANDOM_INIT = ("none", "random", "")


class BackboneError(RuntimeError):
    """The requested backbone cannot be built; the message says what to do."""


@dataclass
class Backbone:
    """A frozen open_clip CLIP plus what prompt methods need to know about it."""

    clip: open_clip.CLIP
    tokenizer: open_clip.tokenizer.SimpleTokenizer
    name: str
    pretrained: str
    weights_path: Path | None
    weights_digest: str | None = None

    @property
    def text_width(self) -> int:
        return self.clip.transformer.width

    @property
    def vision_width(self) -> int:
        return self.clip.visual.transformer.width

    @property
    def text_layers(self) -> int:
        return len(self.clip.transformer.resblocks)

    @property
    def vision_layers(self) -> int:
        return len(self.clip.visual.transformer.resblocks)

    @property
    def embed_dim(self) -> int:
        return self.clip.visual.output_dim

    @property
    def image_size(self) -> int:
        size = self.clip.visual.image_size
        return size[0] if isinstance(size, tuple) else int(size)

    @torch.no_grad()
    def word_embeddings(self, text: str) -> torch.Tensor:
        """Token embeddings of `text` without SOS/EOT, shape (n_tokens, text_width)."""
        tokens = self.tokenizer([text])[0]
        n = int(tokens.argmax()) - 1  # EOT has the largest id in CLIP's vocabulary
        return self.clip.token_embedding(tokens[1 : 1 + n]).float().clone()

    def n_tokens(self, text: str) -> int:
        return int(self.tokenizer([text])[0].argmax()) - 1


def weights_sha256(backbone: Backbone) -> str | None:
    """SHA-256 of the weight file the backbone was loaded from (None for random init), hashed once."""
    if backbone.weights_path is None:
        return None
    if backbone.weights_digest is None:
        backbone.weights_digest = file_sha256(backbone.weights_path)
    return backbone.weights_digest


def is_torchscript(path: Path) -> bool:
    """OpenAI's released CLIP files are TorchScript archives (a zip with a `code/` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def torchscript_to_safetensors(path: Path) -> Path:
    """Convert a TorchScript CLIP archive to a plain safetensors state dict beside it, once.

    `torch.load(weights_only=True)` refuses TorchScript archives, and a safetensors file can be
    loaded without executing anything. Scalar metadata entries of OpenAI's files are dropped.
    """
    out = path.with_suffix(".safetensors")
    if not out.is_file():
        log.info("converting TorchScript weights %s to %s", path, out)
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
        tensors = {k: v.contiguous() for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
        atomic_write(out, lambda tmp: save_file(tensors, str(tmp)))
    return out


def resolve_weights(name: str, pretrained: str, cache_dir: str | None = None) -> tuple[Path, bool]:
    """Turn a pretrained tag or path into a verified local file and its quick-GELU flag.

    Tags resolve through open_clip's registry of sources and hashes (OpenAI files carry their
    SHA-256 in the URL and are verified by open_clip). Without network access and an empty
    cache, this fails with a message that names the file to fetch and where to put it.
    """
    path = Path(pretrained).expanduser()
    if path.is_file():
        return (torchscript_to_safetensors(path) if is_torchscript(path) else path), False
    if os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors", ".pth")):
        raise BackboneError(f"backbone weight file not found: {path}. Check `backbone.pretrained` in your config.")
    cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise BackboneError(
            f"unknown pretrained tag {pretrained!r} for model {name!r}; known tags: {tags or 'none'}. "
            "Use one of them, a path to a weight file, or 'none' for random weights."
        )
    url = cfg.get("url", "")
    cache = Path(cache_dir or os.path.expanduser("~/.cache/clip"))
    try:
        target = open_clip.pretrained.download_pretrained(cfg, prefer_hf_hub=not url, cache_dir=str(cache))
    except Exception as err:  # network failures surface as many exception types
        where = cache / os.path.basename(url) if url else "a local file"
        source = url or f"https://huggingface.co/{cfg.get('hf_hub', '').rstrip('/')}"
        raise BackboneError(
            f"pretrained weights {name}/{pretrained} are not cached in {cache} and could not be downloaded on "
            f"{socket.gethostname()} ({err}). Where there is network (on a cluster, the login node), run "
            f"`bmip download --config <your config>`, which puts them in backbone.cache_dir; or download {source} "
            f"and put it at {where} (or anywhere, and set `backbone.pretrained` to that file path)."
        ) from err
    if not target:
        raise BackboneError(f"open_clip has no download source for {name}/{pretrained}")
    target = Path(target)
    if is_torchscript(target):
        target = torchscript_to_safetensors(target)
    return target, bool(cfg.get("quick_gelu", False))


def _check_supported(clip: nn.Module, name: str) -> None:
    if not isinstance(clip, open_clip.CLIP) or not isinstance(clip.visual, VisionTransformer):
        raise BackboneError(f"{name}: prompt learning here needs an open_clip CLIP with a ViT image tower")
    blocks = list(clip.visual.transformer.resblocks) + list(clip.transformer.resblocks)
    if not all(type(b) is ResidualAttentionBlock for b in blocks):
        raise BackboneError(f"{name}: only standard ResidualAttentionBlock transformers are supported")
    if clip.text_pool_type != "argmax":
        raise BackboneError(f"{name}: text features must be pooled at the EOT token (text_pool_type 'argmax')")
    if not isinstance(clip.visual.patch_dropout, nn.Identity):
        raise BackboneError(f"{name}: patch dropout would drop prompt tokens; build the model without it")


class _RandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _quiet_random_init():
    """Drop open_clip's "No pretrained weights loaded … initialized randomly" warning (logged on the
    root logger): it comes only where no weights file is given, i.e. where the caller asked for
    random weights (`pretrained: none`); a weights file that cannot be loaded raises instead."""
    drop = _RandomInitWarning()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def load_backbone(
    name: str = "ViT-B-16",
    pretrained: str | None = "openai",
    *,
    quick_gelu: bool | None = None,
    cache_dir: str | None = None,
    device: str | torch.device = "cpu",
) -> Backbone:
    """Build a frozen open_clip CLIP from a model name and a pretrained tag, file, or 'none'."""
    if name not in open_clip.list_models():
        raise BackboneError(f"unknown model {name!r}; see `open_clip.list_models()` or bmip/model_configs/")
    pretrained = pretrained or "none"
    weights: Path | None = None
    tag_quick_gelu = False
    if pretrained.lower() not in RANDOM_INIT:
        weights, tag_quick_gelu = resolve_weights(name, pretrained, cache_dir)
    # Random weights are drawn from a fixed seed, so separate processes (train, then evaluate)
    # build the same backbone; the caller's RNG state is left untouched.
    with torch.random.fork_rng(devices=[]), _quiet_random_init():
        torch.manual_seed(0)
        clip = open_clip.create_model(
            name,
            pretrained=str(weights) if weights else None,
            force_quick_gelu=tag_quick_gelu if quick_gelu is None else quick_gelu,
            device=device,
        )
    _check_supported(clip, name)
    clip.eval().requires_grad_(False)
    return Backbone(clip, open_clip.get_tokenizer(name), name, pretrained, weights)
