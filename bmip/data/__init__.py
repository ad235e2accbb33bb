"""Data layer: CoOp's datasets and splits, your own datasets, downloads, few-shot and class protocols.

Typical use::

    from bmip.data import load_dataset, fewshot_split, subsample_classes
    ds = load_dataset("oxford_pets", data_root)
    train, val = fewshot_split(ds, shots=16, seed=1)          # identical to CoOp/Dassl
    train, val, test, names = subsample_classes(train, val, ds.test, "base")
"""
from .checks import class_count_problems
from .custom import load_coop_dataset, load_csv_dataset, load_custom, load_folder_dataset
from .descriptions import ClassDescriptions, class_descriptions
from .downloads import download, download_file, verify_file
from .errors import (
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    DeadSourceError,
    DegenerateDatasetError,
    DownloadError,
    ManualDownloadRequired,
    MissingImagesError,
    SplitFileError,
    UnsafeArchiveError,
)
from .extract import safe_extract
from .sampling import fewshot, fewshot_split, fewshot_split_path, read_fewshot_split, write_fewshot_split
from bmip.io import file_sha256
from .items import Dataset, Item, items_hash
from .loader import dataset_root, load_dataset
from .protocols import (
    RATIO_SWEEP,
    OpenWorldSplit,
    base_novel_labels,
    open_world_split,
    ratio_counts,
    ratio_selection,
    subsample_classes,
    subsample_classes_ratio,
)
from .registry import DATASETS, DatasetSpec, get_spec, resolve_name
from .sources import Source


_LAZY_IMAGES = frozenset({"CLIP_MEAN", "CLIP_STD", "ImageDataset", "Views", "randaugment_transform", "test_transform",
                          "train_transform"})


def __getattr__(name: str) -> object:
    """Import torch/torchvision only when image loading is used, so `bmip download` starts fast."""
    if name in _LAZY_IMAGES:
        from . import images

        return getattr(images, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def zero_shot_prompts(template: str, classnames: list[str]) -> list[str]:
    """CoOp's zero-shot prompts: the template filled with each class name, underscores as spaces."""
    return [template.format(name.replace("_", " ")) for name in classnames]


__all__ = [
    "dataset_root",
    "CLIP_MEAN", "CLIP_STD", "DATASETS", "ChecksumError", "ClassDescriptions", "DataError", "Dataset", "DatasetNotFoundError",
    "DatasetSpec", "DeadSourceError", "DegenerateDatasetError", "DownloadError", "ImageDataset", "Item", "ManualDownloadRequired",
    "MissingImagesError", "OpenWorldSplit", "RATIO_SWEEP", "Source", "SplitFileError", "UnsafeArchiveError", "Views",
    "base_novel_labels", "class_count_problems", "class_descriptions", "download", "download_file", "fewshot", "fewshot_split", "fewshot_split_path",
    "file_sha256", "get_spec", "items_hash", "load_coop_dataset", "load_csv_dataset", "load_custom",
    "load_dataset", "load_folder_dataset", "open_world_split", "randaugment_transform", "ratio_counts", "ratio_selection",
    "read_fewshot_split", "resolve_name", "safe_extract", "subsample_classes", "subsample_classes_ratio",
    "test_transform", "train_transform", "verify_file", "write_fewshot_split", "zero_shot_prompts",
]
