"""`load_dataset`: one entry point for the paper's datasets and for your own."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from .coop import READERS
from .custom import load_custom
from .errors import DatasetNotFoundError, SplitFileError
from .items import Dataset
from .registry import DATASETS, DatasetSpec, resolve_name
from .validate import build_dataset

logger = logging.getLogger(__name__)


def load_registered(spec: DatasetSpec, data_root: Path, check_images: bool = True) -> Dataset:
    """Read a registry dataset from its CoOp folder under `data_root`, and validate it."""
    root = Path(data_root)
    dataset_dir = root / spec.dataset_dir
    download = f"`bmip download {spec.name} --root {root}`"
    if not dataset_dir.is_dir():
        manual = f"\n{spec.manual.format(root=root)}" if spec.manual else ""
        raise DatasetNotFoundError(
            f"{spec.display_name}: folder {dataset_dir} not found. Run {download} to fetch it "
            f"(or link an existing copy there).{manual}"
        )
    raw = READERS[spec.reader](spec, dataset_dir, root)
    image_root = dataset_dir / spec.image_dir if spec.image_dir else dataset_dir
    dataset = build_dataset(
        name=spec.name,
        display_name=spec.display_name,
        image_root=image_root,
        train=raw.train,
        val=raw.val,
        test=raw.test,
        source=raw.source,
        split_file=raw.source if spec.split_file else None,
        template=spec.template,
        sample_val=spec.sample_val,
        test_only=spec.test_only,
        check=check_images and not raw.listed,
        hint=f"Run {download} to complete the download, or fix the data root.",
    )
    if dataset.num_classes != spec.num_classes:
        raise SplitFileError(
            f"{raw.source}: {dataset.num_classes} classes found, {spec.display_name} has {spec.num_classes}; "
            "the data is incomplete or is not this dataset"
        )
    logger.info(
        "%s: %d classes, %d train / %d val / %d test", spec.display_name, dataset.num_classes,
        len(dataset.train), len(dataset.val), len(dataset.test),
    )
    return dataset


def _looks_like_name(value: str) -> bool:
    return not any(sep in value for sep in ("/", "\\")) and not value.startswith(".")


def dataset_root(config: Mapping[str, Any], name: str) -> Path:
    """The folder dataset `name` of a config is read under: the parent of its `datasets:` folder
    (checked by bmip.config_checks to be named as under data_root), else data_root."""
    folder = (config.get("datasets") or {}).get(name)
    return Path(folder).expanduser().parent if folder else Path(config["data_root"])


def load_dataset(
    name_or_path: str | Path | Mapping[str, Any],
    data_root: str | Path | None = None,
    *,
    check_images: bool = True,
) -> Dataset:
    """Load a dataset by registry name ("oxford_pets", also "OxfordPets"/"Flowers102"), by path, or by spec dict.

    A name not in the registry is looked up as a folder or file under `data_root` (e.g. a generated
    dataset `<data_root>/<dir>/images` + `split.json`, or `<data_root>/mydata.csv`), then as a path of
    its own. A dataset found under `data_root` is named exactly as asked for (`mydata.csv`, whatever
    its folder or split file says), since the workflow files its records under the config's name;
    a registry dataset takes its registry key (`OxfordPets` gives `oxford_pets`). Every dataset is
    validated: labels and class names must agree and, unless `check_images` is False, every listed
    image exist.
    """
    if isinstance(name_or_path, Mapping):
        return load_custom(name_or_path, Path(data_root) if data_root else None, check_images)
    text = str(name_or_path)
    key = resolve_name(text) if isinstance(name_or_path, str) and _looks_like_name(text) else None
    if key is not None:
        if data_root is None:
            raise ValueError(f"loading {key!r} needs data_root, the folder that holds the CoOp dataset folders")
        return load_registered(DATASETS[key], Path(data_root), check_images)
    candidates = [Path(data_root) / text] if data_root is not None and not Path(text).is_absolute() else []
    if candidates and candidates[0].exists():
        return load_custom({"root": candidates[0], "name": text}, None, check_images)
    candidates.append(Path(text))
    if candidates[-1].exists():
        return load_custom(candidates[-1], None, check_images)
    raise DatasetNotFoundError(
        f"{text!r} is not a registered dataset ({', '.join(DATASETS)}) and no such folder or file exists "
        f"(looked at {', '.join(str(p) for p in candidates)})"
    )
