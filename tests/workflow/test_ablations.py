"""Ablations in the workflow: variants become jobs, tables, a figure, audited runs in the crate."""
from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.workflow.reduced import reduced_config, snakemake_command

ABLATION = {
    "method": "bmip",
    "datasets": ["toy"],
    "recipe": {"epochs": 1},
    "variants": {"gate": {}, "mean": {"options": {"aggregation": "mean"}}},
    "sweep": {"n_ctx": [1]},
}


@pytest.fixture(scope="module")
def ablation_run(tmp_path_factory) -> tuple[Path, Path]:
    workdir = tmp_path_factory.mktemp("ablation")
    config = reduced_config(workdir, methods=["zsclip", "bmip"], protocols={"base2novel": {"datasets": ["toy", "toy_b"]}},
                            ablations={"mixing": ABLATION})
    done = subprocess.run(snakemake_command(workdir, config, "--cores", "2"), capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir, config


def test_variants_run_as_jobs_and_get_a_table_a_figure_and_a_passing_audit(ablation_run):
    workdir, config = ablation_run
    exp = workdir / "results" / "reduced"
    for variant in ("bmip@gate", "bmip@mean", "bmip@n_ctx=1"):
        for seed in (1, 2):
            assert (exp / "base2novel" / variant / "toy" / f"seed{seed}" / "metrics.json").is_file()
            assert (exp / "train" / "base2novel" / variant / "toy" / f"seed{seed}" / "prompts.safetensors").is_file()
        assert not (exp / "base2novel" / variant / "toy_b").exists()  # the ablation's datasets only
    provenance = json.loads((exp / "train" / "base2novel" / "bmip@mean" / "toy" / "seed1" / "provenance.json").read_text())
    assert provenance["config"]["recipe"]["options"]["aggregation"] == "mean"
    assert provenance["config"]["recipe"]["epochs"] == 1
    table = pd.read_csv(exp / "tables" / "ablation_mixing.csv")
    assert list(dict.fromkeys(table["method"])) == ["bmip@gate", "bmip@mean", "bmip@n_ctx=1"]
    average = table[table["dataset"] == "Average over 1 datasets"].set_index("variant")
    assert average.loc["mean", "pairs"] == 2 and average.loc["mean", "image_low"] <= average.loc["mean", "image_high"]
    assert len(str(average.loc["mean", "seed_deltas"]).split(";")) == 2  # each seed's Δ
    for name in ("ablation_mixing.md", "ablation_mixing.tex", "paired_base2novel.csv"):
        assert (exp / "tables" / name).is_file()
    assert (exp / "figures" / "ablation_mixing.png").stat().st_size > 1000
    main = pd.read_csv(exp / "tables" / "base2novel.csv")
    assert set(main["method"]) == {"zsclip", "bmip"}  # variants stay out of the main tables
    audit = (exp / "audit.txt").read_text()
    assert "0 problem" in audit or "no problem" in audit.lower(), audit[:2000]
    with zipfile.ZipFile(exp / "crate.zip") as crate:
        names = crate.namelist()
    assert any("base2novel/bmip@mean/toy/seed1/metrics.json" in n for n in names)
    assert any(n.endswith("tables/ablation_mixing.csv") for n in names)


def test_a_variant_recipe_change_reruns_only_that_variant(ablation_run, tmp_path):
    import yaml

    workdir, config = ablation_run
    changed = yaml.safe_load(config.read_text())
    changed["ablations"]["mixing"]["variants"]["mean"]["recipe"] = {"lr": 0.001}
    edited = tmp_path / "changed.yaml"
    edited.write_text(yaml.safe_dump(changed))
    dry = subprocess.run(snakemake_command(workdir, edited, "-n", "--cores", "2"), capture_output=True, text=True,
                         timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "method=bmip@mean" in dry.stdout and "method=bmip@gate" not in dry.stdout
    assert "ablation_train_mixing" in dry.stdout


def test_a_gated_variant_records_its_gates_and_the_gate_table_shows_it(ablation_run):
    """bmip@gate's evaluations write gates.json (its options gate), bmip@mean's a record of none."""
    from bmip.engine import gates

    exp = ablation_run[0] / "results" / "reduced"
    for seed in (1, 2):
        identity = {"protocol": "base2novel", "method": "bmip@gate", "dataset": "toy", "seed": seed}
        doc = json.loads((exp / "base2novel" / "bmip@gate" / "toy" / f"seed{seed}" / "gates.json").read_text())
        assert gates.problems(doc, identity, None) == []
        absent = json.loads((exp / "base2novel" / "bmip@mean" / "toy" / f"seed{seed}" / "gates.json").read_text())
        assert absent["parts"] is None
    table = pd.read_csv(exp / "figures" / "bmip_gates.csv")
    assert {"bmip", "bmip@gate", "bmip@n_ctx=1"} == set(table["method"])
    assert (table["w_range"] >= 0).all() and (table["w_range"] < 0.5).all()
