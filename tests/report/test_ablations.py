"""Ablation tables and figures, and the seeded paired bootstrap behind their intervals."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bmip.ablations import ablations
from bmip.config import validate
from bmip.report.ablations import write_ablations
from bmip.report.statistics import paired_bootstrap

DATASETS = ["toys", "stickers", "aerial"]


def _config(**ablation):
    config = yaml.safe_load(Path("config/config.yaml").read_text())
    config["ablations"] = {"mixing": {"method": "bmip", "datasets": DATASETS,
                                      "variants": {"gate": {}, "sum": {"options": {"aggregation": "sum"}},
                                                   "mean": {"options": {"aggregation": "mean"}}}, **ablation}}
    config["ablations"]["mixing"] = {k: v for k, v in config["ablations"]["mixing"].items() if v is not None}
    return validate(config)


def _metrics(root: Path, method: str, shift: float, rng: np.random.Generator, base: dict) -> list[Path]:
    """base2novel metrics files of one method: a per-(dataset, seed) level shared by every method
    (the pairing), plus `shift` and a zero-mean noise of ±0.4 (so the true mean difference is
    `shift` exactly); base = novel, so a run's HM is that accuracy."""
    files = []
    noise = iter(np.tile([-0.4, 0.0, 0.4], 3) if shift else np.zeros(9))
    for dataset in DATASETS:
        for seed in (1, 2, 3):
            value = base[(dataset, seed)] + shift + next(noise)
            path = root / "base2novel" / method / dataset / f"seed{seed}" / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"protocol": "base2novel", "method": method, "dataset": dataset, "seed": seed,
                                        "summary": {"base": value, "novel": value, "hm": value}}))
            files.append(path)
    return files


def test_the_interval_covers_a_known_difference_and_is_byte_identical_on_rerun():
    rng = np.random.default_rng(7)
    reference = rng.normal(70, 8, size=27)  # large between-pair spread: only pairing removes it
    variant = reference + 2.0 + rng.normal(0, 0.5, size=27)
    first = paired_bootstrap(variant - reference)
    mean, low, high = first
    assert low < 2.0 < high and low > 0  # covers the true difference, excludes no difference
    assert high - low < 1.0  # the pairing: the 8-point spread of the levels does not enter
    assert repr(paired_bootstrap(variant - reference)) == repr(first)
    noise = paired_bootstrap(rng.normal(0, 1, size=27))
    assert noise[1] < 0 < noise[2]
    other_seed = paired_bootstrap(variant - reference, seed=1)
    assert other_seed != first and abs(other_seed[1] - low) < 0.2


def test_ablation_table_and_figure_with_paired_differences(tmp_path):
    config = _config()
    rng = np.random.default_rng(0)
    base = {(d, s): float(rng.uniform(50, 80)) for d in DATASETS for s in (1, 2, 3)}
    files = _metrics(tmp_path / "runs", "bmip@gate", 0.0, rng, base)
    files += _metrics(tmp_path / "runs", "bmip@sum", -3.0, rng, base)
    files += _metrics(tmp_path / "runs", "bmip@mean", 0.5, rng, base)
    outs = []
    for name in ("a", "b"):
        written = write_ablations(config, files, tmp_path / name / "tables", tmp_path / name / "figures")
        outs.append({p.name: p.read_bytes() for p in written})
        for ext in ("md", "tex"):
            assert (tmp_path / name / "tables" / f"ablation_mixing.{ext}").is_file()
    assert outs[0] == outs[1] and {"ablation_mixing.csv", "ablation_mixing.png", "ablation_mixing.pdf"} <= set(outs[0])
    import pandas as pd

    table = pd.read_csv(tmp_path / "a" / "tables" / "ablation_mixing.csv")
    average = table[table["dataset"].str.startswith("Average over 3")].set_index("variant")
    assert list(average.index) == ["gate", "sum", "mean"]
    assert average.loc["gate", "reference"] and pd.isna(average.loc["gate", "delta"])
    assert average.loc["sum", "delta"] == pytest.approx(-3.0, abs=1e-4)  # the CSV's 4 decimals
    assert average.loc["sum", "delta_low"] < -3.0 < average.loc["sum", "delta_high"] < 0
    assert average.loc["mean", "delta_low"] < 0.5 < average.loc["mean", "delta_high"]
    assert average.loc["sum", "pairs"] == 9
    per_dataset = table[(table["variant"] == "sum") & (table["dataset"] == "toys")].iloc[0]
    assert per_dataset["pairs"] == 3 and per_dataset["seeds"] == 3
    md = (tmp_path / "a" / "tables" / "ablation_mixing.md").read_text()
    assert "reference" in md and "[95% CI]" in md and "bootstrap" in md


def test_a_sweep_is_one_variant_per_value(tmp_path):
    config = _config(variants=None, sweep={"depth": [1, 2, 3]}, reference="depth=3")
    (ablation,) = ablations(config)
    assert ablation.names == ["bmip@depth=1", "bmip@depth=2", "bmip@depth=3"] and ablation.reference == "bmip@depth=3"
    rng = np.random.default_rng(1)
    base = {(d, s): float(rng.uniform(50, 80)) for d in DATASETS for s in (1, 2, 3)}
    files = [f for i, name in enumerate(ablation.names) for f in _metrics(tmp_path, name, i - 2.0, rng, base)]
    written = write_ablations(config, files, tmp_path / "t", tmp_path / "f")
    assert (tmp_path / "f" / "ablation_mixing.png").is_file() and written


