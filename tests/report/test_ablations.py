"""Ablation tables and figures: Δ as the difference of the columns shown, per-seed differences, the
seed interval over datasets as strata, the image-level paired bootstrap, Holm, n everywhere."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bmip.ablations import ablations
from bmip.config import validate
from bmip.metrics import harmonic_mean
from bmip.report.ablations import write_ablations
from tests.report.runs import correct_share, write_run

DATASETS = ["toys", "stickers", "aerial"]


def _config(**ablation):
    config = yaml.safe_load(Path("config/config.yaml").read_text())
    config["ablations"] = {"mixing": {"method": "bmip", "datasets": DATASETS,
                                      "variants": {"gate": {}, "sum": {"options": {"aggregation": "sum"}},
                                                   "mean": {"options": {"aggregation": "mean"}}}, **ablation}}
    config["ablations"]["mixing"] = {k: v for k, v in config["ablations"]["mixing"].items() if v is not None}
    return validate(config)


def _metrics(root: Path, method: str, shift: float, rng: np.random.Generator, base: dict) -> list[Path]:
    """base2novel runs of one method (metrics and per-image predictions): a per-(dataset, seed)
    level shared by every method (the pairing), plus `shift` and a zero-mean noise of ±0.4 over
    each dataset's seeds (so the shown difference is `shift` up to the 0.1 steps of 1000 images);
    base = novel, so a run's HM is that accuracy."""
    files = []
    noise = iter(np.tile([-0.4, 0.0, 0.4], 3) if shift else np.zeros(9))
    for dataset in DATASETS:
        for seed in (1, 2, 3):
            correct = correct_share(base[(dataset, seed)] + shift + next(noise))
            files.append(write_run(root / "base2novel" / method / dataset / f"seed{seed}", "base2novel", method,
                                   dataset, seed, base=correct, novel=correct))
    return files


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
    assert average.loc["sum", "delta"] == pytest.approx(-3.0, abs=0.06)  # accuracies in steps of 0.1
    # Δ is the difference of the HM columns shown beside it.
    assert average.loc["sum", "delta"] == pytest.approx(average.loc["sum", "hm"] - average.loc["gate", "hm"], abs=2e-4)
    assert average.loc["sum", "seed_low"] < -3.0 < average.loc["sum", "seed_high"] < 0
    assert average.loc["mean", "seed_low"] < 0.5 < average.loc["mean", "seed_high"]
    assert average.loc["sum", "image_low"] < average.loc["sum", "delta"] < average.loc["sum", "image_high"] < 0
    assert average.loc["sum", "pairs"] == 9 and average.loc["sum", "images"] == 3 * 2 * 1000
    assert average.loc["sum", "p"] < 0.05 and average.loc["sum", "p_holm"] == pytest.approx(
        min(1.0, 2 * average.loc["sum", "p"]), abs=1e-4)  # Holm over the table's two comparisons
    assert len(average.loc["sum", "seed_deltas"].split(";")) == 3  # seed s's Δ over every dataset
    per_dataset = table[(table["variant"] == "sum") & (table["dataset"] == "toys")].iloc[0]
    assert per_dataset["pairs"] == 3 and per_dataset["seeds"] == 3
    assert pd.isna(per_dataset["seed_low"]) and pd.isna(per_dataset["p"])  # no interval from 3 seeds
    assert [float(v) for v in per_dataset["seed_deltas"].split(";")] == pytest.approx([-3.4, -3.0, -2.6], abs=0.06)
    md = (tmp_path / "a" / "tables" / "ablation_mixing.md").read_text()
    assert "reference" in md and "n = 3 seeds" in md and "n = 6000 images" in md and "n = 2000 images" in md
    assert "Student's t" in md and "Holm" in md


def test_a_sweep_is_one_variant_per_value(tmp_path):
    config = _config(variants=None, sweep={"depth": [1, 2, 3]}, reference="depth=3")
    (ablation,) = ablations(config)
    assert ablation.names == ["bmip@depth=1", "bmip@depth=2", "bmip@depth=3"] and ablation.reference == "bmip@depth=3"
    rng = np.random.default_rng(1)
    base = {(d, s): float(rng.uniform(50, 80)) for d in DATASETS for s in (1, 2, 3)}
    files = [f for i, name in enumerate(ablation.names) for f in _metrics(tmp_path, name, i - 2.0, rng, base)]
    for file in files[:3]:  # runs that read captions: the table's note names who wrote them, and how
        file.write_text(json.dumps({**json.loads(file.read_text()), "captioner": {
            "name": "file", "model": "captions file mine.csv", "revision": "sha256 0a1b", "instruction": "mine"}}))
    written = write_ablations(config, files, tmp_path / "t", tmp_path / "f")
    assert (tmp_path / "f" / "ablation_mixing.png").is_file() and written
    assert ("\n\nNote: bmip@depth=1 read a caption of every image, written by the `file` captioner (model: captions "
            "file mine.csv; revision: sha256 0a1b) with the instruction \"mine\" (toys).") in \
        (tmp_path / "t" / "ablation_mixing.md").read_text()
    tex = (tmp_path / "t" / "ablation_mixing.tex").read_text()
    assert "\n\n" not in tex[tex.index("\\caption{"):] and "written by the `file` captioner" in tex


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
    import pandas as pd

    edited = pd.read_csv(csv, keep_default_na=False, dtype=str)
    row = edited.index[edited["delta"] != ""][0]
    edited.loc[row, "delta"] = f"{float(edited.loc[row, 'delta']) + 0.5:.4f}"
    csv.write_text(edited.to_csv(index=False))
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


