"""Evaluate one trained model under one protocol on one dataset -> metrics.json + provenance.

* base2novel: base and novel test images, each in its own label space; HM of the two.
* cross_dataset / domain_generalization: the source-trained model on every class of the target.
* open_world: the base-trained model on the whole test split against all class names at once
  (overall, base-part and novel-part accuracy in that joint label space, and their HM), its
  OpenworldAUC from the same logits, plus the ratio sweep of the authors' earlier code (m classes,
  r% of them base, Dassl's random selection).

Every label space is a choice of rows and columns of one score matrix (bmip.engine.scoring), and
so is every prompt method's mechanism record (mechanism.json): one pass records the base, novel
and joint (or a target's "all") spaces at once. official_compat BMIP, whose logits depend on the
batch, scores each label space in its own pass, and records each space's mechanism on it.
"""
from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from bmip.backbone import Backbone
from bmip.checkpoint import CheckpointError, load_model, read_metadata
from bmip.config import ConfigError, config_hash
from bmip.grid import TRAINED_BY
from bmip.recipes import run_config
from bmip.data import (
    Dataset, DegenerateDatasetError, Item, OpenWorldSplit, base_novel_labels, dataset_root, items_hash, load_dataset,
    open_world_split, ratio_selection, subsample_classes, subsample_classes_ratio,
)
from bmip.data.protocols import all_classes_problem
from bmip.data.masks import has_masks, patch_foreground
from bmip.engine import data_check, features, gates, mechanism, paths, predictions
from bmip.engine.provenance import RunClock, provenance
from bmip.engine.records import absent_record
from bmip.engine.runtime import (
    JobCaptions, accuracy_report, autocast, backbone_from, backbone_record, caption_lookup, compute_setup,
    dataset_inputs, fewshot_data, predict,
)
from bmip.engine.scoring import (
    DETECTOR, DETECTOR_PRECISION, OpenWorldScores, ScoreMatrix, openworld_scores, score_matrix,
)
from bmip.io import file_sha256, write_json
from bmip.metrics import harmonic_mean, misclassified_pairs_won, openworld_pairs
from bmip.prompting import PromptedCLIP

log = logging.getLogger(__name__)
# Zero-shot CLIP's foreground share per (backbone, dataset, images, label spaces), for every
# evaluation of this process (a job that evaluates several seeds of a method computes it once):
# bmip.engine.mechanism.recording.
ZERO_SHOT_FOREGROUND: dict[tuple, dict] = {}
# The protocols that evaluate a source-trained model on every class of a target dataset.
TRANSFER = ("cross_dataset", "domain_generalization")


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
    run = _training_run(config, protocol, method, dataset, seed)
    checkpoint = Path(checkpoint) if checkpoint else paths.checkpoint_for(config, protocol, method, dataset, seed)
    out = Path(out_dir) if out_dir else paths.eval_dir(config, protocol, method, dataset, seed)
    device, precision = compute_setup(config)
    clock = RunClock(device, precision)
    backbone = backbone_from(config, device)
    model, imported = _load_checkpoint(checkpoint, backbone, run)
    evaluated = _evaluation_data(config, protocol, dataset, seed)
    # What the method reads of the evaluated dataset (HiCroPL: its classes' descriptions).
    prepared = model.prepare(evaluated.data, dataset_root(config, evaluated.dataset), training=False)
    if evaluated.dataset != run["dataset"]:  # a transfer target: none of its classes was trained on,
        model.trained_classnames = []  # even one named like a source class (MMRL scores those apart)
    scorer = _scorer(config, model, backbone, checkpoint, method, run["recipe"]["options"], evaluated, device,
                     precision)
    results, summary = SCORING[protocol](scorer, evaluated, config, seed)
    identity = {"protocol": protocol, "method": method, "dataset": dataset, "seed": seed}
    _write_records(out, identity, scorer, evaluated)  # before metrics.json, which marks the evaluation done
    captions = scorer.captions.record if scorer.captions is not None else None
    _write_metrics(out, identity, run["dataset"], checkpoint, summary, results, captions)
    inputs = {**_provenance_inputs(config, evaluated, checkpoint, scorer.work, imported), **prepared}
    if captions is not None:  # the test images' captions file, its sha256 and captioner (the audit checks it)
        inputs["captions"] = captions
    write_json(out / paths.PROVENANCE, provenance("evaluate", run, clock=clock, inputs=inputs,
                                                  backbone=backbone_record(backbone), work=scorer.work))
    return out