def test_the_audit_recomputes_an_ablation_table_and_names_an_edited_one(tmp_path):
    from bmip.audit.findings import Findings
    from bmip.audit.layout import Experiment
    from bmip.audit.recompute import check_ablation_tables

    config = _config()
    rng = np.random.default_rng(2)
    base = {(d, s): float(rng.uniform(50, 80)) for d in DATASETS for s in (1, 2, 3)}
    files = [f for name, shift in (("bmip@gate", 0.0), ("bmip@sum", -1.0), ("bmip@mean", 1.0))
             for f in _metrics(tmp_path, name, shift, rng, base)]
    write_ablations(config, list(reversed(files)), tmp_path / "tables", tmp_path / "figures")  # any order
    exp = Experiment(path=tmp_path, config=config, root=tmp_path)
    findings = Findings()
    check_ablation_tables(exp, files, findings)
    assert not findings.problems
    csv = tmp_path / "tables" / "ablation_mixing.csv"
    csv.write_text(csv.read_text().replace(",-1.0000,", ",-0.5000,", 1))
    check_ablation_tables(exp, files, findings)
    assert [(p.file, "differs from the table recomputed" in p.message) for p in findings.problems] == [
        ("tables/ablation_mixing.csv", True)]


@pytest.mark.parametrize("sweep", [False, True])
def test_the_ablation_figure_keeps_texts_off_data_and_legends_outside(tmp_path, sweep):
    import pandas as pd

    from bmip.report.ablations import build_ablation_tables
    from bmip.report.figures.ablation import draw_ablation
    from bmip.report.figures.common import figure_style
    from bmip.report.tables import load_metrics
    from tests.report.figure_checks import layout_problems

    labels = {"gate": {}, **{m: {"options": {"aggregation": m}} for m in
                             ("sum", "mean", "constant_gate", "attention_pool", "joint", "exchange")}}
    config = _config(**({"variants": None, "sweep": {"depth": [1, 2, 3]}, "reference": "depth=3"} if sweep
                        else {"variants": labels}))
    (ablation,) = ablations(config)
    rng = np.random.default_rng(3)
    base = {(d, s): float(rng.uniform(50, 80)) for d in DATASETS for s in (1, 2, 3)}
    files = [f for i, name in enumerate(ablation.names) for f in _metrics(tmp_path, name, 0.7 * i - 2, rng, base)]
    table = build_ablation_tables(config, load_metrics(files))["ablation_mixing"][0]
    assert isinstance(table, pd.DataFrame)
    with figure_style():
        fig = draw_ablation(table, ablation)
        assert layout_problems(fig) == []
        fig.savefig(tmp_path / "ablation.png")


def test_a_comparison_of_one_pair_prints_n_1_and_no_interval(tmp_path):
    """One dataset and one seed: the difference is that pair's, shown as `+x.xx (n = 1)` in the
    Markdown and LaTeX tables (no "95% bootstrap CI" from resampling one pair), its bounds empty in
    the CSV; the ablation figure draws the point without a bar."""
    import pandas as pd

    config = yaml.safe_load(Path("config/config.yaml").read_text())
    config.pop("analysis", None)
    config.update(methods=["bmip", "coop"], seeds=[1], protocols={"base2novel": {"datasets": ["toys"]}},
                  ablations={"mixing": {"method": "bmip", "datasets": ["toys"],
                                        "variants": {"gate": {}, "sum": {"options": {"aggregation": "sum"}}}}})
    config = validate(config)
    files = []
    for method, value in (("bmip", 70.0), ("coop", 70.42), ("bmip@gate", 60.0), ("bmip@sum", 59.5)):
        path = tmp_path / "runs" / method / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"protocol": "base2novel", "method": method, "dataset": "toys", "seed": 1,
                                    "summary": {"base": value, "novel": value, "hm": value}}))
        files.append(path)
    written = write_ablations(config, files, tmp_path / "tables", tmp_path / "figures")
    assert (tmp_path / "figures" / "ablation_mixing.png") in written
    for name, delta in (("paired_base2novel", "+0.42 (n = 1)"), ("ablation_mixing", "-0.50 (n = 1)")):
        table = pd.read_csv(tmp_path / "tables" / f"{name}.csv")
        paired = table[table["pairs"] == 1]
        assert len(paired) == 2  # the dataset's row and the average's
        assert paired["delta"].abs().round(2).tolist() == [abs(float(delta.split()[0]))] * 2
        assert paired["delta_low"].isna().all() and paired["delta_high"].isna().all()
        md = (tmp_path / "tables" / f"{name}.md").read_text()
        rows = [line for line in md.splitlines() if delta in line]
        assert len(rows) == 2 and not any("[" in row for row in rows), md
        assert "single pair has no interval" in md
        tex = (tmp_path / "tables" / f"{name}.tex").read_text()
        assert tex.count(delta) == 2 and "nan" not in tex.lower()
