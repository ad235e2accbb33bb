"""Validation-based model selection and early stopping, on scripted accuracy sequences."""
import csv

import torch

from bmip.checkpoint import read_checkpoint
from bmip.config import apply_overrides, validate
from bmip.engine import paths, train as train_module
from bmip.engine.selection import ModelSelector


def _replay(sequence, **kwargs):
    selector, kept, stopped_at = ModelSelector(**kwargs), [], None
    for epoch, acc in enumerate(sequence):
        keep, stop = selector.update(epoch, acc)
        if keep:
            kept.append(epoch)
        if stop:
            stopped_at = epoch
            break
    return kept, stopped_at, selector


def test_best_moves_only_beyond_the_margin():
    kept, stopped, sel = _replay([50.0, 50.005, 50.02, 49.0], patience=4, min_epoch=5, margin=0.01)
    assert kept == [0, 2] and stopped is None and sel.best == 50.02 and sel.best_epoch == 2


def test_small_strict_improvement_resets_patience_without_moving_best():
    # 50.005 > 50 strictly (counter reset) but not by the margin (best stays at epoch 0).
    kept, stopped, _ = _replay([50, 49, 49, 50.005, 49, 49, 49, 49, 49], patience=4, min_epoch=5, margin=0.01)
    assert kept == [0] and stopped == 7


def test_no_stop_before_min_epoch():
    kept, stopped, _ = _replay([60, 10, 10, 10, 10, 10, 10], patience=2, min_epoch=5, margin=0.01)
    assert kept == [0] and stopped == 5  # patience ran out at epoch 2, but stopping waits for epoch 5


def test_training_keeps_the_best_epoch_and_stops_early(toy_setup, tmp_path, monkeypatch):
    config, _ = toy_setup
    config = validate(apply_overrides(config, [
        "selection.mode=best_val", "selection.patience=2", "selection.min_epoch=3",
        "recipes.default.bmip.epochs=8",
    ]))
    scripted = iter([40.0, 80.0, 60.0, 60.0, 80.0, 60.0, 60.0, 60.0])  # best at epoch 2 (1-based)
    saved = {}

    def fake_predict(model, items, *args, **kwargs):
        acc = next(scripted)
        labels = torch.tensor([it.label for it in items])
        n_right = round(acc / 100 * len(items))
        preds = labels.clone()
        preds[n_right:] = (labels[n_right:] + 1) % 3
        saved[len(saved)] = {k: v.detach().clone() for k, v in model.method.named_parameters()}
        return preds

    monkeypatch.setattr(train_module, "predict", fake_predict)
    out = train_module.train(config, "base2novel", "bmip", "toy", 1, tmp_path / "run")
    rows = list(csv.DictReader(open(out / paths.TRAIN_LOG)))
    # val has 3 base classes x 3 = 9 images, so the scripted accuracies round to multiples of 1/9.
    assert len(rows) == 4  # epochs 3 and 4 (0-based 2, 3) brought no strict improvement -> stop at 0-based 3
    tensors, meta = read_checkpoint(out / paths.PROMPTS)
    assert meta["selected_epoch"] == 2
    for key, value in tensors.items():
        assert torch.equal(value, saved[1][key])
