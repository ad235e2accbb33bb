"""Evaluate one trained model under one protocol on one dataset -> metrics.json + provenance.

* base2novel: base and novel test images, each in its own label space; HM of the two.
* cross_dataset / domain_generalization: the source-trained model on every class of the target.
* open_world: the base-trained model on the whole test split against all class names at once
  (overall, base-part and novel-part accuracy in that joint label space, and their HM), plus the
  ratio sweep of the authors' earlier code (m classes, r% of them base, Dassl's random selection).

Every label space is a choice of rows and columns of one score matrix (bmip.engine.scoring), and
so is every prompt method's mechanism record (mechanism.json): one pass records the base, novel
and joint (or a target's "all") spaces at once. official_compat BMIP, whose logits depend on the
batch, scores each label space in its own pass, and records each space's mechanism on it.
"""
from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Any, Sequence

import torch

from bmip.checkpoint import CheckpointError, load_model, read_metadata
from bmip.config import TRAINED_BY, ConfigError, config_hash, run_config
from bmip.data import (
    DegenerateDatasetError, Item, base_novel_labels, items_hash, load_dataset, open_world_split, ratio_selection,
    subsample_classes, subsample_classes_ratio,
)
from bmip.data.protocols import all_classes_problem
from bmip.data.masks import has_masks, patch_foreground
from bmip.engine import data_check, features, gates, mechanism, paths
from bmip.engine.provenance import RunClock, provenance
from bmip.engine.records import absent_record
from bmip.engine.runtime import (
    accuracy_report, autocast, backbone_from, backbone_record, compute_setup, dataset_inputs, fewshot_data, harmonic_mean,
    predict,
)
from bmip.engine.scoring import ScoreMatrix, score_matrix
from bmip.io import file_sha256, write_json
from bmip.prompting import PromptedCLIP

