"""Synthetic evaluations for the report's tests: a metrics.json and the per-image predictions file
beside it (bmip.engine.predictions), consistent with each other."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bmip.engine import paths, predictions
from bmip.metrics import harmonic_mean

IMAGES = 1000  # test images per part: accuracies in steps of 0.1


def correct_share(accuracy: float, images: int = IMAGES) -> np.ndarray:
    """`images` correctness values whose accuracy is `accuracy` (%) rounded to the image: the
    first ones right, so that two runs of similar accuracy are right on mostly the same images."""
    return np.arange(images) < round(accuracy * images / 100)


def write_run(folder: Path, protocol: str, method: str, dataset: str, seed: int, **parts: np.ndarray) -> Path:
    """metrics.json (its summary from the parts' correctness: base and novel, or all) and
    predictions.json.gz in `folder`; returns the metrics file."""
    folder.mkdir(parents=True, exist_ok=True)
    spaces, summary, offset = {}, {}, 0
    for part, correct in parts.items():
        correct = np.asarray(correct, dtype=bool)
        rows = np.arange(offset, offset + correct.size)
        offset += correct.size
        labels = np.zeros(correct.size, dtype=np.int64)
        spaces[part] = predictions.space_record(rows, labels, np.where(correct, 0, 1))
        summary["accuracy" if part == "all" else part] = 100.0 * correct.sum() / correct.size
    if {"base", "novel"} <= set(summary):
        summary["hm"] = harmonic_mean(summary["base"], summary["novel"])
    identity = {"protocol": protocol, "method": method, "dataset": dataset, "seed": seed}
    predictions.write_predictions(folder / paths.PREDICTIONS, identity, "0" * 64, offset, spaces, None)
    path = folder / paths.METRICS
    path.write_text(json.dumps({**identity, "summary": summary}))
    return path
