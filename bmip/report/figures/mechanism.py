"""What the prompts learn (our reconstruction of the analysis of Ma et al., arXiv 2312.11570):
the pooled token's attention share on the prompt positions and the stability of the prompt term
per block, the foreground share with and without prompts (miniworld's object masks), and the
causal checks' accuracies. Read from the `mechanism.json` of base-to-novel evaluations and the
`causal.json` of `bmip analyze`; values are pooled over label spaces, datasets and seeds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bmip.engine.mechanism import FORMAT, TOWERS
from bmip.report.figures.inputs import Inputs
from bmip.report.figures.common import bar_style, empty, line_style, method_legend, new_figure
from bmip.report.style import method_style, ordered

COLUMNS = ["method", "dataset", "seed", "part", "tower", "block", "n", "lambda", "ratio", "stability",
           "fg_method", "fg_zsclip"]
CHECK_LABELS = {"as_trained": "as trained", "mean_prompt_term": "prompt term\n→ its mean",
                "no_prompt_term": "prompt term\nremoved", "zero_shot_reweighting": "zero-shot\nre-weighting"}


class MechanismFileError(ValueError):
    """A file given to the figures is not a mechanism or causal record."""


def _read(path: Path, fmt: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MechanismFileError(f"{path}: cannot read it ({err}); rerun the job that wrote it") from err
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise MechanismFileError(f"{path}: not a {fmt} file")
    return doc


def read_mechanism(files: Iterable[Path]) -> pd.DataFrame:
    """One row per (record, label space, tower, prompted block), files read in path order."""
    rows = []
    for path in sorted((Path(f) for f in files), key=lambda p: p.as_posix()):
        doc = _read(path, FORMAT)
        for part, towers in sorted((doc["parts"] or {}).items()):  # None: zero-shot CLIP, no prompts
            for tower in TOWERS:
                blocks = (towers.get(tower) or {}).get("blocks", {})
                for block, e in sorted(blocks.items(), key=lambda kv: int(kv[0])):
                    if "lambda" not in e:  # bias tuning: no prompt positions
                        continue
                    fg = e.get("foreground") or {}
                    share = lambda key: fg[key]["over_heads"]["mean"] if fg.get(key) else np.nan  # noqa: E731
                    stability = e["stability"]["over_heads"]
                    rows.append([doc["method"], doc["dataset"], doc["seed"], part, tower, int(block), e["n"],
                                 e["lambda"]["over_heads"]["mean"], e["norm_ratio"]["over_heads"]["mean"],
                                 np.nan if stability is None else stability, share("method"), share("zsclip")])
    return pd.DataFrame(rows, columns=COLUMNS)


def read_causal(files: Iterable[Path]) -> pd.DataFrame:
    """One row per (causal record, check) with base, novel and HM accuracy."""
    from bmip.engine.analyze import FORMAT as CAUSAL_FORMAT

    rows = []
    for path in sorted((Path(f) for f in files), key=lambda p: p.as_posix()):
        doc = _read(path, CAUSAL_FORMAT)
        for check, values in doc["checks"].items():
            rows.append([doc["method"], doc["dataset"], doc["seed"], check, values["base"], values["novel"],
                         values["hm"]])
    return pd.DataFrame(rows, columns=["method", "dataset", "seed", "check", "base", "novel", "hm"])


def _per_block(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """n-weighted mean of `value` per (method, tower, block) over label spaces, datasets and seeds."""
    frame = frame.dropna(subset=[value])
    weighted = frame.assign(_w=frame["n"] * frame[value])
    grouped = weighted.groupby(["method", "tower", "block"])[["_w", "n"]].sum()
    return (grouped["_w"] / grouped["n"]).rename(value).reset_index()


def _block_lines(inputs: Inputs, value: str, ylabel: str, what: str) -> Figure:
    frame = inputs.mechanism
    if frame is None or frame.empty:
        return empty(new_figure("page", 2.0), what)
    stats = _per_block(frame, value)
    methods = ordered(stats["method"])
    fig = new_figure("page", 2.4)
    axes = fig.subplots(1, len(TOWERS), sharey=True)
    for ax, tower in zip(axes, TOWERS):
        part = stats[stats["tower"] == tower]
        for method in methods:
            rows = part[part["method"] == method].sort_values("block")
            if not rows.empty:
                ax.plot(rows["block"], rows[value], **line_style(method))
        ax.set_title(f"{tower} tower")
        ax.set_xlabel("block k")
        if not part.empty:
            ax.set_xticks(sorted(part["block"].unique()))
        else:
            ax.text(0.5, 0.5, "no method prompts this tower", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel(ylabel)
    method_legend(fig, methods, "page")
    return fig


def prompt_share(inputs: Inputs) -> Figure:
    """lambda per block and tower: the pooled token's attention share on the prompt positions."""
    return _block_lines(inputs, "lambda", "λ: pooled token's attention\non the prompt positions", "prompt methods")


