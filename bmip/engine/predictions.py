"""Every test image's prediction, kept beside metrics.json: the evidence image-level tests need.

An evaluation scores fixed test images; two methods (or two seeds) scored on the same images can
be compared image by image (bmip.report.statistics resamples the images of both arms together),
and every accuracy and OpenworldAUC in metrics.json can be recomputed from the images up. So each
evaluation writes, for every label space it scores (the protocol's own and the open-world ratio
sweep's), each test image's row in the dataset's test list, its label and its prediction in that
space; for open-world, what OpenworldAUC needs of every image (bmip.engine.scoring.openworld_scores).

Format `bmip-predictions/1`: gzip-compressed JSON (compact, keys sorted, gzip header time 0: the
same predictions give the same bytes),

    {"format": "bmip-predictions/1", "protocol", "method", "dataset", "seed",
     "test_images_sha256": <bmip.data.items_hash of the dataset's test list>, "test_images": <n>,
     "spaces": {<space>: {"rows": [...], "labels": [...], "predicted": [...]}},
     "openworld": null or {"rows": [...], "is_base": [0/1...], "correct": [0/1...],
                           "detection": [float32 values, written as float64]}}

A space is named by where metrics.json keeps its result: "base", "novel" (base2novel), "joint"
(open_world), "all" (a transfer target), "ratio/<r>" (the open-world ratio sweep). `rows` index
the test list `test_images_sha256` pins, in the order the space scores them; `labels` and
`predicted` are positions in the space's class list. `correct` is OpenworldAUC's within-domain
correctness (argmax over the image's own part of the classes) and `detection` its score. About
2-4 bytes per (image, space) once compressed (README: the paper grid's total).

No torch: the audit and the report read these files without it.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bmip.metrics import openworld_pairs

FORMAT = "bmip-predictions/1"
IDENTITY = ("protocol", "method", "dataset", "seed")


class PredictionsError(ValueError):
    """A predictions file cannot be read, or does not hold what a reader needs."""


def space_record(rows: Any, labels: Any, predicted: Any) -> dict[str, list[int]]:
    """A label space's entry from three equally long integer arrays (numpy or torch)."""
    rows, labels, predicted = (np.asarray(a, dtype=np.int64) for a in (rows, labels, predicted))
    if not rows.shape == labels.shape == predicted.shape:
        raise ValueError(f"rows, labels and predictions differ in length: {rows.shape}, {labels.shape}, "
                         f"{predicted.shape}")
    return {"rows": rows.tolist(), "labels": labels.tolist(), "predicted": predicted.tolist()}


def openworld_record(rows: Any, is_base: Any, correct: Any, detection: Any) -> dict[str, list]:
    """The open-world entry: each image's row, part (base class or not), within-domain correctness
    and detection score (float32, kept exactly: written as the float64 of the float32)."""
    detection = np.asarray(detection, dtype=np.float32)
    return {"rows": np.asarray(rows, dtype=np.int64).tolist(),
            "is_base": np.asarray(is_base, dtype=bool).astype(np.int8).tolist(),
            "correct": np.asarray(correct, dtype=bool).astype(np.int8).tolist(),
            "detection": detection.astype(np.float64).tolist()}


def encode(doc: Mapping[str, Any]) -> bytes:
    """The file's bytes: compact JSON with sorted keys, gzip with header time 0 (deterministic)."""
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False)
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def write_predictions(path: Path, identity: Mapping[str, Any], test_sha256: str, n_images: int,
                      spaces: Mapping[str, Any], openworld: Mapping[str, Any] | None) -> None:
    """Write a predictions file atomically."""
    from bmip.io import atomic_write

    doc = {"format": FORMAT, **identity, "test_images_sha256": test_sha256, "test_images": n_images,
           "spaces": dict(spaces), "openworld": openworld}
    data = encode(doc)
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def read_predictions(path: Path) -> dict[str, Any]:
    """A predictions file's document; PredictionsError naming the file when it cannot be read."""
    try:
        doc = json.loads(gzip.decompress(Path(path).read_bytes()).decode("utf-8"))
    except FileNotFoundError:
        raise PredictionsError(f"{path}: missing. Every evaluation writes it beside metrics.json; rerun the "
                               "evaluation (the workflow reruns it by itself)") from None
    except (OSError, EOFError, ValueError) as err:
        raise PredictionsError(f"{path}: not a readable {FORMAT} file ({err}); rerun its evaluation") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PredictionsError(f"{path}: not a {FORMAT} document; rerun its evaluation")
    return doc


def correctness(doc: Mapping[str, Any], space: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, correct) of a label space: numpy arrays (int64, bool) in the space's order."""
    entry = (doc.get("spaces") or {}).get(space)
    if entry is None:
        raise PredictionsError(f"{doc.get('method')}/{doc.get('dataset')}/seed{doc.get('seed')}: no predictions "
                               f"for label space {space!r} (it has {sorted(doc.get('spaces') or {})})")
    rows = np.asarray(entry["rows"], dtype=np.int64)
    return rows, np.asarray(entry["labels"]) == np.asarray(entry["predicted"])