def _training_run(config: dict[str, Any], protocol: str, method: str, dataset: str, seed: int) -> dict[str, Any]:
    """The resolved config of the training run whose model `protocol` evaluates on `dataset`."""
    if protocol not in TRAINED_BY:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {sorted(TRAINED_BY)}")
    source = paths.training_dataset(config, protocol, dataset)
    return run_config(config, TRAINED_BY[protocol], method, source, seed)


def _load_checkpoint(checkpoint: Path, backbone: Backbone, run: dict[str, Any]) -> tuple[PromptedCLIP, dict | None]:
    """The trained model and, for a checkpoint `bmip import-official` wrote, what it was imported
    from; refused when it was trained (or imported) for another configuration than `run` now is,
    or for another method or backbone."""
    training = run["training"]
    model = load_model(checkpoint, backbone, expect_method=run["method"])  # refuses another method or backbone
    imported = read_metadata(checkpoint).get("imported_from")  # `bmip import-official`: trained elsewhere
    if imported is not None:
        if imported.get("recipe_options") != run["recipe"]["options"]:
            raise CheckpointError(
                f"{checkpoint} was imported for bmip options {imported.get('recipe_options')}, but the config's "
                f"{training} recipe now has {run['recipe']['options']}; import it again with this config")
    elif read_metadata(checkpoint).get("config_sha256") != config_hash(run):
        raise CheckpointError(
            f"{checkpoint} was trained with another configuration than "
            f"{training}/{run['method']}/{run['dataset']}/seed{run['seed']} "
            "resolves to now (recipe, options, shots or seeds differ); retrain it"
        )
    return model, imported


@dataclass
class EvaluationData:
    """The evaluated dataset, and the few-shot lists of the seed that chose its base and novel
    classes (None for a transfer target, which is evaluated on every class)."""
    dataset: str  # as the evaluation names it
    data: Dataset
    train_items: list[Item] | None
    val_items: list[Item] | None
    classnames: list[str]  # the columns of the model's score matrix


def _evaluation_data(config: dict[str, Any], protocol: str, dataset: str, seed: int) -> EvaluationData:
    """A transfer target with all its classes (refused with too few), or the dataset's few-shot
    split of `seed` with its classes in base-then-novel order."""
    if protocol in TRANSFER:
        data = load_dataset(dataset, dataset_root(config, dataset))
        problem = all_classes_problem(dataset, data.num_classes)
        if problem is not None:
            raise DegenerateDatasetError(f"{problem}. Add classes to {dataset!r}, or remove it from the "
                                         f"{protocol} targets.")
        return EvaluationData(dataset, data, None, None, data.classnames)
    data, train_items, val_items = fewshot_data(config, dataset, seed)
    classnames = open_world_split(train_items, val_items, data.test, dataset=dataset).classnames
    return EvaluationData(dataset, data, train_items, val_items, classnames)


