"""One pass per trained model and test set: the (test images x all classes) score matrix.

For a method whose logits are label-space independent (`PromptMethod.label_space_independent`:
every method but official_compat BMIP), a logit depends only on (image, class). So the
predictions in any label space — base, novel, the open-world joint space, every ratio of the
sweep, a cross-dataset target's classes — are the argmax over that space's columns of one
matrix, in the space's column order (ties go to the first column, as `argmax` over that space's
own logits would). The matrix costs one image-tower pass over the test set and one text pass over
all its classes; frozen-tower methods take the image features from the experiment's cache
(bmip.engine.features) and run no image forward at all.

BMIP's vision gate statistics (gates.json) of a label space are read from the same pass: the
per-image values of the space's images, added in chunks of the evaluation batch as a per-space
pass would add them. Its text gate statistics come from a text pass over the space's own classes
(cheap: one sequence per class): the text tower cuts its sequences at the longest prompt of the
classes it is given, so the all-class pass can differ from a per-space one in the last float bits,
and gates.json stays byte-identical this way.

The mechanism record (bmip.engine.mechanism) of every label space an evaluation of this model
needs comes from the same pass: the probe adds each image's values to the spaces whose columns
hold its class (`label_spaces`: the row selection `ScoreMatrix.rows` makes) and each class
prompt's to the spaces holding that class (CoCoOp: each (image, class) sequence to the spaces
holding both). Frozen-tower methods run no image forward, so they record only their text tower:
their image tower is not prompted.

OpenworldAUC's inputs (`openworld_scores`) are read from the open-world joint space's rows of the
same matrix: no second forward.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from bmip.data import Dataset
from bmip.engine import gates, mechanism
from bmip.engine.features import FrozenFeatures
from bmip.engine.runtime import JobCaptions, autocast, eval_batches, give_captions
from bmip.prompting import PromptedCLIP


class _Samples(dict):
    """What BMIP's hooks write into during the one pass: every call's values, kept per key."""

    def __setitem__(self, key: tuple[str, int], values: torch.Tensor) -> None:
        if key not in self:
            super().__setitem__(key, [])
        self[key].append(values.detach().cpu())


@contextlib.contextmanager
def _per_sample(method: Any, on: bool) -> Iterator[tuple[dict, dict]]:
    w, s = _Samples(), _Samples()
    if on:
        method.recorded_gates, method.recorded_statistics = w, s
    try:
        yield w, s
    finally:
        if on:
            method.recorded_gates = method.recorded_statistics = None


@dataclass
class ScoreMatrix:
    """Logits of every test image (rows, in test order) against every class (columns, by label)."""

    logits: torch.Tensor  # (n_images, n_classes), float32 on the CPU
    labels: torch.Tensor  # (n_images,) original test labels
    batch: int
    image_forwards: int
    frozen: FrozenFeatures | None = None
    # BMIP only: (tower, block) -> per-image (vision) values of w and s (text: see vision_gate_stats).
    gate_w: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    gate_s: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    # Prompt methods: the mechanism record per label space (name -> towers) and each space's columns.
    mechanism: dict[str, Any] = field(default_factory=dict)
    mechanism_columns: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def rows(self, columns: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, labels in the space) of the test images whose class is one of `columns`, in test
        order, relabelled by position in `columns`: the items `subsample_classes` keeps."""
        space_labels = _space_labels(self.labels, self.logits.shape[1], columns)
        rows = (space_labels >= 0).nonzero().flatten()
        return rows, space_labels[rows]

    def mechanism_for(self, part: str, columns: Sequence[int]) -> dict[str, Any]:
        """The mechanism record of label space `part`, which must be the space of `columns`."""
        if self.mechanism_columns.get(part) != tuple(columns):
            raise RuntimeError(f"the one pass recorded the mechanism of {part!r} for columns "
                               f"{self.mechanism_columns.get(part)}, not {tuple(columns)}")
        return self.mechanism[part]

    def predict(self, rows: torch.Tensor, columns: Sequence[int]) -> torch.Tensor:
        return self.logits[rows][:, torch.as_tensor(list(columns), dtype=torch.long)].argmax(dim=-1)

    def vision_gate_stats(self, rows: torch.Tensor) -> dict[str, dict[str, Any]]:
        """gates.json's vision record of the label space of `rows`: the per-image values of its
        images, added in chunks of the evaluation batch as a pass over that space adds them."""
        out: dict[str, dict[str, Any]] = {}
        for k in sorted(k for tower, k in self.gate_w if tower == "vision"):
            entry: dict[str, Any] = {"s": None}
            for name, values in (("w", self.gate_w), ("s", self.gate_s)):
                if ("vision", k) in values:
                    stats = gates.RunningStats()
                    for part in values[("vision", k)][rows].split(self.batch):
                        stats.add(part)
                    entry[name], entry["n"] = stats.summary(), stats.n
            out[str(k)] = {"n": entry["n"], "w": entry["w"], "s": entry["s"]}
        return out


def _space_labels(labels: torch.Tensor, n_classes: int, columns: Sequence[int]) -> torch.Tensor:
    """Each label's position in `columns`, -1 for a label outside them."""
    cols = torch.as_tensor(list(columns), dtype=torch.long)
    position = torch.full((n_classes,), -1, dtype=torch.long)
    position[cols] = torch.arange(len(cols))
    return position[labels]


