"""What training and evaluation share: device and precision, backbone, data, batched prediction."""
from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from bmip.backbone import Backbone, load_backbone, weights_sha256
from bmip.config import ConfigError
from bmip.data import Dataset, ImageDataset, Item, dataset_root, fewshot_split, items_hash, load_dataset, test_transform
from bmip.io import file_sha256
from bmip.prompting import PromptedCLIP

log = logging.getLogger(__name__)


def no_gpu_reason() -> str:
    """Why torch sees no CUDA GPU here, in words."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return "CUDA_VISIBLE_DEVICES is empty"
    try:
        torch.cuda.init()
    except Exception as err:  # torch says why: no driver, a driver too old, a bad device id...
        return f"CUDA does not start: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return "the CUDA driver lists no GPU"


def resolve_device(name: str) -> torch.device:
    """The config's `device` as a torch device; ConfigError when a GPU it names is not usable here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device: {name}, but no CUDA GPU is usable on this machine ({no_gpu_reason()}); "
                              "run where the jobs get a GPU, or set device: auto or cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device: {name}, but this process sees {count} GPU(s), cuda:0..cuda:{count - 1} "
                              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                              "use device: cuda to let each job take a free GPU")
    return device


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _native_bf16(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device) >= (8, 0)  # Ampere and newer