log = logging.getLogger(__name__)
# Zero-shot CLIP's foreground share per (backbone, dataset, images, label spaces), for every
# evaluation of this process (a job that evaluates several seeds of a method computes it once):
# bmip.engine.mechanism.recording.
ZERO_SHOT_FOREGROUND: dict[tuple, dict] = {}


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
    single_pass = model.method.label_space_independent
    work = {"single_pass": single_pass, "image_forwards": 0, "image_features_reused": 0}
    if protocol in ("cross_dataset", "domain_generalization"):
        data = load_dataset(dataset, config["data_root"])
        problem = all_classes_problem(dataset, data.num_classes)
        if problem is not None:
            raise DegenerateDatasetError(f"{problem}. Add classes to {dataset!r}, or remove it from the "
                                         f"{protocol} targets.")
        train_items = val_items = None
        classnames = data.classnames
    else:
        data, train_items, val_items = fewshot_data(config, dataset, seed)
        classnames = open_world_split(train_items, val_items, data.test, dataset=dataset).classnames
    masks = analysed and has_masks(data)
    matrix = _shared_matrix(config, model, checkpoint, data, classnames, device, precision, gated, work,
                            _mechanism_spaces(train_items, len(classnames)) if analysed else None, masks) \
        if single_pass else None

    def score(items: Sequence[Item], names: list[str], columns: Sequence[int], desc: str,
              part: str | None = None) -> dict[str, Any]:
        """Accuracy in the label space of `columns` (labels of `data`, in the space's order; `items`
        and `names` as the protocol's subsampling gives them); BMIP's gates and the mechanism
        record too when `part` names it."""
        labels = _labels(items)
        if matrix is not None:
            rows, space_labels = matrix.rows(columns)
            if not torch.equal(space_labels, labels):
                raise RuntimeError(f"{desc}: the label space's images are not those of columns {list(columns)}")
            preds = matrix.predict(rows, columns)
            if gated and part:
                model.set_classnames(names, data.template)
                with gates.recording(model.method) as text, torch.no_grad(), autocast(device, precision):
                    model.text_features()  # this space's text gates (bmip.engine.scoring says why)
                recorded[part] = {"vision": matrix.vision_gate_stats(rows), "text": text["text"]}
            if analysed and part:
                mechanisms[part] = matrix.mechanism_for(part, columns)
            return accuracy_report(labels, preds, names)
        model.set_classnames(names, data.template)
        recorder = gates.recording(model.method) if gated and part else contextlib.nullcontext({})
        probe = contextlib.nullcontext({})
        if analysed and part:
            foreground, reference = _foreground(data, items, model, backbone, masks, None)
            probe = mechanism.recording(model, foreground, reference)
        with recorder as stats, probe as mechanics:
            preds = predict(model, items, data.image_root, batch=config["eval_batch_size"], workers=config["workers"],
                            device=device, precision=precision, desc=desc)
        work["image_forwards"] += len(items)
        if gated and part:
            recorded[part] = stats
        if analysed and part:
            mechanisms[part] = mechanics
        return accuracy_report(labels, preds, names)

    tested = data.test
    if protocol in ("cross_dataset", "domain_generalization"):
        results = {"all": score(tested, data.classnames, range(len(data.classnames)), dataset, "all")}
        summary = {"accuracy": results["all"]["accuracy"]}
    elif protocol == "base2novel":
        results = {}
        for part, subsample, columns in zip(("base", "novel"), ("base", "new"), base_novel_labels(train_items)):
            _, _, test, names = subsample_classes(train_items, val_items, data.test, subsample, dataset=dataset)
            results[part] = score(test, names, columns, f"{dataset} {part}", part)
        summary = {"base": results["base"]["accuracy"], "novel": results["novel"]["accuracy"]}
        summary["hm"] = harmonic_mean(summary["base"], summary["novel"])
    else:
        results, summary = _open_world(config, score, data, train_items, val_items, seed)

    identity = {"protocol": protocol, "method": method, "dataset": dataset, "seed": seed}
    # Before metrics.json, which marks the evaluation done. Both records are written for every
    # method (declared outputs of every evaluation job): one with nothing to record says why.
    if gated:
        gates.write_gates(out / paths.GATES, identity, recorded)
    else:
        write_json(out / paths.GATES, absent_record(gates.FORMAT, identity, f"{method} has no gates: only BMIP's "
                                                    "aggregation weights are recorded (bmip.engine.gates)"))
    if analysed:
        mechanism.write_mechanism(out / paths.MECHANISM, identity, masks, mechanisms)
    else:
        write_json(out / paths.MECHANISM, absent_record(mechanism.FORMAT, identity, f"{method} learns no prompts: "
                                                        "there is no prompt term to record (bmip.engine.mechanism)"))
    # Classes the model was trained on fewer than `shots` images of (its training's provenance):
    # the tables note them.
    trained = _read_provenance(checkpoint.parent / paths.PROVENANCE)
    short = ((trained.get("inputs") or {}).get("short_classes") or {}) if isinstance(trained, dict) else {}
    metrics = {**identity, "trained_on": source, "short_classes": short, "summary": summary, "results": results}
    write_json(out / paths.METRICS, metrics)
    inputs = {"test": dataset_inputs(data, tested), "data_check": data_check.provenance_input(config, dataset),
              "checkpoint": str(checkpoint),
              "checkpoint_sha256": file_sha256(checkpoint)}
    if "frozen_image_features" in work:
        inputs["frozen_image_features"] = work.pop("frozen_image_features")
    if imported is not None:
        inputs["imported_from"] = imported
    write_json(out / paths.PROVENANCE, provenance("evaluate", run, clock=clock, inputs=inputs, backbone=backbone_record(backbone), work=work))
    return out