@dataclass
class Scorer:
    """Accuracy in each label space a protocol asks for, with BMIP's gates and a prompt method's
    mechanism record for the spaces it names (`part`). A model whose logits do not depend on the
    batch is run once: every space is a choice of rows and columns of its score matrix. Else
    (official_compat BMIP) each space is its own pass over its images. `work` counts what was
    computed and what reused, for the provenance."""
    config: dict[str, Any]
    model: PromptedCLIP
    backbone: Backbone
    data: Dataset
    device: torch.device
    precision: str
    gated: bool
    analysed: bool
    masks: bool
    work: dict[str, Any]
    matrix: ScoreMatrix | None = None
    captions: JobCaptions | None = None  # the test images', for a method that reads captions
    recorded: dict[str, Any] = field(default_factory=dict)  # gate statistics by part
    mechanisms: dict[str, Any] = field(default_factory=dict)  # mechanism records by part
    # Every test image's prediction per label space, and OpenworldAUC's per-image inputs
    # (bmip.engine.predictions): predictions.json.gz.
    predictions: dict[str, Any] = field(default_factory=dict)
    openworld_images: dict[str, Any] | None = None

    def score(self, items: Sequence[Item], names: list[str], columns: Sequence[int], desc: str, space: str,
              part: str | None = None) -> dict[str, Any]:
        """Accuracy in the label space of `columns` (labels of `data`, in the space's order; `items`
        and `names` as the protocol's subsampling gives them), whose per-image predictions are kept
        under `space` (metrics.json's name of it); BMIP's gates and the mechanism record too when
        `part` names it."""
        labels = _labels(items)
        if self.matrix is not None:
            preds, rows = self._from_matrix(labels, names, columns, desc, part)
        else:
            preds, rows = self._own_pass(items, names, desc, part), self._test_rows(items)
        self.predictions[space] = predictions.space_record(rows, labels, preds)
        return accuracy_report(labels, preds, names)

    def _test_rows(self, items: Sequence[Item]) -> list[int]:
        """The rows of `items` (a label space's subsample, relabelled) in the dataset's test list."""
        index = {it.path: i for i, it in enumerate(self.data.test)}
        try:
            return [index[it.path] for it in items]
        except KeyError as err:
            raise RuntimeError(f"{err.args[0]!r} is scored but not in the test list") from None

    def openworld(self, items: Sequence[Item], base: Sequence[int], novel: Sequence[int]) -> OpenWorldScores | None:
        """OpenworldAUC's inputs of the open-world test images `items` (all classes, the columns
        `base` + `novel` by label) from the shared score matrix, kept per image too; None where each
        label space is its own pass (official_compat BMIP), whose joint pass keeps no logits."""
        if self.matrix is None:
            return None
        rows, labels = self.matrix.rows(range(self.matrix.logits.shape[1]))
        if not torch.equal(labels, _labels(items)):
            raise RuntimeError("the open-world test images are not the score matrix's rows")
        scores = openworld_scores(self.matrix.logits[rows], labels, base, novel)
        self.openworld_images = predictions.openworld_record(rows, scores.is_base, scores.correct, scores.detection)
        return scores

    def _from_matrix(self, labels: torch.Tensor, names: list[str], columns: Sequence[int], desc: str,
                     part: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, rows) read from the shared score matrix; the space's gates and mechanism
        from it too."""
        rows, space_labels = self.matrix.rows(columns)
        if not torch.equal(space_labels, labels):
            raise RuntimeError(f"{desc}: the label space's images are not those of columns {list(columns)}")
        preds = self.matrix.predict(rows, columns)
        if self.gated and part:
            self.model.set_classnames(names, self.data.template)
            with gates.recording(self.model.method) as text, torch.no_grad(), autocast(self.device, self.precision):
                self.model.text_features()  # this space's text gates (bmip.engine.scoring says why)
            self.recorded[part] = {"vision": self.matrix.vision_gate_stats(rows), "text": text["text"]}
        if self.analysed and part:
            self.mechanisms[part] = self.matrix.mechanism_for(part, columns)
        return preds, rows

    def _own_pass(self, items: Sequence[Item], names: list[str], desc: str, part: str | None) -> torch.Tensor:
        """Predictions of a pass of the model over `items` against `names`, recording the space's
        gates and mechanism during it."""
        model, gated, analysed = self.model, self.gated and part, self.analysed and part
        model.set_classnames(names, self.data.template)
        recorder = gates.recording(model.method) if gated else contextlib.nullcontext({})
        probe = contextlib.nullcontext({})
        if analysed:
            foreground, reference = _foreground(self.data, items, model, self.backbone, self.masks, None)
            probe = mechanism.recording(model, foreground, reference)
        with recorder as stats, probe as mechanics:
            preds = predict(model, items, self.data.image_root, batch=self.config["eval_batch_size"],
                            workers=self.config["workers"], device=self.device, precision=self.precision, desc=desc,
                            captions=self.captions)
        self.work["image_forwards"] += len(items)
        if gated:
            self.recorded[part] = stats
        if analysed:
            self.mechanisms[part] = mechanics
        return preds


def _scorer(config: dict[str, Any], model: PromptedCLIP, backbone: Backbone, checkpoint: Path, method: str,
            options: dict[str, Any], evaluated: EvaluationData, device: torch.device, precision: str) -> Scorer:
    """The evaluation's scorer: with the model's score matrix over the test images and all classes
    (computed, or this process's last one) where one pass serves every label space. `options`: the
    run's method options (they decide whether an ablation variant of BMIP has gates)."""
    gated, analysed = gates.has_gates(method, options), mechanism.has_mechanism(method)
    work = {"single_pass": model.method.label_space_independent, "image_forwards": 0, "image_features_reused": 0}
    data = evaluated.data
    masks = analysed and has_masks(data)
    captions = caption_lookup(config, method, data, data.test, evaluated.dataset)
    scorer = Scorer(config, model, backbone, data, device, precision, gated, analysed, masks, work, captions=captions)
    if work["single_pass"]:
        spaces = _mechanism_spaces(evaluated.train_items, len(evaluated.classnames)) if analysed else None
        scorer.matrix = _shared_matrix(config, model, checkpoint, data, evaluated.classnames, device, precision, gated,
                                       work, spaces, masks, captions)
    return scorer


Scores = tuple[dict[str, Any], dict[str, Any]]  # (results by label space, summary)


def _all_classes(scorer: Scorer, evaluated: EvaluationData, config: dict[str, Any], seed: int) -> Scores:
    """cross_dataset / domain_generalization: accuracy on every class of the target."""
    data = evaluated.data
    results = {"all": scorer.score(data.test, data.classnames, range(len(data.classnames)), evaluated.dataset, "all",
                                   "all")}
    return results, {"accuracy": results["all"]["accuracy"]}


def _base2novel(scorer: Scorer, evaluated: EvaluationData, config: dict[str, Any], seed: int) -> Scores:
    """Base and novel test images, each in its own label space; the HM of the two."""
    data, train_items, val_items = evaluated.data, evaluated.train_items, evaluated.val_items
    dataset = evaluated.dataset
    results = {}
    for part, subsample, columns in zip(("base", "novel"), ("base", "new"), base_novel_labels(train_items)):
        _, _, test, names = subsample_classes(train_items, val_items, data.test, subsample, dataset=dataset)
        results[part] = scorer.score(test, names, columns, f"{dataset} {part}", part, part)
    summary = {"base": results["base"]["accuracy"], "novel": results["novel"]["accuracy"]}
    summary["hm"] = harmonic_mean(summary["base"], summary["novel"])
    return results, summary


def _open_world(scorer: Scorer, evaluated: EvaluationData, config: dict[str, Any], seed: int) -> Scores:
    """The whole test split against all class names (base-part and novel-part accuracy in that
    joint space, their HM, OpenworldAUC), and the ratio sweep."""
    data, train_items, val_items = evaluated.data, evaluated.train_items, evaluated.val_items
    split = open_world_split(train_items, val_items, data.test, dataset=data.name)
    joint = scorer.score(split.test, split.classnames, range(len(split.classnames)), f"{data.name} open-world",
                         "joint", "joint")
    results: dict[str, Any] = {"joint": joint}
    summary: dict[str, Any] = {"accuracy": joint["accuracy"]}
    # Base-part / novel-part accuracy inside the joint label space, from the per-class counts.
    for part, part_labels in (("base", split.base_labels), ("novel", split.novel_labels)):
        correct = sum(joint["per_class"][y]["correct"] for y in part_labels)
        total = sum(joint["per_class"][y]["total"] for y in part_labels)
        results[f"{part}_part"] = {"correct": correct, "total": total, "accuracy": 100.0 * correct / total if total else None}
        summary[part] = results[f"{part}_part"]["accuracy"]
    summary["hm"] = harmonic_mean(summary["base"], summary["novel"])
    results["openworld_auc"] = _openworld_record(scorer, split)
    summary["openworld_auc"] = results["openworld_auc"]["value"]
    sweep = {}
    for ratio in config["protocols"]["open_world"]["ratios"]:
        _, _, test, names = subsample_classes_ratio(train_items, val_items, data.test, "new", ratio, seed)
        columns = ratio_selection(train_items, ratio, random.Random(seed))  # the classes the line above kept
        sweep[str(ratio)] = scorer.score(test, names, columns, f"{data.name} ratio {ratio}", f"ratio/{ratio}")
        summary[f"ratio_{ratio}"] = sweep[str(ratio)]["accuracy"]
    results["ratio"] = sweep
    return results, summary


def _openworld_record(scorer: Scorer, split: OpenWorldSplit) -> dict[str, Any]:
    """metrics.json's OpenworldAUC (in %) and what recomputes it: the pairs it counts as won (ties
    ½; bmip.metrics.openworld_pairs) out of N_b·N_n, each part's images and within-domain correct
    ones, and the (misclassified, misclassified) pairs among the won (the official code's quirk:
    0 but for a fully inverted detector). Or null, saying why."""
    if not (split.base_labels and split.novel_labels):
        return {"value": None, "absent": "the open-world split has no base or no novel classes"}
    scores = scorer.openworld(split.test, split.base_labels, split.novel_labels)
    if scores is None:
        return {"value": None, "absent": "this method scores each label space in its own pass (its logits depend "
                                         "on the label space), and the open-world pass keeps no logits"}
    b, n = scores.is_base, ~scores.is_base
    parts = {part: {"images": int(rows.sum()), "correct_in_domain": int(scores.correct[rows].sum())}
             for part, rows in (("base", b), ("novel", n))}
    args = (scores.detection[b].numpy(), scores.correct[b].numpy(),
            scores.detection[n].numpy(), scores.correct[n].numpy())
    won = openworld_pairs(*args)
    pairs = parts["base"]["images"] * parts["novel"]["images"]
    return {"value": 100.0 * won / pairs if pairs else None, "pairs_won": won, "pairs": pairs,
            "misclassified_pairs_won": misclassified_pairs_won(*args), **parts,
            "detector": DETECTOR, "precision": DETECTOR_PRECISION, "ties": 0.5, "correctness": "within_domain"}


# How each protocol scores the evaluated model: (results by label space, summary).
SCORING: dict[str, Callable[[Scorer, EvaluationData, dict[str, Any], int], Scores]] = {
    "base2novel": _base2novel, "open_world": _open_world, "cross_dataset": _all_classes,
    "domain_generalization": _all_classes,
}


def _write_records(out: Path, identity: dict[str, Any], scorer: Scorer, evaluated: EvaluationData) -> None:
    """predictions.json.gz; gates.json and mechanism.json, for every method (declared outputs of
    every evaluation job): one with nothing to record says why."""
    method = identity["method"]
    test = evaluated.data.test
    predictions.write_predictions(out / paths.PREDICTIONS, identity, items_hash(test), len(test),
                                  scorer.predictions, scorer.openworld_images)
    if scorer.gated:
        gates.write_gates(out / paths.GATES, identity, scorer.recorded)
    else:
        write_json(out / paths.GATES, absent_record(gates.FORMAT, identity, f"{method} has no gates: only BMIP's "
                                                    "aggregation weights are recorded (bmip.engine.gates)"))
    if scorer.analysed:
        mechanism.write_mechanism(out / paths.MECHANISM, identity, scorer.masks, scorer.mechanisms)
    else:
        write_json(out / paths.MECHANISM, absent_record(mechanism.FORMAT, identity, f"{method} learns no prompts: "
                                                        "there is no prompt term to record (bmip.engine.mechanism)"))


def _write_metrics(out: Path, identity: dict[str, Any], source: str, checkpoint: Path, summary: dict[str, Any],
                   results: dict[str, Any], captions: dict[str, Any] | None) -> None:
    """metrics.json, with the classes the model was trained on fewer than `shots` images of (from
    its training's provenance) and, for a method that reads captions, the captioner and instruction
    of the test images' captions: the tables note both."""
    trained = _read_provenance(checkpoint.parent / paths.PROVENANCE)
    short = ((trained.get("inputs") or {}).get("short_classes") or {}) if isinstance(trained, dict) else {}
    metrics = {**identity, "trained_on": source, "short_classes": short, "summary": summary, "results": results}
    if captions is not None:
        metrics["captioner"] = captions["captioner"]
    write_json(out / paths.METRICS, metrics)


def _provenance_inputs(config: dict[str, Any], evaluated: EvaluationData, checkpoint: Path, work: dict[str, Any],
                       imported: dict | None) -> dict[str, Any]:
    """What the evaluation read: the test images, the data check, the checkpoint (and what it was
    imported from), the frozen image features file (moved here from `work`)."""
    data = evaluated.data
    inputs = {"test": dataset_inputs(data, data.test),
              "data_check": data_check.provenance_input(config, evaluated.dataset),
              "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint)}
    if "frozen_image_features" in work:
        inputs["frozen_image_features"] = work.pop("frozen_image_features")
    if imported is not None:
        inputs["imported_from"] = imported
    return inputs


def _read_provenance(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
    if not (masks and (model.method.vision_tokens or model.method.inserted_tokens)):
        return None, None
    foreground = patch_foreground(data, items, backbone.image_size, model.clip.visual.conv1.kernel_size[0])
    key = (backbone.name, str(backbone.pretrained), data.name, items_hash(items),
           _spaces_key(spaces))
    return foreground, ZERO_SHOT_FOREGROUND.setdefault(key, {})


def _shared_matrix(config, model: PromptedCLIP, checkpoint: Path, data, classnames: list[str], device, precision,
                   gated: bool, work: dict[str, Any], spaces: dict[str, list[int]] | None = None,
                   masks: bool = False, captions: JobCaptions | None = None) -> ScoreMatrix:
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
                              spaces=spaces, foreground=foreground, reference=reference, captions=captions)
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
