"""The experiment grid a config describes: which protocols train which models, and which
(protocol, dataset) pairs it trains and evaluates, the datasets its runs read, and whether its
backbone weights are a tag to fetch. A leaf module (plain dicts in, lists out): the config checks,
the results layout, the data checks, downloads and the workflow all read the grid from here.
"""
from __future__ import annotations

from typing import Any

# Which trained model each evaluation protocol uses, and which classes that model trains on.
TRAINED_BY = {
    "base2novel": "base2novel",
    "open_world": "base2novel",
    "cross_dataset": "cross_dataset",
    "domain_generalization": "cross_dataset",
}
TRAIN_CLASSES = {"base2novel": "base", "cross_dataset": "all"}


def dataset_keys(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(config key, dataset name) of every dataset a config names, in config order."""
    out = []
    for protocol, section in config["protocols"].items():
        if "source" in section:
            out.append((f"protocols.{protocol}.source", section["source"]))
        for field in ("datasets", "targets"):
            out += [(f"protocols.{protocol}.{field}[{i}]", name) for i, name in enumerate(section.get(field, []))]
    return out


def training_dataset(config: dict[str, Any], protocol: str, dataset: str) -> str:
    """The dataset the model evaluated under `protocol` on `dataset` was trained on."""
    if TRAINED_BY[protocol] == "base2novel":
        return dataset
    return config["protocols"][protocol]["source"]


def eval_datasets(config: dict[str, Any], protocol: str) -> list[str]:
    """The datasets evaluated under `protocol`: its datasets (base2novel, open_world) or targets."""
    spec = config["protocols"][protocol]
    return list(spec["datasets"] if "datasets" in spec else spec["targets"])


def evaluations(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (protocol, dataset) the config evaluates, in config order."""
    return [(protocol, dataset) for protocol in config["protocols"] for dataset in eval_datasets(config, protocol)]


def trainings(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (training protocol, dataset) the config needs a trained model for."""
    out: list[tuple[str, str]] = []
    for protocol, spec in config["protocols"].items():
        training = TRAINED_BY[protocol]
        for dataset in spec["datasets"] if training == "base2novel" else [spec["source"]]:
            if (training, dataset) not in out:
                out.append((training, dataset))
    return out


def datasets_read(config: dict[str, Any]) -> list[str]:
    """Every dataset a run of the config reads (trained on or evaluated), in config order."""
    return list(dict.fromkeys([*(d for _, d in trainings(config)), *(d for _, d in evaluations(config))]))


def weights_tag(config: dict[str, Any]) -> bool:
    """Whether `backbone.pretrained` names weights to fetch (a tag such as openai), rather than the
    generated miniworld's, a weights file that exists, or `none`."""
    import os

    pretrained = str(config["backbone"]["pretrained"])
    return "miniworld" not in config and pretrained != "none" and not os.path.isfile(pretrained)