def _read_provenance(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _open_world(config, score, data, train_items, val_items, seed):
    split = open_world_split(train_items, val_items, data.test, dataset=data.name)
    joint = score(split.test, split.classnames, range(len(split.classnames)), f"{data.name} open-world", "joint")
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
        columns = ratio_selection(train_items, ratio, random.Random(seed))  # the classes the line above kept
        sweep[str(ratio)] = score(test, names, columns, f"{data.name} ratio {ratio}")
        summary[f"ratio_{ratio}"] = sweep[str(ratio)]["accuracy"]
    results["ratio"] = sweep
    return results, summary


# The score matrix of the last model evaluated in this process: `bmip evaluate --all` runs the
# base2novel and open_world evaluations of one trained model one after the other (bmip.engine.cli),
# and the second reads the first's matrix instead of running the model again.
_LAST: dict[tuple, ScoreMatrix] = {}


def _mechanism_spaces(train_items, n_classes: int) -> dict[str, list[int]]:
    """The label spaces (name -> columns) of a prompt method's mechanism record that every
    evaluation of this model reads from its one pass: base, novel and the open-world joint space of
    a base-trained model (base2novel and open_world share its score matrix), a target's "all"."""
    every = list(range(n_classes))
    if train_items is None:
        return {"all": every}
    base, novel = base_novel_labels(train_items)
    return {"base": base, "novel": novel, "joint": every}


def _spaces_key(spaces: dict[str, list[int]] | None) -> tuple:
    """The label spaces a pass records, as part of a cache key."""
    return tuple((name, tuple(cols)) for name, cols in (spaces or {}).items())


def _foreground(data, items: Sequence[Item], model: PromptedCLIP, backbone, masks: bool,
                spaces: dict[str, list[int]] | None) -> tuple[torch.Tensor | None, dict | None]:
    """(patch foreground of `items`, zero-shot CLIP's reference statistics for them, shared by
    this process's evaluations), or (None, None): the share needs object masks and vision prompt
    positions (a frozen or only bias-tuned image tower has no prompt attention to read)."""
    if not (masks and model.method.vision_tokens):
        return None, None
    foreground = patch_foreground(data, items, backbone.image_size, model.clip.visual.conv1.kernel_size[0])
    key = (backbone.name, str(backbone.pretrained), data.name, items_hash(items),
           _spaces_key(spaces))
    return foreground, ZERO_SHOT_FOREGROUND.setdefault(key, {})


def _shared_matrix(config, model: PromptedCLIP, checkpoint: Path, data, classnames: list[str], device, precision,
                   gated: bool, work: dict[str, Any], spaces: dict[str, list[int]] | None = None,
                   masks: bool = False) -> ScoreMatrix:
    """The model's (test images x all classes) scores: this process's last matrix when it is the
    same model, test set and classes, else one pass (image features from the frozen cache for a
    frozen image tower). `spaces`: the label spaces whose mechanism the pass records. `work`
    records what was computed and what reused."""
    key = (str(checkpoint), file_sha256(checkpoint), data.name, items_hash(data.test), tuple(classnames),
           str(device), precision, config["eval_batch_size"],
           _spaces_key(spaces), masks)
    matrix = _LAST.get(key)
    if matrix is not None:
        work.update(image_features_reused=len(data.test), reused="the same model's score matrix, computed by an "
                    "earlier evaluation in this process")
    else:
        frozen = features.load_or_build(config, data, model.backbone) if model.frozen_image_tower else None
        foreground, reference = _foreground(data, data.test, model, model.backbone, masks, spaces)
        matrix = score_matrix(model, data, classnames, batch=config["eval_batch_size"], workers=config["workers"],
                              device=device, precision=precision, frozen=frozen, record_gates=gated,
                              spaces=spaces, foreground=foreground, reference=reference)
        _LAST.clear()
        _LAST[key] = matrix
        work["image_forwards"] = matrix.image_forwards
        if frozen is not None:
            work["image_forwards"] = len(data.test) if frozen.built else 0
            work["image_features_reused"] = 0 if frozen.built else len(data.test)
            work["reused"] = None if frozen.built else "frozen image features file"
    if matrix.frozen is not None:
        work["frozen_image_features"] = matrix.frozen.record()
    return matrix
