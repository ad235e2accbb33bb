"""A small synthetic experiment on disk: metrics.json, train_log.csv, gates.json, mechanism.json and
causal.json files with plausible numbers, for any methods, datasets, seeds and protocols (figures
and tables tests)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bmip.engine import mechanism
from bmip.engine.gates import FORMAT, has_gates
from bmip.engine.records import PARTS

METHODS = ("zsclip", "coop", "cocoop", "lang", "vpt", "ivlp", "maple", "bmip", "ivlp+promptsrc", "maple+promptsrc",
           "bmip+promptsrc", "ivlp+coprompt", "maple+coprompt", "bmip+coprompt")
DATASETS = ("toys", "stickers", "aerial", "fabrics", "nightcam", "pixelart")
TARGETS = ("objects_v2", "objects_sketch", "objects_a", "objects_r")
PROTOCOLS = ("base2novel", "open_world", "cross_dataset", "domain_generalization")


@dataclass
class Synthetic:
    metrics: list[Path] = field(default_factory=list)
    train_logs: list[Path] = field(default_factory=list)
    gates: list[Path] = field(default_factory=list)
    mechanism: list[Path] = field(default_factory=list)
    causal: list[Path] = field(default_factory=list)


def _split(rng: np.random.Generator, centre: float, heads: int = 2) -> dict:
    stats = lambda: {"n": 400, "mean": float(np.clip(centre + rng.normal(0, 0.03), 0.01, 0.99)),  # noqa: E731
                     "std": float(rng.uniform(0.01, 0.05))}
    return {"per_head": [stats() for _ in range(heads)], "over_heads": stats()}


def _mechanism_doc(rng: np.random.Generator, method: str, dataset: str, seed: int, layers: int) -> dict:
    """A record with both towers prompted in every block (vision with foreground shares)."""
    def block(k: int, tower: str) -> dict:
        stability = float(np.clip(0.98 - 0.04 * k + rng.normal(0, 0.01), -1, 1))
        fg = ({"method": _split(rng, 0.55 + 0.01 * k), "zsclip": _split(rng, 0.52)} if tower == "vision" else None)
        return {"n": 400, "heads": 2, "lambda": _split(rng, 0.3 - 0.02 * k), "norm_ratio": _split(rng, 0.4),
                "stability": {"per_head": [stability, stability], "over_heads": stability}, "foreground": fg}
    parts = {part: {tower: {"layers": layers, "blocks": {str(k): block(k, tower) for k in range(layers)}}
                    for tower in ("vision", "text")} for part in ("base", "novel")}
    return {"format": mechanism.FORMAT, "protocol": "base2novel", "method": method, "dataset": dataset, "seed": seed,
            "masks": True, "parts": parts}


def _stats(rng: np.random.Generator, centre: float, spread: float) -> dict[str, float]:
    mean = float(np.clip(centre + rng.normal(0, 0.05), 0.05, 0.95))
    std = spread * float(rng.uniform(0.5, 1.5))
    return {"mean": mean, "std": std, "min": max(1e-3, mean - 2.5 * std), "max": min(1 - 1e-3, mean + 2.5 * std)}


def make(root: Path, methods=METHODS, datasets=DATASETS, seeds=(1, 2, 3), protocols=PROTOCOLS, targets=TARGETS,
         epochs: int = 3, depth: int = 3, seed: int = 0) -> Synthetic:
    """Write the files under `root` in the results layout; returns their paths."""
    rng = np.random.default_rng(seed)
    out = Synthetic()
    level = {m: 55 + 2.2 * i for i, m in enumerate(methods)}
    hard = {d: rng.uniform(-15, 10) for d in (*datasets, *targets)}

    def write(path: Path, doc: dict) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        return path

    for method in methods:
        for protocol in protocols:
            evaluated = datasets if protocol in ("base2novel", "open_world") else targets
            for dataset in evaluated:
                for s in seeds:
                    centre = level[method] + hard[dataset]
                    acc = lambda shift=0.0: float(np.clip(centre + shift + rng.normal(0, 1.2), 1, 99))  # noqa: E731
                    if protocol == "base2novel":
                        summary = {"base": acc(12), "novel": acc(3)}
                        summary["hm"] = 2 * summary["base"] * summary["novel"] / (summary["base"] + summary["novel"])
                    elif protocol == "open_world":
                        summary = {"accuracy": acc(-8), "base": acc(-2), "novel": acc(-14)}
                        summary["hm"] = 2 * summary["base"] * summary["novel"] / (summary["base"] + summary["novel"])
                        summary["openworld_auc"] = 0.9 * summary["base"] * summary["novel"] / 100  # no draw
                        summary |= {f"ratio_{r}": acc(-20 + r / 5) for r in (100, 50, 0)}
                    else:
                        summary = {"accuracy": acc(-5)}
                    folder = root / protocol / method / dataset / f"seed{s}"
                    out.metrics.append(write(folder / "metrics.json", {"protocol": protocol, "method": method,
                                                                      "dataset": dataset, "seed": s, "summary": summary}))
                    if has_gates(method):
                        parts = {part: {tower: {str(k): {"n": 400, "w": _stats(rng, 0.5 + (0.12 * k if tower == "vision"
                                                                                             else -0.08 * k), 0.04),
                                                         "s": _stats(rng, 0.2, 0.05)}
                                                for k in range(1, depth)}
                                        for tower in ("vision", "text")}
                                 for part in PARTS[protocol]}
                        doc = {"format": FORMAT, "protocol": protocol, "method": method, "dataset": dataset, "seed": s,
                               "parts": parts}
                        out.gates.append(write(folder / "gates.json", doc))
                    if protocol == "base2novel" and mechanism.has_mechanism(method):
                        out.mechanism.append(write(folder / "mechanism.json",
                                                   _mechanism_doc(rng, method, dataset, s, depth + 1)))
                        if dataset == datasets[0] and s == seeds[0] and method.split("+")[0] != "biastune":
                            checks = {c: {"base": acc(12 - 4 * i), "novel": acc(3 - 3 * i)} for i, c in
                                      enumerate(("as_trained", "mean_prompt_term", "no_prompt_term",
                                                 "zero_shot_reweighting"))}
                            for v in checks.values():
                                v["hm"] = 2 * v["base"] * v["novel"] / (v["base"] + v["novel"])
                            causal = root / "analysis" / method / dataset / f"seed{s}" / "causal.json"
                            out.causal.append(write(causal, {"format": "bmip-causal/1", "protocol": "base2novel",
                                                             "method": method, "dataset": dataset, "seed": s,
                                                             "checks": checks}))
        trainings = [("base2novel", d) for d in datasets if "base2novel" in protocols or "open_world" in protocols]
        if {"cross_dataset", "domain_generalization"} & set(protocols):
            trainings.append(("cross_dataset", "objects"))
        for training, dataset in trainings:
            if method == "zsclip":
                continue
            for s in seeds:
                n = epochs if training == "base2novel" else 1
                loss = 2.5 - 0.08 * level[method] / 10 + np.cumsum(-rng.uniform(0.1, 0.4, n))
                path = root / "train" / training / method / dataset / f"seed{s}" / "train_log.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                rows = "".join(f"{e + 1},0.01,{loss[e]:.4f},{50 + 5 * e},\n" for e in range(n))
                path.write_text("epoch,lr,loss,train_accuracy,val_accuracy\n" + rows)
                out.train_logs.append(path)
    return out
