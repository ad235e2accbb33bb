"""Train one run: (training protocol, method, dataset, seed) -> prompts.safetensors + provenance.

The state after every epoch (learnable tensors, optimiser, selection, prompt averaging, log) is
saved atomically; a rerun of an interrupted job resumes from the last complete epoch. Shuffling
and augmentation are seeded per epoch from the run's torch seed, so a resumed run ends with
exactly the numbers of an uninterrupted one.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bmip.backbone import Backbone
from bmip.checkpoint import save_checkpoint
from bmip.config import ConfigError, config_hash
from bmip.recipes import run_config
from bmip.data import Dataset, Item, Views, dataset_root, subsample_classes
from bmip.data.checks import training_class_problems
from bmip.data.errors import DegenerateDatasetError
from bmip.data.sampling import short_classes, short_classes_warning
from bmip.engine import data_check, paths
from bmip.engine.provenance import RunClock, provenance
from bmip.engine.runtime import (
    JobCaptions, autocast, backbone_from, backbone_record, caption_lookup, compute_setup, dataset_inputs, fewshot_data,
    give_captions, grad_scaler, loader, predict,
)
from bmip.engine.schedule import epoch_lr, make_optimizer
from bmip.engine.selection import ModelSelector
from bmip.io import atomic_write, write_json
from bmip.methods import build_model
from bmip.methods.promptsrc import PromptAverager
from bmip.prompting import PromptedCLIP

log = logging.getLogger(__name__)
# What each epoch did, and nothing about when or how fast: the log is a result, the same bytes for
# the same config and seed. Per-epoch wall times go to the run's provenance (time.epoch_seconds).
LOG_FIELDS = ("epoch", "lr", "loss", "train_accuracy", "val_accuracy")


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))


def _epoch_seed(torch_seed: int, epoch: int) -> int:
    return torch_seed * 100_003 + epoch


@dataclass
class Setup:
    """What every step of one training run reads: the config, the run's resolved config and its
    hash, the run's folder and where it computes."""
    config: dict[str, Any]
    run: dict[str, Any]
    digest: str
    out: Path
    device: torch.device
    precision: str
    method: str
    dataset: str


@dataclass
class TrainingData:
    """The run's images after its class selection (base classes for base2novel)."""
    data: Dataset
    train_items: list[Item]
    val_items: list[Item]
    classnames: list[str]
    short: dict[str, int]  # trained classes with fewer than `shots` images (all of them used, as Dassl samples)
    captions: JobCaptions | None = None  # of the train and val images, for a method that reads captions


@dataclass
class Progress:
    """What the epochs change: saved after every epoch (paths.STATE) and resumed from."""
    epochs: int
    optimiser: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    selector: ModelSelector
    averager: PromptAverager | None
    best: dict[str, torch.Tensor] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    epoch_seconds: list[float | None] = field(default_factory=list)
    next_epoch: int = 0
    stopped: bool = False


def train(
    config: dict[str, Any], training: str, method: str, dataset: str, seed: int, out_dir: Path | None = None
) -> Path:
    """Train and write `prompts.safetensors`, `train_log.csv` and `provenance.json`; returns the folder."""
    run = run_config(config, training, method, dataset, seed)
    digest = config_hash(run)
    out = Path(out_dir) if out_dir else paths.train_dir(config, training, method, dataset, seed)
    setup = Setup(config, run, digest, out, *compute_setup(config), method, dataset)
    split = _training_data(setup, training, seed)  # everything that can fail on bad input, before any file
    clock = RunClock(setup.device, setup.precision)
    backbone = backbone_from(config, setup.device)
    torch.manual_seed(run["torch_seed"])
    model = build_model(backbone, method, split.classnames, split.data.template, run["recipe"]["options"])
    prepared = model.prepare(split.data, dataset_root(config, dataset))  # class descriptions (CoPrompt, HiCroPL)
    progress = _start(setup, model)
    _resume(setup, model, progress, clock)
    _run_epochs(setup, model, split, progress, backbone.image_size)
    selected = _select(setup, model, progress)
    _write_results(setup, model, split, progress, selected, clock, backbone, prepared)
    return out


def _training_data(setup: Setup, training: str, seed: int) -> TrainingData:
    """The run's few-shot lists, refused when the dataset cannot be trained on (too few classes) or
    has no validation split for best_val selection; classes short of `shots` images are logged."""
    run, dataset = setup.run, setup.dataset
    data, train_items, val_items = fewshot_data(setup.config, dataset, seed)
    problems = training_class_problems(setup.config, training, dataset, data.num_classes)
    if problems:
        raise DegenerateDatasetError("\n".join(problems))
    classnames = data.classnames
    if run["classes"] == "base":
        train_items, val_items, _, classnames = subsample_classes(train_items, val_items, [], "base", dataset=dataset)
    short = short_classes(train_items, run["shots"])
    if short:
        log.warning("%s", short_classes_warning(dataset, run["shots"], short))
    if run["selection"]["mode"] == "best_val" and (not data.sample_val or not val_items):
        raise ConfigError(
            f"selection.mode best_val needs a validation split, and {data.name} has none "
            "(ImageNet's val list is its test set); use selection.mode: last"
        )
    captions = caption_lookup(setup.config, setup.method, data, [*train_items, *val_items], dataset)
    return TrainingData(data, train_items, val_items, classnames, short, captions)