def resolve_precision(device: torch.device, precision: str) -> str:
    """The compute precision a run uses: fp32, bf16 or fp16. ConfigError when the device cannot run it.

    `auto` is bf16 on a GPU that has native bf16 (Ampere or newer) and fp32 otherwise, CPU
    included. An explicit `bf16` runs on CPU too, through torch's CPU autocast (slower than fp32
    on most CPUs: it is there to test the GPU's numerics anywhere); `fp16` runs on a GPU only.
    """
    if precision == "auto":
        return "bf16" if device.type == "cuda" and _native_bf16(device) else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision: fp16 runs on a GPU only, and the jobs run on {device}; "
                          "use precision: bf16 (CPU autocast) or fp32")
    if precision == "bf16" and device.type == "cuda" and not _native_bf16(device):
        props = torch.cuda.get_device_properties(device)
        raise ConfigError(f"precision: bf16 needs a GPU with native bf16 (compute capability 8.0 or newer); "
                          f"{props.name} has {props.major}.{props.minor}: use precision: fp16, fp32 or auto")
    return precision


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast, whose backward pass through the frozen fp16 backbone would
    otherwise underflow small gradients to 0 (bf16 has fp32's exponent range and needs none). The
    learnable tensors stay fp32: the scaler unscales their gradients before the optimiser step and
    skips a step whose gradients overflowed. Disabled (a pass-through) for fp32 and bf16."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def compute_setup(config: dict[str, Any]) -> tuple[torch.device, str]:
    """(device, resolved precision) a run of this config computes with here."""
    device = resolve_device(config["device"])
    return device, resolve_precision(device, config["precision"])


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for the frozen backbone's compute at `precision` (fp32: none), on GPU or CPU.

    Learnable tensors, their gradients and the optimiser state stay fp32 whatever the compute
    precision (the released fp16 + Adam setup overflows after one step): autocast only lowers
    the precision of the matrix products, and casts back where a method asks for fp32.
    """
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


_BACKBONES: dict[tuple, Backbone] = {}


def backbone_from(config: dict[str, Any], device: torch.device) -> Backbone:
    """The config's frozen backbone, loaded once per process (a job may run several seeds)."""
    spec = config["backbone"]
    key = (spec["model"], spec["pretrained"], spec.get("quick_gelu"), spec.get("cache_dir"), str(device))
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(
            spec["model"], spec["pretrained"], quick_gelu=spec.get("quick_gelu"), cache_dir=spec.get("cache_dir"),
            device=device,
        )
    return _BACKBONES[key]


def backbone_record(backbone: Backbone) -> dict[str, Any]:
    return {
        "model": backbone.name,
        "pretrained": backbone.pretrained,
        "weights_file": str(backbone.weights_path) if backbone.weights_path else None,
        "weights_sha256": weights_sha256(backbone),
    }


def fewshot_data(config: dict[str, Any], name: str, seed: int) -> tuple[Dataset, list[Item], list[Item]]:
    """A dataset and its CoOp few-shot (train, val) lists for `seed`, over all classes."""
    dataset = load_dataset(name, dataset_root(config, name))
    train, val = fewshot_split(dataset, config["shots"], seed)
    return dataset, train, val


def dataset_inputs(dataset: Dataset, items: Sequence[Item]) -> dict[str, Any]:
    """Provenance of the data a run used: the split file's hash and the exact image list's hash."""
    return {
        "dataset": dataset.name,
        "split_file": str(dataset.split_file) if dataset.split_file else None,
        "split_file_sha256": file_sha256(dataset.split_file) if dataset.split_file else None,
        "images_sha256": items_hash(items),
        "n_images": len(items),
    }


class EvalImageCache:
    """Test-transformed images kept in this process, so that evaluating one dataset for several
    seeds, label spaces (base, novel, open-world, each ratio) or protocols decodes each image once.
    The transform is deterministic, so a cached tensor is the one a fresh decode gives. Bounded:
    past `max_bytes` the least recently used images are dropped."""

    def __init__(self, max_bytes: int = 2 * 2**30) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._images: OrderedDict[tuple[str, str, int], torch.Tensor] = OrderedDict()

    def batches(self, items: Sequence[Item], root: Path, size: int, batch: int, where: str = "") -> Iterator[torch.Tensor]:
        dataset = ImageDataset(items, root, test_transform(size), where)
        for start in range(0, len(items), batch):
            images = []
            for item in items[start:start + batch]:
                key = (str(root), item.path, size)
                image = self._images.get(key)
                if image is None:
                    self.misses += 1
                    image = dataset.load(item)
                    self._images[key] = image
                    self.bytes += image.nbytes
                    while self.bytes > self.max_bytes and self._images:
                        self.bytes -= self._images.popitem(last=False)[1].nbytes
                else:
                    self.hits += 1
                    self._images.move_to_end(key)
                images.append(image)
            yield torch.stack(images)


EVAL_IMAGES = EvalImageCache()


class _Indexed(ImageDataset):
    """(image, label, index in the item list): which items a shuffled batch holds."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return (*super().__getitem__(index), index)


def loader(items: Sequence[Item], root: Path, size: int, batch: int, workers: int, where: str = "",
           indexed: bool = False, **kwargs: Any) -> DataLoader:
    """Batches of (images, labels); `where` (e.g. "toy train") is named by the error of a file that cannot be decoded.
    `indexed`: batches of (images, labels, indices into `items`), the same images drawn in the same order."""
    dataset = (_Indexed if indexed else ImageDataset)(items, root, kwargs.pop("transform", test_transform(size)), where)
    return DataLoader(dataset, batch_size=batch, num_workers=workers, **kwargs)


# ---------------------------------------------------------------- captions (methods that read them)
@dataclass(frozen=True)
class JobCaptions:
    """The captions a job's method reads: each image's by path (as in the split files), and the
    record of their file and captioner that the job's provenance keeps (bmip.captions.Captions.record)."""

    text: Mapping[str, str]
    record: dict[str, Any]


def caption_lookup(config: dict[str, Any], method: str, data: Dataset, items: Sequence[Item],
                   name: str | None = None) -> JobCaptions | None:
    """The captions of `items`, read once per job for a method that reads captions (the registry's
    `captions` trait; bmip.captions refuses an image without a caption, or one changed since it was
    captioned, naming it), else None. `name`: the dataset as the config names it."""
    from bmip.methods import reads_captions

    if not reads_captions(method):
        return None
    from bmip.captions import captions_for

    texts, record = captions_for(config, data, items, name)
    return JobCaptions(dict(zip((item.path for item in items), texts)), record)


def give_captions(model: PromptedCLIP, captions: JobCaptions | None, items: Sequence[Item]) -> None:
    """Before a forward of the images of `items`: the method gets their captions, in batch order
    (`PromptMethod.batch_captions`). Nothing for a method that reads none (`captions` None)."""
    if captions is not None:
        model.method.batch_captions = [captions.text[item.path] for item in items]


@torch.no_grad()
def predict(
    model: PromptedCLIP,
    items: Sequence[Item],
    root: Path,
    *,
    batch: int,
    workers: int,
    device: torch.device,
    precision: str,
    desc: str = "evaluate",
    captions: JobCaptions | None = None,
) -> torch.Tensor:
    """Predicted labels for `items` in the model's current label space; text features once.
    With workers=0 the images come from this process's EvalImageCache; with workers, from a
    DataLoader decoding them in parallel (large datasets on a GPU machine). `captions`: of a
    method that reads them (`caption_lookup`), given to it batch by batch."""
    model.eval()
    preds = []
    with autocast(device, precision):
        text = model.text_features()
        for images in eval_batches(items, root, model.backbone.image_size, batch, workers, desc):
            give_captions(model, captions, items[len(preds) * batch:len(preds) * batch + len(images)])
            preds.append(model(images.to(device), text).argmax(dim=-1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def eval_batches(items: Sequence[Item], root: Path, size: int, batch: int, workers: int,
                 desc: str = "evaluate") -> Iterator[torch.Tensor]:
    """Test-transformed images of `items` in order, `batch` at a time: from this process's
    EvalImageCache with workers=0, else from a DataLoader decoding them in parallel."""
    if workers == 0:
        batches = EVAL_IMAGES.batches(items, root, size, batch, desc)
    else:
        batches = (images for images, _ in loader(items, root, size, batch, workers, desc))
    yield from tqdm(batches, total=-(-len(items) // batch), desc=desc, unit="batch", leave=False)


def accuracy_report(labels: torch.Tensor, preds: torch.Tensor, classnames: Sequence[str]) -> dict[str, Any]:
    """Top-1 accuracy (%), counts and per-class accuracy in a label space of `classnames`."""
    n = len(classnames)
    correct = (preds == labels)
    totals = torch.bincount(labels, minlength=n)
    hits = torch.bincount(labels[correct], minlength=n)
    per_class = [
        {"label": y, "classname": name, "total": t, "correct": c, "accuracy": 100.0 * c / t if t else None}
        for y, (name, t, c) in enumerate(zip(classnames, totals.tolist(), hits.tolist()))
    ]
    total = int(labels.numel())
    return {
        "accuracy": 100.0 * int(correct.sum()) / total if total else None,
        "correct": int(correct.sum()),
        "total": total,
        "per_class": per_class,
        "label_space": list(classnames),
    }
