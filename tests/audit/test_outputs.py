"""What the workflow's audit rules leave in the experiment folder: manifest, cost, provenance, report."""
from __future__ import annotations

import json
import subprocess

import pandas as pd

from bmip.io import file_sha256
from bmip.report.tables import TABLES
from tests.audit.conftest import METHODS, SEEDS
from tests.workflow.reduced import snakemake_command


def test_manifest_lists_every_output_with_hash_size_and_rule(experiment):
    manifest = json.loads((experiment / "manifest.json").read_text())
    files = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {p.relative_to(experiment).as_posix() for p in experiment.rglob("*")
               if p.is_file() and not any(part.startswith(".") for part in p.relative_to(experiment).parts)}
    assert "manifest.json" not in files and "audit.txt" not in files
    assert set(files) == {p for p in on_disk if not p.startswith("logs/")} - {"manifest.json", "audit.txt", "crate.zip"}
    assert manifest["totals"] == {"files": len(files), "bytes": sum(e["size"] for e in files.values())}
    metrics = files["base2novel/coop/toy/seed2/metrics.json"]
    assert metrics["sha256"] == file_sha256(experiment / metrics["path"])
    assert metrics["size"] == (experiment / metrics["path"]).stat().st_size
    assert metrics["rule"] == "evaluate_base2novel"
    assert metrics["wildcards"] == {"protocol": "base2novel", "method": "coop", "dataset": "toy", "seed": "2"}
    rules = {path: entry["rule"] for path, entry in files.items()}
    assert rules["train/cross_dataset/coop/toy/seed1/prompts.safetensors"] == "train"
    assert rules["domain_generalization/zsclip/toy_b/seed1/metrics.json"] == "evaluate_domain_generalization"
    assert rules["tables/base2novel.csv"] == "tables" and rules["figures/base_vs_novel.png"] == "figures"
    assert rules["splits/toy/shot_2-seed_1.json"] == "fewshot_splits" and rules["config.yaml"] == "write_config"
    assert rules["provenance/open_world.csv"] == "provenance" and rules["cost.csv"] == "cost"
    assert rules["inputs/toy.json"] == "inventory" and rules["base2novel/coop/toy/seed1/gates.json"] == "evaluate_base2novel"
    assert None not in rules.values()
    logs = {entry["path"]: entry["rule"] for entry in manifest["logs"]}
    assert logs["logs/tables.log"] == "tables" and logs["logs/splits/toy.log"] == "fewshot_splits"
    assert logs["logs/train/base2novel/coop/toy.log"] == "train"
    assert "logs/manifest.log" not in logs and "logs/audit.log" not in logs and "logs/crate.log" not in logs


def test_cost_summary_per_rule_and_total(experiment):
    cost = pd.read_csv(experiment / "cost.csv").set_index("rule")
    n_methods, n_seeds = len(METHODS), len(SEEDS)
    assert cost.loc["train", "runs"] == n_methods * 3 * n_seeds  # toy, toy_b base-to-novel; toy cross-dataset
    assert cost.loc["evaluate_base2novel", "runs"] == n_methods * 2 * n_seeds
    assert cost.loc["evaluate_open_world", "runs"] == n_methods * 1 * n_seeds
    walls = [json.loads(p.read_text())["time"]["wall_seconds"] for p in experiment.rglob("provenance.json")]
    assert cost.loc["total", "run_seconds"] == round(sum(walls), 3)
    assert cost.loc["total", "runs"] == len(walls)
    # Snakemake's own job records were found: every rule before the summary has a job time.
    for rule in ("fewshot_splits", "train", "evaluate_cross_dataset", "tables", "figures"):
        assert cost.loc[rule, "jobs"] >= 1 and cost.loc[rule, "job_seconds"] > 0
    assert cost.loc["train", "jobs"] == n_methods * 3  # seeds are batched into one job
    assert "cpu" in cost.loc["train", "hardware"]
    markdown = (experiment / "cost.md").read_text()
    assert "Compute summed over Snakemake jobs" in markdown and "## Hardware" in markdown


def test_provenance_table_per_table(experiment):
    for table in TABLES:
        assert (experiment / "provenance" / f"{table}.csv").is_file()
    b2n = pd.read_csv(experiment / "provenance" / "base2novel.csv")
    assert len(b2n) == len(METHODS) * 2 * len(SEEDS)
    row = b2n[(b2n.method == "coop") & (b2n.dataset == "toy_b") & (b2n.seed == 2)].iloc[0]
    record = json.loads((experiment / "base2novel/coop/toy_b/seed2/provenance.json").read_text())
    assert row.evaluation_config_sha256 == record["config_sha256"] == row.training_config_sha256
    assert row.evaluation_code.startswith(record["code"]["git_commit"])
    assert row.checkpoint == "train/base2novel/coop/toy_b/seed2/prompts.safetensors"
    assert row.evaluation_wall_seconds == record["time"]["wall_seconds"]
    dg = pd.read_csv(experiment / "provenance" / "domain_generalization.csv")
    assert set(dg.checkpoint) == {f"train/cross_dataset/{m}/toy/seed{s}/prompts.safetensors"
                                  for m in METHODS for s in SEEDS}


def test_report_has_a_provenance_section(workflow_run, tmp_path):
    report = tmp_path / "report.html"
    config = workflow_run / "config.yaml"
    done = subprocess.run(snakemake_command(workflow_run, config, "--report", str(report)), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    html = report.read_text(errors="replace")
    for name in ("Provenance", "cost.csv", "manifest.json", "audit.txt", "crate.zip", "Runs behind each table"):
        assert name in html, name
