"""BMIP's gate table: how much the mixing weight w varies across inputs, next to its mean.

Per method (or ablation variant), tower and deep block, from the gate files `bmip figures` is
given (bmip.engine.gates; the workflow gives the base-to-novel ones), one row:

    records      gate records pooled: datasets x seeds x label spaces
    n            values pooled: test images (vision) or class prompts (text) x prompt slots
    w_mean       the mean of w over all of them
    w_std        the standard deviation of w across inputs within a record (root of the
                 n-weighted mean of the records' variances): what the attention statistic moves
    w_range      the largest max - min of w across the inputs of one record
    w_std_runs   the standard deviation of the records' means (between datasets, seeds, label
                 spaces); w_std² + w_std_runs² is the variance of all values pooled
    s_mean       the mean of the gate's statistic s (empty where none is recorded)

A gate whose w_range is ~1e-3 is a constant in practice: the paper's statistic is a mean attention
weight, O(1/L), and the gate's weight a starts at 0 and moves by about the learning rate per Adam
step (docs/methods.md, "BMIP"). w is computed in float32, whose spacing near 0.5 is 6e-8.

`write_gate_table` writes `<stem>.csv` (full precision) and `<stem>.md` (rounded, with the largest
range of each method); `bmip figures` writes them beside the gate figure (figures/bmip_gates.*).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bmip.engine.gates import TOWERS
from bmip.io import atomic_write
from bmip.report.style import label, ordered

COLUMNS = ["method", "tower", "block", "records", "n", "w_mean", "w_std", "w_range", "w_std_runs", "s_mean"]


def _row(records: pd.DataFrame) -> dict[str, float]:
    n = records["n"].astype(float)
    total = float(n.sum())
    mean = float((n * records["w_mean"]).sum() / total)
    within = float((n * records["w_std"] ** 2).sum() / total)
    between = float((n * (records["w_mean"] - mean) ** 2).sum() / total)
    s = records.dropna(subset=["s_mean"])
    s_mean = float((s["n"] * s["s_mean"]).sum() / s["n"].sum()) if len(s) else math.nan
    return {"records": len(records), "n": int(total), "w_mean": mean, "w_std": math.sqrt(within),
            "w_range": float((records["w_max"] - records["w_min"]).max()), "w_std_runs": math.sqrt(between),
            "s_mean": s_mean}


def gate_table(gates: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (method, tower, block) from the rows of `bmip.report.figures.gates.read_gates`,
    methods in display order."""
    if gates is None or gates.empty:
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    for method in ordered(gates["method"]):
        for tower in TOWERS:
            part = gates[(gates["method"] == method) & (gates["tower"] == tower)]
            for block in sorted(part["block"].unique()):
                rows.append({"method": method, "tower": tower, "block": int(block),
                             **_row(part[part["block"] == block])})
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(table: pd.DataFrame) -> str:
    """The table rounded for reading, and per method the largest range of w across inputs."""
    head = ("## bmip_gates\n\nBMIP's mixing weight w per method, tower and deep block: its mean, and how much it "
            "varies across inputs (w_std, w_range: within one evaluation; w_std_runs: between evaluations).\n\n")
    if table.empty:
        return head + "No gate files were given (no BMIP evaluation with a gate).\n"
    shown = table.copy()
    shown["method"] = shown["method"].map(label)
    for column in ("w_mean", "s_mean"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    for column in ("w_std", "w_range", "w_std_runs"):
        shown[column] = shown[column].map(lambda v: f"{v:.1e}")
    notes = []
    for method in dict.fromkeys(table["method"]):
        rows = table[table["method"] == method]
        top = rows.loc[rows["w_range"].idxmax()]
        varies = (f"w varies across inputs by at most {top['w_range']:.1e} ({top['tower']} block {top['block']})"
                  if top["w_range"] > 0 else "w is the same for every input (a constant gate)")
        notes.append(f"- {label(method)}: {varies}; mean w per block {rows['w_mean'].min():.4f} to "
                     f"{rows['w_mean'].max():.4f}")
    return head + shown.to_markdown(index=False, disable_numparse=True) + "\n\n" + "\n".join(notes) + "\n"


def write_gate_table(gates: pd.DataFrame | None, stem: Path) -> list[Path]:
    """`<stem>.csv` and `<stem>.md`, atomically; the same gate rows give the same bytes."""
    table = gate_table(gates)
    csv, md = Path(stem).with_suffix(".csv"), Path(stem).with_suffix(".md")
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    atomic_write(md, lambda tmp: tmp.write_text(markdown(table)))
    return [csv, md]
