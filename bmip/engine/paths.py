"""Where every run writes: the file tree is the index of an experiment. The one statement of the
results layout: the workflow's rules, the engine and the audit's path-to-rule patterns
(bmip.audit.layout) are all made from the patterns below.

results/<experiment>/train/<training protocol>/<method>/<dataset>/seed<N>/   a trained model
results/<experiment>/<protocol>/<method>/<dataset>/seed<N>/                  an evaluation
results/<experiment>/features/<dataset>/image_features.safetensors            frozen image features
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bmip.grid import TRAINED_BY, eval_datasets, evaluations, training_dataset, trainings  # noqa: F401 (the grid, read through the layout)

PROMPTS = "prompts.safetensors"
METRICS = "metrics.json"
PREDICTIONS = "predictions.json.gz"  # every test image's prediction: bmip.engine.predictions
GATES = "gates.json"  # bmip.engine.gates (a method without gates records that it has none)
MECHANISM = "mechanism.json"  # bmip.engine.mechanism (zero-shot CLIP records that it has none)
IMAGE_FEATURES = "image_features.safetensors"  # <experiment>/features/<dataset>/: bmip.engine.features
PROVENANCE = "provenance.json"
TRAIN_LOG = "train_log.csv"
STATE = "state.pt"

# The layout, relative to the experiment folder; `{x}` is a workflow wildcard.
TRAIN_RUN = "train/{training}/{method}/{dataset}/seed{seed}"
EVALUATION_RUN = "{protocol}/{method}/{dataset}/seed{seed}"
SPLIT = "splits/{dataset}/shot_{shots}-seed_{seed}.json"
FEATURES = "features/{dataset}/" + IMAGE_FEATURES
CAUSAL = "analysis/{method}/{dataset}/seed{seed}/causal.json"


def in_experiment(experiment: str | Path, pattern: str, **values: Any) -> str:
    """A path of the layout in an experiment folder, `pattern` filled with `values` (pass "{x}" to
    keep a wildcard for Snakemake)."""
    return f"{experiment}/{pattern.format(**values)}"


def train_file(experiment: str | Path, training: Any, method: Any, dataset: Any, seed: Any, name: str) -> str:
    """A trained model's file (`name`: PROMPTS, TRAIN_LOG, PROVENANCE)."""
    return in_experiment(experiment, f"{TRAIN_RUN}/{name}", training=training, method=method, dataset=dataset,
                         seed=seed)


def eval_file(experiment: str | Path, protocol: Any, method: Any, dataset: Any, seed: Any, name: str) -> str:
    """An evaluation's file (`name`: METRICS, GATES, MECHANISM, PROVENANCE)."""
    return in_experiment(experiment, f"{EVALUATION_RUN}/{name}", protocol=protocol, method=method, dataset=dataset,
                         seed=seed)


def split_file(experiment: str | Path, dataset: Any, shots: Any, seed: Any) -> str:
    """The few-shot split file of a dataset, shot count and seed."""
    return in_experiment(experiment, SPLIT, dataset=dataset, shots=shots, seed=seed)


def causal_file(experiment: str | Path, method: Any, dataset: Any, seed: Any) -> str:
    """`bmip analyze`'s record of a base-to-novel model."""
    return in_experiment(experiment, CAUSAL, method=method, dataset=dataset, seed=seed)


def experiment_dir(config: dict[str, Any]) -> Path:
    return Path(config["results_dir"]) / config["experiment"]


def features_file(experiment: str | Path, dataset: str) -> Path:
    """The frozen image features of a test set, in an experiment folder (bmip.engine.features)."""
    return Path(in_experiment(experiment, FEATURES, dataset=dataset))


def train_dir(config: dict[str, Any], training: str, method: str, dataset: str, seed: int) -> Path:
    return Path(in_experiment(experiment_dir(config), TRAIN_RUN, training=training, method=method, dataset=dataset,
                              seed=seed))


def eval_dir(config: dict[str, Any], protocol: str, method: str, dataset: str, seed: int) -> Path:
    return Path(in_experiment(experiment_dir(config), EVALUATION_RUN, protocol=protocol, method=method,
                              dataset=dataset, seed=seed))


def checkpoint_for(config: dict[str, Any], protocol: str, method: str, dataset: str, seed: int) -> Path:
    """The trained model an evaluation reads."""
    source = training_dataset(config, protocol, dataset)
    return train_dir(config, TRAINED_BY[protocol], method, source, seed) / PROMPTS


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
