"""Every figure, from a synthetic experiment of all known methods plus an unknown one: nothing
collides, each method has one colour and place everywhere, epochs are whole numbers, missing
pieces still render, and the same inputs in any order give the same bytes."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bmip.report.figures import FIGURES, draw, read_inputs, write_figures
from bmip.report.figures.common import figure_style
from bmip.report.style import label, method_style, ordered
from bmip.report.tables import write_tables
from tests.report import synthetic
from tests.report.figure_checks import layout_problems, legend_methods, method_colours, style_colour

UNKNOWN = "mymethod+extra"  # a method style.yaml does not list
ALL = (*synthetic.METHODS, UNKNOWN)


def _experiment(root: Path, **changes):
    made = synthetic.make(root / "exp", **changes)
    write_tables(made.metrics, root / "tables")
    gates = [g for g in made.gates if g.parts[-5] == "base2novel"]
    return made, gates


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    made, gates = _experiment(root, methods=ALL)
    inputs = read_inputs(root / "tables", made.train_logs, gates, made.mechanism, made.causal)
    with figure_style():
        figures = {name: draw(name, inputs) for name in FIGURES}
        for fig in figures.values():
            fig.canvas.draw()
    return figures


@pytest.mark.parametrize("name", FIGURES)
def test_no_text_overlaps_text_or_data_and_legends_stay_outside(full, name):
    with figure_style():
        assert layout_problems(full[name]) == []


def test_a_method_has_the_same_colour_and_order_in_every_figure(full):
    for name, fig in full.items():
        colours = method_colours(fig)
        assert colours, f"{name}: no method drawn"
        for method, found in colours.items():
            assert found == {style_colour(method)}, (name, method, found)
        entries = legend_methods(fig)
        if name == "bmip_gates":  # its legend names datasets; methods are its columns, in order
            titles = [ax.get_title().replace("\n", "") for ax in fig.axes if ax.get_title()]  # may wrap
            assert titles == [label(m) for m in ordered(m for m in ALL if m.startswith("bmip"))]
            continue
        shown = [m for m in ordered(ALL) if label(m) in {text for text, _ in entries}]
        assert [text for text, _ in entries] == [label(m) for m in shown], name
        assert [colour for _, colour in entries] == [style_colour(m) for m in shown], name
    bars = sorted((patch.get_x(), patch.get_gid().split(":", 1)[1])
                  for patch in full["hm_per_dataset"].axes[0].patches if patch.get_gid())
    first_group = [method for _, method in bars[:len(ALL)]]
    assert first_group == ordered(ALL)
    assert method_style(UNKNOWN).family == "other" and ordered(ALL)[-1] == UNKNOWN


def test_emphasised_methods_draw_heavier_lines_than_baselines(full):
    widths = {}
    for line in full["open_world_ratio"].axes[0].lines:
        widths[line.get_gid().split(":", 1)[1]] = line.get_linewidth()
    assert min(widths[m] for m in ("bmip", "bmip+promptsrc", "bmip+coprompt")) > max(
        widths[m] for m in widths if not method_style(m).emphasis)


def test_epoch_ticks_are_whole_numbers(full):
    fig = full["training_curves"]
    with figure_style():
        fig.canvas.draw()
        checked = 0
        for ax in fig.axes:
            low, high = sorted(ax.get_xlim())
            for text in ax.get_xticklabels():
                if text.get_text() and low <= text.get_position()[0] <= high:
                    assert text.get_text().lstrip("−-").isdigit(), text.get_text()
                    checked += 1
    assert checked >= 6


CASES = {
    "one method": {"methods": ("bmip",)},
    "one dataset": {"datasets": ("toys",), "targets": ("objects_v2",)},
    "one seed": {"seeds": (1,)},
    "no open-world protocol": {"protocols": ("base2novel", "cross_dataset", "domain_generalization")},
    "no base-to-novel protocol": {"protocols": ("open_world", "cross_dataset")},
    "no BMIP method": {"methods": ("zsclip", "coop", "maple")},
}


@pytest.mark.parametrize("case", CASES)
def test_figures_render_with_pieces_missing(tmp_path, case):
    made, gates = _experiment(tmp_path, **CASES[case])
    inputs = read_inputs(tmp_path / "tables", made.train_logs, gates, made.mechanism, made.causal)
    with figure_style():
        for name in FIGURES:
            assert layout_problems(draw(name, inputs)) == [], (case, name)


def test_same_inputs_in_any_order_give_identical_png_and_pdf_bytes(tmp_path):
    made, gates = _experiment(tmp_path, methods=("zsclip", "coop", "maple", "bmip", "bmip+promptsrc", UNKNOWN),
                              datasets=("toys", "stickers", "aerial"))
    first = write_figures(tmp_path / "tables", made.train_logs, tmp_path / "a", gates, made.mechanism, made.causal)
    logs, shuffled, analysed = list(made.train_logs), list(gates), list(made.mechanism)
    random.Random(1).shuffle(logs)
    random.Random(2).shuffle(shuffled)
    random.Random(3).shuffle(analysed)
    cmd = [sys.executable, "-m", "bmip.cli", "figures", "--tables", str(tmp_path / "tables"), "--gates",
           *map(str, shuffled), "--train-logs", *map(str, logs), "--mechanism", *map(str, analysed),
           "--causal", *map(str, made.causal), "--out", str(tmp_path / "b")]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(first) == 2 * len(FIGURES) + 2  # and the gate figure's table, bmip_gates.csv and .md
    for path in first:
        assert (tmp_path / "b" / path.name).read_bytes() == path.read_bytes(), path.name
    pdf = (tmp_path / "a" / "bmip_gates.pdf").read_bytes()
    assert b"/CreationDate" not in pdf and b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType, embedded


def test_the_layout_check_sees_collisions():
    """The checks above could fail: a legend over bars, labels printed over one another and over a line."""
    from bmip.report.figures.common import new_figure

    with figure_style():
        fig = new_figure("column", 2.5)
        ax = fig.add_subplot()
        ax.bar([0, 1, 2], [50, 90, 70], label="bars", gid="method:coop")
        ax.plot([0, 2], [10, 95], color="black")
        ax.legend(loc="upper left")
        ax.annotate("LMaPLe", (1, 40))
        ax.annotate("CBMIP+PromptSRC", (1.02, 41))
        problems = layout_problems(fig)
    assert any("'LMaPLe' and 'CBMIP+PromptSRC' overlap" in p for p in problems), problems
    assert any("a legend lies over the data area" in p for p in problems), problems
    assert any("'LMaPLe' overlaps plotted data" in p for p in problems), problems
