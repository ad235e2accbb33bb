"""Where every run writes: the file tree is the index of an experiment.

results/<experiment>/train/<training protocol>/<method>/<dataset>/seed<N>/   a trained model
results/<experiment>/<protocol>/<method>/<dataset>/seed<N>/                  an evaluation
results/<experiment>/features/<dataset>/image_features.safetensors            frozen image features
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bmip.config import TRAINED_BY

PROMPTS = "prompts.safetensors"
METRICS = "metrics.json"
GATES = "gates.json"  # BMIP runs only: bmip.engine.gates
MECHANISM = "mechanism.json"  # every prompt method (not zsclip): bmip.engine.mechanism
IMAGE_FEATURES = "image_features.safetensors"  # <experiment>/features/<dataset>/: bmip.engine.features
PROVENANCE = "provenance.json"
TRAIN_LOG = "train_log.csv"
STATE = "state.pt"


def experiment_dir(config: dict[str, Any]) -> Path:
    return Path(config["results_dir"]) / config["experiment"]


def features_file(experiment: str | Path, dataset: str) -> Path:
    """The frozen image features of a test set, in an experiment folder (bmip.engine.features)."""
    return Path(experiment) / "features" / dataset / IMAGE_FEATURES


def train_dir(config: dict[str, Any], training: str, method: str, dataset: str, seed: int) -> Path:
    return experiment_dir(config) / "train" / training / method / dataset / f"seed{seed}"


def eval_dir(config: dict[str, Any], protocol: str, method: str, dataset: str, seed: int) -> Path:
    return experiment_dir(config) / protocol / method / dataset / f"seed{seed}"


def training_dataset(config: dict[str, Any], protocol: str, dataset: str) -> str:
    """The dataset the model evaluated under `protocol` on `dataset` was trained on."""
    if TRAINED_BY[protocol] == "base2novel":
        return dataset
    return config["protocols"][protocol]["source"]


def checkpoint_for(config: dict[str, Any], protocol: str, method: str, dataset: str, seed: int) -> Path:
    """The trained model an evaluation reads."""
    source = training_dataset(config, protocol, dataset)
    return train_dir(config, TRAINED_BY[protocol], method, source, seed) / PROMPTS


def eval_datasets(config: dict[str, Any], protocol: str) -> list[str]:
    """The datasets evaluated under `protocol`: its datasets (base2novel, open_world) or targets."""
    spec = config["protocols"][protocol]
    return list(spec["datasets"] if "datasets" in spec else spec["targets"])


def evaluations(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (protocol, dataset) the config evaluates, in config order."""
    return [(protocol, dataset) for protocol in config["protocols"] for dataset in eval_datasets(config, protocol)]


BASE_TRAINED = ("base2novel", "open_world")  # the protocols that evaluate the base-trained model


def evaluate_rule(config: dict[str, Any], protocol: str) -> str:
    """The workflow rule evaluating under `protocol`: the single `evaluate` rule (one job per
    method) when `workflow.batch_datasets` is set; else `evaluate_base_trained` for base2novel and
    open_world when both evaluate the same datasets (one job per model and dataset scores its test
    set once for both, bmip.engine.scoring), and one rule per protocol otherwise."""
    if config.get("workflow", {}).get("batch_datasets"):
        return "evaluate"
    protocols = config.get("protocols") or {}
    if protocol in BASE_TRAINED and all(p in protocols for p in BASE_TRAINED):
        if len({tuple(protocols[p].get("datasets") or ()) for p in BASE_TRAINED}) == 1:
            return "evaluate_base_trained"
    return f"evaluate_{protocol}"


def trainings(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (training protocol, dataset) the config needs a trained model for."""
    out: list[tuple[str, str]] = []
    for protocol, spec in config["protocols"].items():
        training = TRAINED_BY[protocol]
        for dataset in spec["datasets"] if training == "base2novel" else [spec["source"]]:
            if (training, dataset) not in out:
                out.append((training, dataset))
    return out