def part_correctness(doc: Mapping[str, Any], part: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, correct) of the images whose accuracy a table's `part` column is: base2novel's
    "base"/"novel" spaces, open-world's base-class and novel-class images in the joint space
    ("base"/"novel" too), a transfer target's "all" ("accuracy")."""
    spaces = doc.get("spaces") or {}
    if doc.get("protocol") == "open_world" and part in ("base", "novel"):
        rows, correct = correctness(doc, "joint")
        world = doc.get("openworld")
        if world is None:
            raise PredictionsError(f"{doc.get('method')}/{doc.get('dataset')}/seed{doc.get('seed')}: an open-world "
                                   "predictions file without its 'openworld' entry")
        base = np.zeros(int(doc.get("test_images") or 0), dtype=bool)
        base[np.asarray(world["rows"], dtype=np.int64)] = np.asarray(world["is_base"], dtype=bool)
        keep = base[rows] == (part == "base")
        return rows[keep], correct[keep]
    return correctness(doc, "all" if part == "accuracy" and "all" in spaces else part)


def _counts(entry: Mapping[str, Any], n_classes: int) -> tuple[int, int, list[int], list[int]]:
    labels, predicted = np.asarray(entry["labels"], dtype=np.int64), np.asarray(entry["predicted"], dtype=np.int64)
    hit = labels == predicted
    totals = np.bincount(labels, minlength=n_classes) if labels.size else np.zeros(n_classes, dtype=np.int64)
    hits = np.bincount(labels[hit], minlength=n_classes) if hit.any() else np.zeros(n_classes, dtype=np.int64)
    return int(hit.sum()), int(labels.size), totals.tolist(), hits.tolist()


def scored_spaces(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The label spaces metrics.json reports per-image results for, by name: its `results` entries
    with per-class counts, and the ratio sweep's as ratio/<r>."""
    results = metrics.get("results") or {}
    out = {name: r for name, r in results.items() if isinstance(r, dict) and "per_class" in r}
    for ratio, r in (results.get("ratio") or {}).items():
        out[f"ratio/{ratio}"] = r
    return out


def problems(doc: Any, identity: Mapping[str, Any], metrics: Mapping[str, Any] | None,
             test_sha256: str | None) -> list[str]:
    """What is wrong with a predictions document for the run `identity`: its header, that it scores
    the test list the evaluation read (`test_sha256`, from its provenance), and, against its
    metrics.json, every label space's counts (overall and per class) and the OpenworldAUC pairs:
    recomputed from the images, they must be the metrics' exactly."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return [f"not a {FORMAT} document"]
    out = [f"records {key} {doc.get(key)!r}, but the run is {value!r}"
           for key, value in identity.items() if doc.get(key) != value]
    if test_sha256 is not None and doc.get("test_images_sha256") != test_sha256:
        out.append("scores another test list than the evaluation read (test_images_sha256 differs from its "
                   "provenance)")
    if metrics is None:
        return out
    spaces, expected = doc.get("spaces") or {}, scored_spaces(metrics)
    if sorted(spaces) != sorted(expected):
        out.append(f"label spaces {sorted(spaces)}, but metrics.json reports {sorted(expected)}")
    n = doc.get("test_images")
    for name in sorted(set(spaces) & set(expected)):
        entry, result = spaces[name], expected[name]
        lengths = {len(entry.get(k) or []) for k in ("rows", "labels", "predicted")}
        if len(lengths) != 1:
            out.append(f"{name}: rows, labels and predicted differ in length")
            continue
        rows = entry["rows"]
        if rows and (min(rows) < 0 or not isinstance(n, int) or max(rows) >= n or len(set(rows)) != len(rows)):
            out.append(f"{name}: rows must be distinct indices of the {n} test images")
        per_class = result.get("per_class") or []
        if any(not 0 <= y < len(per_class) for y in entry["labels"] + entry["predicted"]):
            out.append(f"{name}: a label or prediction outside its {len(per_class)} classes")
            continue
        correct, total, totals, hits = _counts(entry, len(per_class))
        if (correct, total) != (result.get("correct"), result.get("total")) \
                or totals != [c.get("total") for c in per_class] or hits != [c.get("correct") for c in per_class]:
            out.append(f"{name}: {correct}/{total} correct from the images, metrics.json says "
                       f"{result.get('correct')}/{result.get('total')} (or per-class counts differ)")
    out += _openworld_problems(doc, metrics)
    return out


def _openworld_problems(doc: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[str]:
    """The open-world entry against metrics.json's OpenworldAUC: the same images and pairs won."""
    record = (metrics.get("results") or {}).get("openworld_auc")
    world = doc.get("openworld")
    if doc.get("protocol") != "open_world" or not isinstance(record, dict) or record.get("value") is None:
        return [] if world is None or doc.get("protocol") == "open_world" else \
            ["an 'openworld' entry in an evaluation without OpenworldAUC"]
    if not isinstance(world, dict):
        return ["no 'openworld' entry, but metrics.json reports OpenworldAUC"]
    is_base = np.asarray(world.get("is_base") or [], dtype=bool)
    correct = np.asarray(world.get("correct") or [], dtype=bool)
    detection = np.asarray(world.get("detection") or [], dtype=np.float32)
    if not len(world.get("rows") or []) == is_base.size == correct.size == detection.size:
        return ["openworld: rows, is_base, correct and detection differ in length"]
    won = openworld_pairs(detection[is_base], correct[is_base], detection[~is_base], correct[~is_base])
    out = []
    if (int(is_base.sum()), int((~is_base).sum())) != (record.get("base", {}).get("images"),
                                                        record.get("novel", {}).get("images")):
        out.append("openworld: its base and novel image counts are not metrics.json's")
    if won != record.get("pairs_won"):
        out.append(f"openworld: {won} pairs won from the images, metrics.json says {record.get('pairs_won')}")
    return out
