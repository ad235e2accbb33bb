"""BMIP's gates on record: what each deep layer mixed, over a whole evaluation (`gates.json`).

In every deep block k of each tower, BMIP fills prompt slot i with
w_i * (the block's own prompt) + (1 - w_i) * (the other tower's prompt, projected), where
w_i = sigmoid(a_k * s_i + b_k) and s_i is the attention the block's content tokens give to slot i
(under BMIP's `gate_statistic: scaled`, that attention against uniform: s is the statistic the gate
reads). An evaluation of a run that gates (`bmip`, any `bmip+<regulariser>`, and the ablation
variants whose options gate: `bmip@gate`, `bmip@constant_gate`, `bmip@scaled_gate`, ...; `has_gates`
on the run's recipe options) writes the statistics of w and s per tower and block beside its
metrics.json; other runs write a record that they have none.

Vision values are one per test image and prompt slot (one per batch and slot under
`official_compat`, whose statistic is the batch mean); text values one per class prompt and slot,
since the class prompts go through the text tower once per label space. Under `official_compat`
the text statistic is the SOS row, exactly 0, and not recorded (`s` is null).

Format `bmip-gates/1` (JSON):

    {"format": "bmip-gates/1", "protocol": ..., "method": ..., "dataset": ..., "seed": ...,
     "parts": {<label space, as in metrics.json "results": base, novel, joint or all>: {
         "vision": {"<block k>": {"n": <values>, "w": STATS, "s": STATS or null}, ...},
         "text": {...}}}}
    STATS = {"mean": ..., "std": ... (population), "min": ..., "max": ...}

Only the protocol's own label spaces are recorded, not the open-world ratio sweep. This module
imports no torch at load time: the audit and the figures read gate files without it.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from bmip.engine.records import header_problems
from bmip.methods import records_gates

if TYPE_CHECKING:
    import torch

FORMAT = "bmip-gates/1"
TOWERS = ("vision", "text")
STATS = ("mean", "std", "min", "max")


def has_gates(method: str, options: Mapping[str, Any] | None = None) -> bool:
    """True for the methods whose evaluations write gates.json (the registry's trait,
    bmip.methods.records_gates): BMIP and BMIP + a regulariser; with a run's method options (its
    recipe's), only where they mix by a gate (not `aggregation: sum`, ...). An ablation variant
    (`bmip@gate`) counts as gated only with its options: the evaluation, the audit and the workflow
    (gated_files) all pass them."""
    return records_gates(method, options)


class RunningStats:
    """Count, sum, sum of squares, min and max of every value added, in float64 on the values'
    device (no host synchronisation per batch; read once by `summary`)."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: "torch.Tensor | None" = None  # sum, sum of squares, -min, max

    def add(self, values: "torch.Tensor") -> None:
        import torch

        v = values.detach().double().flatten()
        if v.numel():
            self.n += v.numel()
            now = torch.stack([v.sum(), (v * v).sum(), -v.min(), v.max()])
            self.sums = now if self.sums is None else torch.cat([self.sums[:2] + now[:2], torch.maximum(self.sums[2:], now[2:])])

    def summary(self) -> dict[str, float]:
        total, squares, low, high = self.sums.tolist()
        mean = total / self.n
        return {"mean": mean, "std": math.sqrt(max(squares / self.n - mean * mean, 0.0)), "min": -low, "max": high}


class _Recording(dict):
    """What BMIP's hooks write into (`recorded_gates[(tower, k)] = values`): running statistics."""

    def __setitem__(self, key: tuple[str, int], values: "torch.Tensor") -> None:
        if key not in self:
            super().__setitem__(key, RunningStats())
        self[key].add(values)


@contextlib.contextmanager
def recording(method: Any) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
    """Record w and s of every forward pass inside the block; the yielded dict is filled, per
    tower and block, with {"n", "w", "s"} when the block exits."""
    w, s = _Recording(), _Recording()
    method.recorded_gates, method.recorded_statistics = w, s
    result: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        yield result
    finally:
        method.recorded_gates = method.recorded_statistics = None
    for tower in TOWERS:
        blocks = sorted(k for t, k in w if t == tower)
        result[tower] = {str(k): {"n": w[(tower, k)].n, "w": w[(tower, k)].summary(),
                                  "s": s[(tower, k)].summary() if (tower, k) in s else None} for k in blocks}


# ---------------------------------------------------------------- reading and checking (no torch)
def pool(entries: Iterable[dict[str, Any]], key: str = "w") -> dict[str, float] | None:
    """Statistics of `key` over the union of the values behind several entries ({"n", key: STATS})."""
    entries = [e for e in entries if e.get(key) is not None and e.get("n")]
    if not entries:
        return None
    n = sum(e["n"] for e in entries)
    mean = sum(e["n"] * e[key]["mean"] for e in entries) / n
    second = sum(e["n"] * (e[key]["std"] ** 2 + e[key]["mean"] ** 2) for e in entries) / n
    return {"mean": mean, "std": math.sqrt(max(second - mean * mean, 0.0)),
            "min": min(e[key]["min"] for e in entries), "max": max(e[key]["max"] for e in entries)}


def problems(doc: Any, identity: dict[str, Any], depth: int | None) -> list[str]:
    """What is wrong with a gate document for the run `identity` (protocol, method, dataset, seed)
    whose BMIP depth is `depth` (if known): its protocol's label spaces (bmip.engine.records.PARTS), and
    in every part, every deep block 1..depth-1 of both towers (text: 1..depth-2 for the released
    code's variant, which stops one block early), each with 0 < w < 1."""
    out, recorded = header_problems(doc, FORMAT, identity)
    if recorded is None:
        return out
    for part, towers in sorted(recorded.items()):
        for tower in TOWERS:
            blocks = (towers or {}).get(tower) or {}
            found = sorted(int(k) for k in blocks if str(k).isdigit())
            if depth is None:
                if not found:
                    out.append(f"{part}/{tower}: no deep block recorded")
            else:
                allowed = [list(range(1, last + 1)) for last in ((depth - 1,) if tower == "vision" else (depth - 1, depth - 2))]
                if found not in allowed or len(found) != len(blocks):
                    out.append(f"{part}/{tower}: blocks {sorted(blocks)}, expected {allowed[0]} (depth {depth})")
            for k, entry in sorted(blocks.items()):
                w = entry.get("w") or {}
                if not (isinstance(entry.get("n"), int) and entry["n"] > 0 and all(s in w for s in STATS)):
                    out.append(f"{part}/{tower}/{k}: needs n > 0 and w {list(STATS)}")
                elif not 0 < w["min"] <= w["mean"] <= w["max"] < 1 or w["std"] < 0:
                    out.append(f"{part}/{tower}/{k}: w must lie in (0, 1) with min <= mean <= max (got {w})")
    return out


def write_gates(path: Path, identity: dict[str, Any], parts: dict[str, Any]) -> None:
    """Write a gate document atomically."""
    from bmip.io import write_json

    write_json(path, {"format": FORMAT, **identity, "parts": parts})
