"""Evaluate one trained model under one protocol on one dataset -> metrics.json + provenance.

* base2novel: base and novel test images, each in its own label space; HM of the two.
* cross_dataset / domain_generalization: the source-trained model on every class of the target.
* open_world: the base-trained model on the whole test split against all class names at once
  (overall, base-part and novel-part accuracy in that joint label space, and their HM), plus the
  ratio sweep of the authors' earlier code (m classes, r% of them base, Dassl's random selection).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from bmip.checkpoint import CheckpointError, load_model, read_metadata
from bmip.config import TRAINED_BY, ConfigError, config_hash, run_config
from bmip.data import Item, items_hash, load_dataset, open_world_split, subsample_classes, subsample_classes_ratio
from bmip.data.masks import has_masks, patch_foreground
from bmip.engine import data_check, gates, mechanism, paths
from bmip.engine.provenance import RunClock, provenance
from bmip.engine.runtime import (
    accuracy_report, backbone_from, backbone_record, compute_setup, dataset_inputs, fewshot_data, harmonic_mean,
    predict,
)
from bmip.io import file_sha256, write_json
from bmip.prompting import PromptedCLIP

log = logging.getLogger(__name__)
# Zero-shot CLIP's foreground share per (backbone, dataset, test items), for every evaluation of this
# process (the workflow's jobs evaluate every seed of a method): bmip.engine.mechanism.recording.
ZERO_SHOT_FOREGROUND: dict[tuple[str, str, str, str], dict] = {}


def _labels(items: Sequence[Item]) -> torch.Tensor:
    return torch.tensor([it.label for it in items], dtype=torch.long)


def evaluate(
    config: dict[str, Any],
    protocol: str,
    method: str,
    dataset: str,
    seed: int,
    checkpoint: Path | None = None,
    out_dir: Path | None = None,
) -> Path:
    """Write `metrics.json` and `provenance.json` for one evaluation; returns the folder."""
    if protocol not in TRAINED_BY:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {sorted(TRAINED_BY)}")
    training = TRAINED_BY[protocol]
    source = paths.training_dataset(config, protocol, dataset)
    run = run_config(config, training, method, source, seed)
    checkpoint = Path(checkpoint) if checkpoint else paths.checkpoint_for(config, protocol, method, dataset, seed)
    out = Path(out_dir) if out_dir else paths.eval_dir(config, protocol, method, dataset, seed)
    device, precision = compute_setup(config)
    clock = RunClock(device, precision)
    backbone = backbone_from(config, device)
    model = load_model(checkpoint, backbone, expect_method=method)  # refuses another method or backbone
    imported = read_metadata(checkpoint).get("imported_from")  # `bmip import-official`: trained elsewhere
    if imported is not None:
        if imported.get("recipe_options") != run["recipe"]["options"]:
            raise CheckpointError(
                f"{checkpoint} was imported for bmip options {imported.get('recipe_options')}, but the config's "
                f"{training} recipe now has {run['recipe']['options']}; import it again with this config")
    elif read_metadata(checkpoint).get("config_sha256") != config_hash(run):
        raise CheckpointError(
            f"{checkpoint} was trained with another configuration than {training}/{method}/{source}/seed{seed} "
            "resolves to now (recipe, options, shots or seeds differ); retrain it"
        )

    gated, analysed = gates.has_gates(method), mechanism.has_mechanism(method)
    recorded: dict[str, Any] = {}
    mechanisms: dict[str, Any] = {}
    masked: list[bool] = []

    def score(items: Sequence[Item], classnames: list[str], template: str, root: Path, desc: str,
              part: str | None = None, dataset: Any = None) -> dict[str, Any]:
        """Accuracy in one label space; BMIP's gate statistics and the mechanism record too when
        `part` names it (the foreground share where `dataset` has object masks)."""
        model.set_classnames(classnames, template)
        recorder = gates.recording(model.method) if gated and part else contextlib.nullcontext({})
        foreground = None
        masks = analysed and part is not None and dataset is not None and has_masks(dataset)
        masked.append(masks)
        if masks and model.method.vision_tokens:  # the foreground share needs vision prompt positions
            foreground = patch_foreground(dataset, items, backbone.image_size, model.clip.visual.conv1.kernel_size[0])
        reference = None
        if foreground is not None:
            key = (backbone.name, str(backbone.pretrained), dataset.name, items_hash(items))
            reference = ZERO_SHOT_FOREGROUND.setdefault(key, {})
        probe = mechanism.recording(model, foreground, reference) if analysed and part else contextlib.nullcontext({})
        with recorder as stats, probe as mechanics:
            preds = predict(model, items, root, batch=config["eval_batch_size"], workers=config["workers"],
                            device=device, precision=precision, desc=desc)
        if gated and part:
            recorded[part] = stats
        if analysed and part:
            mechanisms[part] = mechanics
        return accuracy_report(_labels(items), preds, classnames)

    if protocol in ("cross_dataset", "domain_generalization"):
        data = load_dataset(dataset, config["data_root"])
        tested = data.test
        results = {"all": score(tested, data.classnames, data.template, data.image_root, dataset, "all", data)}
        summary = {"accuracy": results["all"]["accuracy"]}
    else:
        data, train_items, val_items = fewshot_data(config, dataset, seed)
        tested = data.test
        if protocol == "base2novel":
            results = {}
            for part, subsample in (("base", "base"), ("novel", "new")):
                _, _, test, names = subsample_classes(train_items, val_items, data.test, subsample)
                results[part] = score(test, names, data.template, data.image_root, f"{dataset} {part}", part, data)
            summary = {"base": results["base"]["accuracy"], "novel": results["novel"]["accuracy"]}
            summary["hm"] = harmonic_mean(summary["base"], summary["novel"])
        else:
            results, summary = _open_world(config, model, score, data, train_items, val_items, seed)

    identity = {"protocol": protocol, "method": method, "dataset": dataset, "seed": seed}
    if gated:  # before metrics.json, which marks the evaluation done
        gates.write_gates(out / paths.GATES, identity, recorded)
    if analysed:
        mechanism.write_mechanism(out / paths.MECHANISM, identity, any(masked), mechanisms)
    metrics = {**identity, "trained_on": source, "summary": summary, "results": results}
    write_json(out / paths.METRICS, metrics)
    inputs = {"test": dataset_inputs(data, tested), "data_check": data_check.provenance_input(config, dataset),
              "checkpoint": str(checkpoint),
              "checkpoint_sha256": file_sha256(checkpoint)}
    if imported is not None:
        inputs["imported_from"] = imported
    write_json(out / paths.PROVENANCE, provenance("evaluate", run, clock=clock, inputs=inputs, backbone=backbone_record(backbone)))
    return out


def _open_world(config, model: PromptedCLIP, score, data, train_items, val_items, seed):
    split = open_world_split(train_items, val_items, data.test)
    joint = score(split.test, split.classnames, data.template, data.image_root, f"{data.name} open-world", "joint",
                  data)
    results: dict[str, Any] = {"joint": joint}
    summary: dict[str, Any] = {"accuracy": joint["accuracy"]}
    # Base-part / novel-part accuracy inside the joint label space, from the per-class counts.
    for part, part_labels in (("base", split.base_labels), ("novel", split.novel_labels)):
        correct = sum(joint["per_class"][y]["correct"] for y in part_labels)
        total = sum(joint["per_class"][y]["total"] for y in part_labels)
        results[f"{part}_part"] = {"correct": correct, "total": total, "accuracy": 100.0 * correct / total if total else None}
        summary[part] = results[f"{part}_part"]["accuracy"]
    summary["hm"] = harmonic_mean(summary["base"], summary["novel"])
    sweep = {}
    for ratio in config["protocols"]["open_world"]["ratios"]:
        _, _, test, names = subsample_classes_ratio(train_items, val_items, data.test, "new", ratio, seed)
        sweep[str(ratio)] = score(test, names, data.template, data.image_root, f"{data.name} ratio {ratio}")
        summary[f"ratio_{ratio}"] = sweep[str(ratio)]["accuracy"]
    results["ratio"] = sweep
    return results, summary