# OpenworldAUC's detector and the precision of its softmax (the official code's: fp32).
DETECTOR, DETECTOR_PRECISION = "max_base_softmax", "float32"


@dataclass
class OpenWorldScores:
    """What OpenworldAUC reads of each test image of the open-world joint space, in test order."""

    is_base: torch.Tensor  # (n,) bool: the image's class is a base class
    detection: torch.Tensor  # (n,) float32: r(x), the largest base-class softmax probability
    correct: torch.Tensor  # (n,) bool: argmax over its own domain's columns (base or novel) is its class


def openworld_scores(logits: torch.Tensor, labels: torch.Tensor, base: Sequence[int],
                     novel: Sequence[int]) -> OpenWorldScores:
    """OpenworldAUC's inputs from the joint space's logits (columns = class labels, base and novel
    classes together) as the official code defines them: r(x) = max over base columns of the
    float32 softmax over all columns; correct = the argmax over the image's own domain's columns
    (ties to the first column) is its class."""
    n_classes = logits.shape[1]
    base_at, novel_at = _space_labels(labels, n_classes, base), _space_labels(labels, n_classes, novel)
    if bool(((base_at < 0) & (novel_at < 0)).any()):
        raise ValueError("an open-world test image's class is neither a base nor a novel class")
    logits = logits.float()
    base_cols = torch.as_tensor(list(base), dtype=torch.long)
    novel_cols = torch.as_tensor(list(novel), dtype=torch.long)
    detection = logits.softmax(dim=-1)[:, base_cols].amax(dim=-1)
    is_base = base_at >= 0
    preds = torch.where(is_base, logits[:, base_cols].argmax(dim=-1), logits[:, novel_cols].argmax(dim=-1))
    labels_in_domain = torch.where(is_base, base_at, novel_at)
    return OpenWorldScores(is_base=is_base, detection=detection, correct=preds == labels_in_domain)


def label_spaces(labels: torch.Tensor, n_classes: int, spaces: dict[str, Sequence[int]]) -> mechanism.LabelSpaces:
    """The membership of every test image (by its label) and every class in each label space of
    `spaces` (name -> its columns): the rows `ScoreMatrix.rows` selects, the columns it scores."""
    classes = torch.arange(n_classes)
    return mechanism.LabelSpaces(
        names=tuple(spaces),
        images=torch.stack([_space_labels(labels, n_classes, cols) >= 0 for cols in spaces.values()], dim=1),
        classes=torch.stack([_space_labels(classes, n_classes, cols) >= 0 for cols in spaces.values()], dim=1))


def _captioned(model: PromptedCLIP, captions: JobCaptions | None, items: Sequence) -> PromptedCLIP:
    """The model, its method given the captions of the batch's `items` (a method that reads them)."""
    give_captions(model, captions, items)
    return model


@torch.no_grad()
def score_matrix(model: PromptedCLIP, data: Dataset, classnames: list[str], *, batch: int, workers: int,
                 device: torch.device, precision: str, frozen: FrozenFeatures | None = None,
                 record_gates: bool = False, spaces: dict[str, Sequence[int]] | None = None,
                 foreground: torch.Tensor | None = None, reference: dict | None = None,
                 captions: JobCaptions | None = None) -> ScoreMatrix:
    """The model's logits for every test image of `data` against `classnames` (all its classes):
    image features from `frozen` when given (no image forward), else one pass of the image tower.
    `spaces` (name -> columns): record the mechanism of each of these label spaces on the same pass
    (`foreground`: the test images' patch foreground, `reference`: bmip.engine.mechanism.recording's).
    `captions`: the test images' captions, of a method that reads them (given to it batch by batch)."""
    if not model.method.label_space_independent:
        raise ValueError(f"{model.method_name}'s logits depend on the batch: score it per label space")
    model.eval()
    model.set_classnames(classnames, data.template)
    labels = torch.tensor([it.label for it in data.test], dtype=torch.long)
    rows: list[torch.Tensor] = []
    probe = (mechanism.recording(model, foreground, reference, label_spaces(labels, len(classnames), spaces))
             if spaces is not None else contextlib.nullcontext({}))
    with _per_sample(model.method, record_gates) as (w, s), probe as mechanics, autocast(device, precision):
        text = model.text_features()
        if frozen is not None:
            chunks = (part.to(device) for part in frozen.features.split(batch))
        else:
            chunks = (F.normalize(_captioned(model, captions, data.test[i * batch:(i + 1) * batch]).encode_image(
                          images.to(device)), dim=-1)
                      for i, images in enumerate(eval_batches(data.test, data.image_root, model.backbone.image_size,
                                                              batch, workers, f"{data.name} one pass")))
        for image in chunks:
            rows.append(model.logits_for(image, text)[1].float().cpu())
    logits = torch.cat(rows) if rows else torch.empty(0, len(classnames))
    return ScoreMatrix(
        logits=logits, labels=labels, batch=batch, frozen=frozen,
        image_forwards=0 if frozen is not None else len(data.test),
        gate_w={key: torch.cat(v) for key, v in w.items()}, gate_s={key: torch.cat(v) for key, v in s.items()},
        mechanism=dict(mechanics), mechanism_columns={k: tuple(v) for k, v in (spaces or {}).items()},
    )
