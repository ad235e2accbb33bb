"""The gate table (bmip.report.gates): how much w varies across inputs next to its mean, computed
exactly from the gate files, and drawn as the gate figure's bottom row."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bmip.engine.gates import FORMAT, RunningStats
from bmip.report.figures import draw, read_inputs
from bmip.report.figures.common import figure_style
from bmip.report.figures.gates import RANGE_FLOOR, read_gates
from bmip.report.gates import COLUMNS, gate_table, markdown, write_gate_table
from tests.report.figure_checks import layout_problems


def _entry(values: np.ndarray) -> dict:
    import torch

    stats = RunningStats()
    stats.add(torch.tensor(values, dtype=torch.float64))
    return {"n": int(values.size), "w": stats.summary(), "s": None}


def _write(root: Path, method: str, seed: int, towers: dict[str, dict[int, np.ndarray]]) -> Path:
    path = root / "base2novel" / method / "toys" / f"seed{seed}" / "gates.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = {"base": {t: {str(k): _entry(v) for k, v in blocks.items()} for t, blocks in towers.items()}}
    path.write_text(json.dumps({"format": FORMAT, "protocol": "base2novel", "method": method, "dataset": "toys",
                                "seed": seed, "parts": parts}))
    return path


@pytest.fixture
def values():
    rng = np.random.default_rng(0)
    return {  # (method, seed) -> tower -> block -> the w values of one evaluation
        ("bmip@gate", 1): {"vision": {1: 0.50 + rng.uniform(0, 1e-3, 40)},
                           "text": {1: 0.49 + rng.uniform(0, 2e-3, 10)}},
        ("bmip@gate", 2): {"vision": {1: 0.52 + rng.uniform(0, 1e-3, 40)},
                           "text": {1: 0.47 + rng.uniform(0, 2e-3, 10)}},
        ("bmip@constant_gate", 1): {"vision": {1: np.full(40, 0.51)}, "text": {1: np.full(10, 0.48)}},
        ("bmip@scaled_gate", 1): {"vision": {1: rng.uniform(0.3, 0.7, 40)}, "text": {1: rng.uniform(0.4, 0.6, 10)}},
    }


def test_the_table_separates_variation_across_inputs_from_variation_between_runs(tmp_path, values):
    files = [_write(tmp_path, m, s, towers) for (m, s), towers in values.items()]
    table = gate_table(read_gates(files))
    assert list(table.columns) == COLUMNS
    assert list(dict.fromkeys(table["method"])) == ["bmip@constant_gate", "bmip@gate", "bmip@scaled_gate"]
    row = table[(table["method"] == "bmip@gate") & (table["tower"] == "vision")].iloc[0]
    one, two = values[("bmip@gate", 1)]["vision"][1], values[("bmip@gate", 2)]["vision"][1]
    pooled = np.concatenate([one, two])
    assert row["records"] == 2 and row["n"] == 80
    assert row["w_mean"] == pytest.approx(pooled.mean(), abs=1e-12)
    assert row["w_std"] == pytest.approx(math.sqrt((one.var() + two.var()) / 2), abs=1e-12)  # within runs
    assert row["w_range"] == pytest.approx(max(np.ptp(one), np.ptp(two)), abs=1e-12)  # not max(two) - min(one)
    assert row["w_std_runs"] == pytest.approx(abs(one.mean() - two.mean()) / 2, abs=1e-12)
    assert row["w_std"] ** 2 + row["w_std_runs"] ** 2 == pytest.approx(pooled.var(), abs=1e-12)
    assert math.isnan(row["s_mean"])
    constant = table[table["method"] == "bmip@constant_gate"]
    assert (constant["w_range"] == 0).all() and (constant["w_std"] == 0).all()
    scaled = table[table["method"] == "bmip@scaled_gate"]
    assert (scaled["w_range"].to_numpy() > 50 * table[table["method"] == "bmip@gate"]["w_range"].to_numpy()).all()


def test_csv_and_markdown_are_written_and_say_how_much_w_varies(tmp_path, values):
    files = [_write(tmp_path, m, s, towers) for (m, s), towers in values.items()]
    written = write_gate_table(read_gates(files), tmp_path / "out" / "bmip_gates")
    assert [p.name for p in written] == ["bmip_gates.csv", "bmip_gates.md"]
    back = pd.read_csv(written[0])
    assert list(back.columns) == COLUMNS and len(back) == 6
    text = written[1].read_text()
    assert "bmip@constant_gate: w is the same for every input (a constant gate)" in text
    widest = max(np.ptp(values[("bmip@gate", s)]["text"][1]) for s in (1, 2))  # wider than vision's
    assert f"bmip@gate: w varies across inputs by at most {widest:.1e} (text block 1)" in text
    again = write_gate_table(read_gates(reversed(files)), tmp_path / "again" / "bmip_gates")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


def test_without_gate_files_the_table_is_empty_and_says_so():
    assert gate_table(None).empty and list(gate_table(pd.DataFrame()).columns) == COLUMNS
    assert "No gate files were given" in markdown(gate_table(None))


def test_the_figure_draws_each_variant_range_of_w_across_inputs(tmp_path, values):
    files = [_write(tmp_path, m, s, towers) for (m, s), towers in values.items()]
    (tmp_path / "tables").mkdir()
    inputs = read_inputs(tmp_path / "tables", gate_files=files)
    with figure_style():
        fig = draw("bmip_gates", inputs)
        assert layout_problems(fig) == []
    ranges = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    assert len(ranges) == 3  # one per variant, below its w panels
    drawn = {}
    for ax in ranges:
        for line in ax.lines:
            drawn.setdefault(line.get_gid(), []).append(float(line.get_ydata()[0]))
    table = gate_table(inputs.gates)
    for method, found in drawn.items():
        expected = table[table["method"] == method.split(":", 1)[1]]["w_range"].clip(lower=RANGE_FLOOR)
        assert sorted(found) == pytest.approx(sorted(expected), rel=1e-9)
