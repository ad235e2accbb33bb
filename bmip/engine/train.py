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
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bmip.checkpoint import save_checkpoint
from bmip.config import ConfigError, config_hash, run_config
from bmip.data import Views, subsample_classes
from bmip.data.checks import training_class_problems
from bmip.data.errors import DegenerateDatasetError
from bmip.data.sampling import short_classes, short_classes_warning
from bmip.engine import data_check, paths
from bmip.engine.provenance import RunClock, provenance
from bmip.engine.runtime import (
    autocast, backbone_from, backbone_record, compute_setup, dataset_inputs, fewshot_data, grad_scaler, loader,
    predict,
)
from bmip.engine.schedule import epoch_lr, make_optimizer
from bmip.engine.selection import ModelSelector
from bmip.io import atomic_write, write_json
from bmip.methods import build_model
from bmip.methods.promptsrc import PromptAverager

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


def train(
    config: dict[str, Any], training: str, method: str, dataset: str, seed: int, out_dir: Path | None = None
) -> Path:
    """Train and write `prompts.safetensors`, `train_log.csv` and `provenance.json`; returns the folder."""
    run = run_config(config, training, method, dataset, seed)
    digest = config_hash(run)
    out = Path(out_dir) if out_dir else paths.train_dir(config, training, method, dataset, seed)
    recipe, selection = run["recipe"], run["selection"]
    device, precision = compute_setup(config)

    # Everything that can fail on bad input happens before anything is written.
    data, train_items, val_items = fewshot_data(config, dataset, seed)
    problems = training_class_problems(config, training, dataset, data.num_classes)
    if problems:
        raise DegenerateDatasetError("\n".join(problems))
    classnames = data.classnames
    if run["classes"] == "base":
        train_items, val_items, _, classnames = subsample_classes(train_items, val_items, [], "base", dataset=dataset)
    short = short_classes(train_items, run["shots"])
    if short:
        log.warning("%s", short_classes_warning(dataset, run["shots"], short))
    if selection["mode"] == "best_val" and (not data.sample_val or not val_items):
        raise ConfigError(
            f"selection.mode best_val needs a validation split, and {data.name} has none "
            "(ImageNet's val list is its test set); use selection.mode: last"
        )
    clock = RunClock(device, precision)
    backbone = backbone_from(config, device)
    torch.manual_seed(run["torch_seed"])
    model = build_model(backbone, method, classnames, data.template, recipe["options"])
    prepared = model.regularizer.prepare(data, config["data_root"]) if model.regularizer is not None else None
    params = model.learnable_parameters()
    epochs = recipe["epochs"] if params else 0
    optimiser = make_optimizer(params, recipe) if params else None
    scaler = grad_scaler(device, precision)
    selector = ModelSelector(selection["patience"], selection["min_epoch"], selection["margin"])
    src = model.method_options.get("promptsrc")
    averager = PromptAverager(epochs, src["gpa_mean"], src["gpa_std"]) if src and epochs else None
    best: dict[str, torch.Tensor] | None = None
    rows: list[dict[str, Any]] = []
    epoch_seconds: list[float | None] = []
    start, stopped = 0, False

    state_path = out / paths.STATE
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["config_sha256"] == digest:
            model.load_learnable_state(state["method"])
            optimiser.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            selector = ModelSelector(**state["selector"])
            if averager is not None:
                averager.load_state_dict(state["averager"])
            best, rows, start, stopped = state["best"], state["rows"], state["next_epoch"], state["stopped"]
            # A state saved by an older bmip kept each epoch's seconds in its log rows.
            epoch_seconds = state.get("epoch_seconds") or [row.pop("seconds", None) for row in rows]
            clock.extra["resumed_from_epoch"] = start
            log.info("resuming %s from epoch %d of %d (%s)", out, start, epochs, state_path)
        else:
            log.warning("ignoring %s: it was written for another configuration", state_path)

    size = backbone.image_size
    batch = recipe["batch_size"]
    transform = Views(model.train_transforms(size))  # CoPrompt: a second augmented view of each image
    for epoch in range(start, epochs):
        if stopped:
            break
        tic = time.perf_counter()
        lr = epoch_lr(epoch, recipe)
        for group in optimiser.param_groups:
            group["lr"] = lr
        epoch_seed = _epoch_seed(run["torch_seed"], epoch)
        torch.manual_seed(epoch_seed)  # augmentation draws from the global torch RNG
        batches = loader(
            train_items, data.image_root, size, batch, config["workers"], f"{dataset} train images", transform=transform,
            shuffle=True, generator=torch.Generator().manual_seed(epoch_seed), drop_last=len(train_items) >= batch,
        )
        model.train()
        loss_sum, hits, seen = 0.0, 0, 0
        for images, labels in tqdm(batches, desc=f"{method}/{dataset} epoch {epoch + 1}/{epochs}", unit="batch", leave=False):
            images, labels = [view.to(device) for view in images], labels.to(device)
            with autocast(device, precision):
                loss, logits = model.loss(images[0], labels, images[1:])
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            loss_sum += loss.item() * len(labels)
            hits += int((logits.argmax(-1) == labels).sum())
            seen += len(labels)
        row = {"epoch": epoch + 1, "lr": lr, "loss": loss_sum / max(seen, 1), "train_accuracy": 100.0 * hits / max(seen, 1),
               "val_accuracy": None}
        if selection["mode"] == "best_val":
            preds = predict(model, val_items, data.image_root, batch=config["eval_batch_size"], workers=config["workers"],
                            device=device, precision=precision, desc=f"{dataset} val")
            labels = torch.tensor([it.label for it in val_items])
            row["val_accuracy"] = 100.0 * float((preds == labels).float().mean())
            keep, stopped = selector.update(epoch, row["val_accuracy"])
            if keep:
                best = model.learnable_state()
        if averager is not None:
            averager.add(epoch, model.learnable_state())
        rows.append(row)
        epoch_seconds.append(round(time.perf_counter() - tic, 3))
        log.info("epoch %d/%d lr %.3g loss %.4f train acc %.2f%s", epoch + 1, epochs, lr, row["loss"],
                 row["train_accuracy"], f" val acc {row['val_accuracy']:.2f}" if row["val_accuracy"] is not None else "")
        state = {
            "config_sha256": digest, "next_epoch": epoch + 1, "stopped": stopped, "method": model.learnable_state(),
            "optimizer": optimiser.state_dict(), "scaler": scaler.state_dict(), "selector": selector.state_dict(),
            "best": best, "rows": rows, "epoch_seconds": epoch_seconds,
            "averager": averager.state_dict() if averager is not None else None,
        }
        atomic_write(state_path, lambda tmp: torch.save(state, tmp))
        _write_log(out / paths.TRAIN_LOG, rows)
        if stopped:
            log.info("early stop after epoch %d: no improvement in %d epochs", epoch + 1, selector.patience)

    if averager is not None:
        final, selected = averager.state_dict(), "gaussian prompt average"
    elif selection["mode"] == "best_val" and best is not None:
        final, selected = best, selector.best_epoch + 1
    else:
        final, selected = model.learnable_state(), len(rows)
    model.load_learnable_state(final)
    save_checkpoint(out / paths.PROMPTS, model, {"config_sha256": digest, "selected_epoch": selected})
    _write_log(out / paths.TRAIN_LOG, rows)
    clock.extra["epoch_seconds"] = epoch_seconds
    inputs = {
        "train": dataset_inputs(data, train_items),
        "val_images_sha256": dataset_inputs(data, val_items)["images_sha256"],
        # Trained classes with fewer than `shots` images (all of them used, as Dassl samples).
        "short_classes": short,
        "data_check": data_check.provenance_input(config, dataset),
        "selected_epoch": selected,
        "epochs_run": len(rows),
    }
    if prepared is not None:
        inputs[model.regularizer.name] = prepared
    write_json(out / paths.PROVENANCE, provenance("train", run, clock=clock, inputs=inputs, backbone=backbone_record(backbone)))
    state_path.unlink(missing_ok=True)
    return out
