"""The paper's figures, as PNG and PDF, from the aggregated tables, the training logs and BMIP's gates,
and the "what the prompts learn" figures from the mechanism and causal records (a reconstruction).

Each figure is one function `(Inputs) -> Figure` in a small module of this package, registered
here by name and imported only when drawn (the workflow reads `FIGURES` without matplotlib).
Inputs are read in a fixed order whatever order the files are given in, and saving strips
varying metadata: the same results give byte-identical files.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from bmip.report.figures.inputs import Inputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# name -> "<module in bmip/report/figures>.<function>"
_DRAW: dict[str, str] = {
    "hm_per_dataset": "accuracy.hm_per_dataset",
    "hm_radar": "accuracy.hm_radar",
    "base_vs_novel": "accuracy.base_vs_novel",
    "open_world": "accuracy.open_world",
    "open_world_ratio": "accuracy.open_world_ratio",
    "domain_generalization": "accuracy.domain_generalization",
    "training_curves": "training.training_curves",
    "bmip_gates": "gates.bmip_gates",
    "prompt_share": "mechanism.prompt_share",
    "prompt_stability": "mechanism.prompt_stability",
    "foreground_share": "mechanism.foreground_share",
    "causal_checks": "mechanism.causal_checks",
}
FIGURES: tuple[str, ...] = tuple(_DRAW)
# The report section each figure belongs to (the others: "Figures").
SECTIONS = {name: "What the prompts learn" for name in
            ("prompt_share", "prompt_stability", "foreground_share", "causal_checks")}


def read_inputs(tables_dir: Path, train_logs: Iterable[Path] = (), gate_files: Iterable[Path] = (),
                mechanism_files: Iterable[Path] = (), causal_files: Iterable[Path] = ()) -> Inputs:
    """Tables from `<tables_dir>/<table>.csv`, `train_log.csv`, `gates.json`, `mechanism.json` and
    `causal.json` files."""
    import pandas as pd

    from bmip.report.figures.gates import read_gates
    from bmip.report.figures.mechanism import read_causal, read_mechanism
    from bmip.report.figures.training import read_train_logs
    from bmip.report.tables import TABLES

    tables = {}
    for name in TABLES:
        path = Path(tables_dir) / f"{name}.csv"
        tables[name] = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    return Inputs(tables, read_train_logs(train_logs), read_gates(gate_files), read_mechanism(mechanism_files),
                  read_causal(causal_files))


def draw(name: str, inputs: Inputs) -> "Figure":
    """One figure by name (call inside `common.figure_style()` to inspect it as it is saved)."""
    if name not in _DRAW:
        raise KeyError(f"unknown figure {name!r}; choose from {list(FIGURES)}")
    module, function = _DRAW[name].rsplit(".", 1)
    return getattr(importlib.import_module(f"bmip.report.figures.{module}"), function)(inputs)


def write_figures(tables_dir: Path, train_logs: Iterable[Path], out_dir: Path,
                  gate_files: Iterable[Path] = (), mechanism_files: Iterable[Path] = (),
                  causal_files: Iterable[Path] = ()) -> list[Path]:
    """Draw every figure into `<out_dir>/<figure>.png` and `.pdf`, and the gate figure's table into
    `<out_dir>/bmip_gates.csv` and `.md` (bmip.report.gates); returns the paths written."""
    from bmip.report.figures.common import figure_style, save
    from bmip.report.gates import write_gate_table

    inputs = read_inputs(tables_dir, train_logs, gate_files, mechanism_files, causal_files)
    written = []
    with figure_style():
        for name in FIGURES:
            written += save(draw(name, inputs), Path(out_dir) / name)
    return written + write_gate_table(inputs.gates, Path(out_dir) / "bmip_gates")