def prompt_stability(inputs: Inputs) -> Figure:
    """Mean pairwise cosine of the prompt term across inputs, per block and tower."""
    return _block_lines(inputs, "stability", "prompt-term stability\n(mean pairwise cosine)", "prompt methods")


def foreground_share(inputs: Inputs) -> Figure:
    """CLS attention share on foreground patches per vision block: each method against zero-shot CLIP
    on the same images (left), and the shift (right)."""
    frame = inputs.mechanism
    frame = frame[(frame["tower"] == "vision") & frame["fg_method"].notna()] if frame is not None and not frame.empty else None
    if frame is None or frame.empty:
        return empty(new_figure("page", 2.0), "object masks (the foreground share is absent, not estimated)")
    shares = _per_block(frame, "fg_method").merge(_per_block(frame, "fg_zsclip"), on=["method", "tower", "block"])
    methods = ordered(shares["method"])
    fig = new_figure("page", 2.4)
    left, right = fig.subplots(1, 2)
    for method in methods:
        rows = shares[shares["method"] == method].sort_values("block")
        style = line_style(method)
        left.plot(rows["block"], 100 * rows["fg_method"], **style)
        right.plot(rows["block"], 100 * (rows["fg_method"] - rows["fg_zsclip"]), **style)
    # zero-shot CLIP on the same images, in its own colour (the same for every method's test set)
    zero_shot = _per_block(frame.assign(method="zsclip"), "fg_zsclip").sort_values("block")
    left.plot(zero_shot["block"], 100 * zero_shot["fg_zsclip"], **line_style("zsclip"))
    right.axhline(0, color="#9a9a9a", linewidth=0.6, linestyle="--")
    blocks = sorted(shares["block"].unique())
    for ax, title, ylabel in ((left, "each method and zero-shot CLIP", "foreground share of CLS\npatch attention (%)"),
                              (right, "shift from zero-shot", "shift (points)")):
        ax.set_xticks(blocks)
        ax.set(title=title, xlabel="vision block k", ylabel=ylabel)
    method_legend(fig, ["zsclip", *methods], "page")
    return fig


def causal_checks(inputs: Inputs) -> Figure:
    """Base-to-novel HM per intervention (mean over the analysed datasets and seeds), one bar per method."""
    frame = inputs.causal
    if frame is None or frame.empty:
        return empty(new_figure("page", 2.0), "causal checks (bmip analyze)")
    methods = ordered(frame["method"])
    checks = [c for c in CHECK_LABELS if c in set(frame["check"])]
    means = frame.groupby(["method", "check"])["hm"].mean()
    fig = new_figure("page", 2.4)
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        x = np.arange(len(checks)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(x, [means.get((method, c), np.nan) for c in checks], width * 0.92, **bar_style(method),
               label=method_style(method).label)
    ax.set_xticks(np.arange(len(checks)), [CHECK_LABELS[c] for c in checks])
    ax.set_ylabel("base-to-novel HM (%)")
    ax.grid(axis="x", visible=False)
    method_legend(fig, methods, "page", kind="bar")
    return fig