def _start(setup: Setup, model: PromptedCLIP) -> Progress:
    """A fresh run's optimiser, loss scaler, model selector and (PromptSRC) prompt averager; no
    epochs for a method without learnable tensors."""
    recipe, selection = setup.run["recipe"], setup.run["selection"]
    params = model.learnable_parameters()
    epochs = recipe["epochs"] if params else 0
    optimiser = make_optimizer(params, recipe) if params else None
    scaler = grad_scaler(setup.device, setup.precision)
    selector = ModelSelector(selection["patience"], selection["min_epoch"], selection["margin"])
    src = model.method_options.get("promptsrc")
    averager = PromptAverager(epochs, src["gpa_mean"], src["gpa_std"]) if src and epochs else None
    return Progress(epochs, optimiser, scaler, selector, averager)


def _resume(setup: Setup, model: PromptedCLIP, progress: Progress, clock: RunClock) -> None:
    """Continue from the state an interrupted run of this configuration saved, if there is one."""
    state_path = setup.out / paths.STATE
    if not state_path.is_file():
        return
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    if state["config_sha256"] != setup.digest:
        log.warning("ignoring %s: it was written for another configuration", state_path)
        return
    model.load_learnable_state(state["method"])
    progress.optimiser.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        progress.scaler.load_state_dict(state["scaler"])
    progress.selector = ModelSelector(**state["selector"])
    if progress.averager is not None:
        progress.averager.load_state_dict(state["averager"])
    progress.best, progress.rows = state["best"], state["rows"]
    progress.next_epoch, progress.stopped = state["next_epoch"], state["stopped"]
    # A state saved by an older bmip kept each epoch's seconds in its log rows.
    progress.epoch_seconds = state.get("epoch_seconds") or [row.pop("seconds", None) for row in progress.rows]
    clock.extra["resumed_from_epoch"] = progress.next_epoch
    log.info("resuming %s from epoch %d of %d (%s)", setup.out, progress.next_epoch, progress.epochs, state_path)


def _run_epochs(setup: Setup, model: PromptedCLIP, split: TrainingData, progress: Progress, size: int) -> None:
    """The remaining epochs (until an early stop), the state and the log saved after each."""
    transform = Views(model.train_transforms(size))  # CoPrompt: a second augmented view of each image
    for epoch in range(progress.next_epoch, progress.epochs):
        if progress.stopped:
            break
        tic = time.perf_counter()
        row = _train_epoch(setup, model, split, progress, epoch, transform, size)
        if setup.run["selection"]["mode"] == "best_val":
            _validate(setup, model, split, progress, epoch, row)
        if progress.averager is not None:
            progress.averager.add(epoch, model.learnable_state())
        progress.rows.append(row)
        progress.epoch_seconds.append(round(time.perf_counter() - tic, 3))
        val = f" val acc {row['val_accuracy']:.2f}" if row["val_accuracy"] is not None else ""
        log.info("epoch %d/%d lr %.3g loss %.4f train acc %.2f%s", epoch + 1, progress.epochs, row["lr"], row["loss"],
                 row["train_accuracy"], val)
        progress.next_epoch = epoch + 1
        _save_progress(setup, model, progress)
        if progress.stopped:
            log.info("early stop after epoch %d: no improvement in %d epochs", epoch + 1, progress.selector.patience)