def test_a_comparison_of_one_pair_prints_n_1_and_no_seed_interval(tmp_path):
    """One dataset and one seed: the difference is that pair's, shown with "(n = 1)" and no
    interval over seeds in the Markdown and LaTeX tables, its seed bounds empty in the CSV; the
    interval over test images is still there (the images are many); the figure draws no seed bar."""
    import pandas as pd

    config = yaml.safe_load(Path("config/config.yaml").read_text())
    config.pop("analysis", None)
    config.update(methods=["bmip", "coop"], seeds=[1], protocols={"base2novel": {"datasets": ["toys"]}},
                  ablations={"mixing": {"method": "bmip", "datasets": ["toys"],
                                        "variants": {"gate": {}, "sum": {"options": {"aggregation": "sum"}}}}})
    config = validate(config)
    files = [write_run(tmp_path / "runs" / method, "base2novel", method, "toys", 1, base=correct_share(value),
                       novel=correct_share(value))
             for method, value in (("bmip", 70.0), ("coop", 70.4), ("bmip@gate", 60.0), ("bmip@sum", 59.5))]
    written = write_ablations(config, files, tmp_path / "tables", tmp_path / "figures")
    assert (tmp_path / "figures" / "ablation_mixing.png") in written
    for name, delta in (("paired_base2novel", "+0.40"), ("ablation_mixing", "-0.50")):
        table = pd.read_csv(tmp_path / "tables" / f"{name}.csv")
        paired = table[table["pairs"] == 1]
        assert len(paired) == 2  # the dataset's row and the average's
        assert paired["delta"].round(2).tolist() == [float(delta)] * 2
        assert paired["seed_low"].isna().all() and paired["seed_high"].isna().all() and paired["p"].isna().all()
        assert (paired["image_low"] < paired["delta"]).all() and (paired["delta"] < paired["image_high"]).all()
        md = (tmp_path / "tables" / f"{name}.md").read_text()
        rows = [line for line in md.splitlines() if f"| {delta} " in line]
        assert len(rows) == 2 and all("(n = 1)" in row and "seeds" not in row and "n = 2000 images" in row
                                      for row in rows), md
        tex = (tmp_path / "tables" / f"{name}.tex").read_text()
        assert tex.count("(n = 1)") == 2 and "nan" not in tex.lower()


def test_identical_runs_say_so_instead_of_a_zero_interval(tmp_path):
    """A variant whose every run equals the reference's (BMIP's gate vs a constant gate in the
    default recipe): "identical in all n runs", Δ 0, both intervals [0, 0]."""
    import pandas as pd

    config = _config()
    rng = np.random.default_rng(4)
    base = {(d, s): float(rng.uniform(50, 80)) for d in DATASETS for s in (1, 2, 3)}
    files = _metrics(tmp_path, "bmip@gate", 0.0, rng, base) + _metrics(tmp_path, "bmip@mean", 0.0, rng, base)
    files += _metrics(tmp_path, "bmip@sum", -1.0, rng, base)
    write_ablations(config, files, tmp_path / "tables", tmp_path / "figures")
    table = pd.read_csv(tmp_path / "tables" / "ablation_mixing.csv")
    same = table[table["variant"] == "mean"]
    assert same["identical"].all() and (same["delta"] == 0).all() and (same["image_low"] == 0).all()
    md = (tmp_path / "tables" / "ablation_mixing.md").read_text()
    assert md.count("(identical in all 3 runs)") == 3 and md.count("(identical in all 9 runs)") == 1
    assert not table[table["variant"] == "sum"]["identical"].any()


def test_open_world_and_transfer_tables_pair_their_own_parts(tmp_path):
    """Open-world: base-part and novel-part accuracy in the joint space (the predictions' joint
    space split by the image's class); cross-dataset: accuracy on the target's classes."""
    from bmip.engine import paths, predictions
    from bmip.report.ablations import RunImages, comparison_table, per_run
    from bmip.report.tables import load_metrics

    files = []
    for method, (b, n) in (("ref", (70.0, 60.0)), ("var", (72.0, 66.0))):
        for seed in (1, 2):
            folder = tmp_path / method / str(seed)
            folder.mkdir(parents=True)
            correct = np.concatenate([correct_share(b + seed / 10), correct_share(n - seed / 10)])
            is_base = np.arange(2000) < 1000
            identity = {"protocol": "open_world", "method": method, "dataset": "toys", "seed": seed}
            predictions.write_predictions(
                folder / paths.PREDICTIONS, identity, "0" * 64, 2000,
                {"joint": predictions.space_record(np.arange(2000), np.zeros(2000), np.where(correct, 0, 1))},
                predictions.openworld_record(np.arange(2000), is_base, correct, np.zeros(2000)))
            summary = {"base": 100 * correct[:1000].mean(), "novel": 100 * correct[1000:].mean(),
                       "accuracy": 100 * correct.mean()}
            summary["hm"] = harmonic_mean(summary["base"], summary["novel"])
            (folder / paths.METRICS).write_text(json.dumps({**identity, "summary": summary}))
            files.append(folder / paths.METRICS)
    long = load_metrics(files)
    table = comparison_table(per_run(long, "open_world"), ["ref", "var"], "ref", "open_world", ["toys"],
                             RunImages(long, "open_world"))
    row = table[(table["method"] == "var") & (table["dataset"] == "toys")].iloc[0]
    expected = harmonic_mean(72.15, 65.85) - harmonic_mean(70.15, 59.85)  # of the seed means shown
    assert row["delta"] == pytest.approx(expected, abs=1e-9) and row["images"] == 2000
    assert row["image_low"] < expected < row["image_high"]