def _train_epoch(setup: Setup, model: PromptedCLIP, split: TrainingData, progress: Progress, epoch: int,
                 transform: Views, size: int) -> dict[str, Any]:
    """One pass over the training images at the epoch's learning rate, shuffled and augmented from
    the epoch's seed (so a resumed run draws what an uninterrupted one would); its log row."""
    recipe, device, precision = setup.run["recipe"], setup.device, setup.precision
    batch = recipe["batch_size"]
    lr = epoch_lr(epoch, recipe)
    for group in progress.optimiser.param_groups:
        group["lr"] = lr
    epoch_seed = _epoch_seed(setup.run["torch_seed"], epoch)
    torch.manual_seed(epoch_seed)  # augmentation draws from the global torch RNG
    batches = loader(
        split.train_items, split.data.image_root, size, batch, setup.config["workers"], f"{setup.dataset} train images",
        transform=transform, shuffle=True, generator=torch.Generator().manual_seed(epoch_seed),
        drop_last=len(split.train_items) >= batch, indexed=split.captions is not None,
    )
    model.train()
    loss_sum, hits, seen = 0.0, 0, 0
    desc = f"{setup.method}/{setup.dataset} epoch {epoch + 1}/{progress.epochs}"
    for images, labels, *index in tqdm(batches, desc=desc, unit="batch", leave=False):
        if index:  # the batch's images' captions (a method that reads them)
            give_captions(model, split.captions, [split.train_items[i] for i in index[0].tolist()])
        images, labels = [view.to(device) for view in images], labels.to(device)
        with autocast(device, precision):
            loss, logits = model.loss(images[0], labels, images[1:])
        progress.optimiser.zero_grad(set_to_none=True)
        progress.scaler.scale(loss).backward()
        progress.scaler.step(progress.optimiser)
        progress.scaler.update()
        loss_sum += loss.item() * len(labels)
        hits += int((logits.argmax(-1) == labels).sum())
        seen += len(labels)
    return {"epoch": epoch + 1, "lr": lr, "loss": loss_sum / max(seen, 1),
            "train_accuracy": 100.0 * hits / max(seen, 1), "val_accuracy": None}


def _validate(setup: Setup, model: PromptedCLIP, split: TrainingData, progress: Progress, epoch: int,
              row: dict[str, Any]) -> None:
    """best_val selection: the epoch's validation accuracy (into its log row), the selector's
    verdict (keep this epoch's state? stop?)."""
    preds = predict(model, split.val_items, split.data.image_root, batch=setup.config["eval_batch_size"],
                    workers=setup.config["workers"], device=setup.device, precision=setup.precision,
                    desc=f"{setup.dataset} val", captions=split.captions)
    labels = torch.tensor([it.label for it in split.val_items])
    row["val_accuracy"] = 100.0 * float((preds == labels).float().mean())
    keep, progress.stopped = progress.selector.update(epoch, row["val_accuracy"])
    if keep:
        progress.best = model.learnable_state()


def _save_progress(setup: Setup, model: PromptedCLIP, progress: Progress) -> None:
    """The state to resume from and the log so far, each written atomically."""
    state = {
        "config_sha256": setup.digest, "next_epoch": progress.next_epoch, "stopped": progress.stopped,
        "method": model.learnable_state(), "optimizer": progress.optimiser.state_dict(),
        "scaler": progress.scaler.state_dict(), "selector": progress.selector.state_dict(), "best": progress.best,
        "rows": progress.rows, "epoch_seconds": progress.epoch_seconds,
        "averager": progress.averager.state_dict() if progress.averager is not None else None,
    }
    atomic_write(setup.out / paths.STATE, lambda tmp: torch.save(state, tmp))
    _write_log(setup.out / paths.TRAIN_LOG, progress.rows)


def _select(setup: Setup, model: PromptedCLIP, progress: Progress) -> str | int:
    """Load the learnable state the run ends with into `model`: PromptSRC's Gaussian prompt
    average, else the best validation epoch's (best_val), else the last epoch's; returns which
    (the 1-based epoch, or the average's name)."""
    if progress.averager is not None:
        final, selected = progress.averager.state_dict(), "gaussian prompt average"
    elif setup.run["selection"]["mode"] == "best_val" and progress.best is not None:
        final, selected = progress.best, progress.selector.best_epoch + 1
    else:
        final, selected = model.learnable_state(), len(progress.rows)
    model.load_learnable_state(final)
    return selected


def _write_results(setup: Setup, model: PromptedCLIP, split: TrainingData, progress: Progress, selected: str | int,
                   clock: RunClock, backbone: Backbone, prepared: Any) -> None:
    """The checkpoint, the final log and the provenance; then the resume state goes."""
    out = setup.out
    save_checkpoint(out / paths.PROMPTS, model, {"config_sha256": setup.digest, "selected_epoch": selected})
    _write_log(out / paths.TRAIN_LOG, progress.rows)
    clock.extra["epoch_seconds"] = progress.epoch_seconds
    inputs = {
        "train": dataset_inputs(split.data, split.train_items),
        "val_images_sha256": dataset_inputs(split.data, split.val_items)["images_sha256"],
        # Trained classes with fewer than `shots` images (all of them used, as Dassl samples).
        "short_classes": split.short,
        "data_check": data_check.provenance_input(setup.config, setup.dataset),
        "selected_epoch": selected,
        "epochs_run": len(progress.rows),
    }
    if split.captions is not None:  # the captions file it read, its sha256 and captioner (the audit checks it)
        inputs["captions"] = split.captions.record
    inputs.update(prepared)  # what the method and the regulariser read, by name
    write_json(out / paths.PROVENANCE, provenance("train", setup.run, clock=clock, inputs=inputs,
                                                  backbone=backbone_record(backbone)))
    (out / paths.STATE).unlink(missing_ok=True)
