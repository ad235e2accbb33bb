"""The Snakemake workflow end to end on the reduced experiment, its config checks and job grid."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from bmip.report.figures import FIGURES
from bmip.report.tables import TABLES
from tests.workflow.reduced import REPO, reduced_config, snakemake_command


def _snakemake(workdir: Path, config: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(workdir, config, *extra), capture_output=True, text=True, timeout=timeout)


def _job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run."""
    counts = {}
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


def test_reduced_experiment_produces_tables_and_figures(reduced_run):
    workdir, _ = reduced_run
    exp = workdir / "results" / "reduced"
    for table in TABLES:
        assert (exp / "tables" / f"{table}.csv").is_file() and (exp / "tables" / f"{table}.md").is_file()
    for figure in FIGURES:
        assert (exp / "figures" / f"{figure}.png").stat().st_size > 1000
    b2n = pd.read_csv(exp / "tables" / "base2novel.csv")
    assert set(b2n.method) == {"zsclip", "coop", "maple", "bmip"}
    assert "Average over 2 datasets" in set(b2n.dataset)
    metrics = json.loads((exp / "base2novel" / "bmip" / "toy" / "seed2" / "metrics.json").read_text())
    row = b2n[(b2n.method == "bmip") & (b2n.dataset == "toy")].iloc[0]
    assert row.seeds == 2 and 0 <= row.base <= 100
    assert metrics["summary"]["base"] in (json.loads((exp / "base2novel" / "bmip" / "toy" / f"seed{s}" / "metrics.json")
                                                     .read_text())["summary"]["base"] for s in (1, 2))
    for protocol, dataset in (("open_world", "toy"), ("cross_dataset", "toy_b"), ("domain_generalization", "toy_b")):
        assert (exp / protocol / "maple" / dataset / "seed1" / "metrics.json").is_file()


def test_second_run_does_nothing_and_a_recipe_change_reruns_only_that_method(reduced_run, tmp_path):
    workdir, config = reduced_run
    again = _snakemake(workdir, config, "-n", "--cores", "2")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # The `snakemake` console script (its own interpreter path) instead of `python -m snakemake`.
    script = [str(Path(sys.executable).parent / "snakemake"), *snakemake_command(workdir, config, "-n")[3:]]
    again = subprocess.run(script, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    changed = yaml.safe_load(config.read_text())
    changed["recipes"]["default"]["maple"]["lr"] = 0.01
    edited = tmp_path / "changed.yaml"
    edited.write_text(yaml.safe_dump(changed))
    dry = _snakemake(workdir, edited, "-n", "--cores", "2")
    assert dry.returncode == 0, dry.stderr
    jobs = _job_counts(dry.stdout)
    # maple: 2 base2novel trainings + 1 cross_dataset training; its evaluations; then tables/figures.
    assert jobs["train"] == 3
    assert jobs["evaluate_base2novel"] == 2 and jobs["evaluate_open_world"] == 1
    assert jobs["evaluate_cross_dataset"] == 1 and jobs["evaluate_domain_generalization"] == 1
    assert "wildcards: training=base2novel, method=maple" in dry.stdout
    assert "method=bmip" not in dry.stdout and "method=coop" not in dry.stdout


def test_report_has_every_table_and_figure(reduced_run):
    workdir, config = reduced_run
    report = workdir / "report.html"
    done = _snakemake(workdir, config, "--report", str(report))
    assert done.returncode == 0, done.stderr
    html = report.read_text(errors="replace")
    for name in (*TABLES, *FIGURES):
        assert name in html, name
    # Every figure and table caption says where it comes from; the front page what the experiment is.
    assert html.count("Drawn by <tt") == len(FIGURES)
    assert html.count("Source: ") >= len(TABLES)
    for fact in ("reduced</tt>", "test-vit-tiny", "Methods</strong> (4): zsclip, coop, maple, bmip",
                 "Seeds</strong> (2): 1, 2", "toy, toy_b"):
        assert fact in html, fact


def test_config_typo_is_rejected_before_any_job(tmp_path):
    config = reduced_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["recipes"]["default"]["bmip"]["epochz"] = 3
    config.write_text(yaml.safe_dump(raw))
    done = _snakemake(tmp_path, config, "--cores", "1")
    assert done.returncode != 0
    assert "recipes.default.bmip: Additional properties are not allowed ('epochz' was unexpected)" in done.stderr
    assert not (tmp_path / "results").exists()


def test_a_recipe_that_does_not_fit_the_backbone_stops_the_run_before_any_training(tmp_path):
    config = reduced_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["recipes"]["default"]["maple"]["options"]["depth"] = 13  # test-vit-tiny has 12 blocks
    config.write_text(yaml.safe_dump(raw))
    done = _snakemake(tmp_path, config, "--cores", "1")
    assert done.returncode != 0
    log = (tmp_path / "results" / "reduced" / "logs" / "write_config.log").read_text()
    assert "recipes.default.maple.options (base2novel training on test-vit-tiny): method 'maple': depth=13 " \
           "must lie in 0..12" in log
    assert not (tmp_path / "results" / "reduced" / "train").exists()
    assert not (tmp_path / "results" / "reduced" / "config.yaml").exists()


def test_paper_config_dry_run_lists_the_full_grid():
    """As the README says to run it, from the checkout: nothing of the default config leaks in."""
    import sys

    done = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/paper.yaml", "-n"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = _job_counts(done.stdout)
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    methods, seeds = len(paper["methods"]), 3
    assert methods == 17  # the 8 methods, HiCroPL, MMRL, MuGCP, bias tuning, PromptSRC on 3 bases, CoPrompt on MaPLe and BMIP
    analysis = paper["analysis"]
    assert jobs["analyze"] == len(analysis["methods"]) * len(analysis["datasets"]) * len(analysis["seeds"])
    assert jobs["train"] == methods * (11 + 1) * seeds  # 11 base-to-novel datasets + the ImageNet source
    # base2novel and open_world of one base-trained model: one job, which scores its test set once.
    assert jobs["evaluate_base_trained"] == methods * 11 * seeds
    assert "evaluate_base2novel" not in jobs and "evaluate_open_world" not in jobs
    assert jobs["evaluate_cross_dataset"] == methods * seeds  # one job per model: all 10 targets
    assert jobs["evaluate_domain_generalization"] == methods * seeds  # all 4 ImageNet variants
    assert jobs["download"] == 15 and jobs["fewshot_splits"] == 11
    assert jobs["weights"] == 1  # the pretrained weights, fetched once where Snakemake runs
    assert jobs["check_data"] == 11 + 4  # every dataset read: the 11 base-to-novel ones (ImageNet among them), its 4 variants
    assert jobs["image_features"] == 15  # one per test set: 11 datasets and the 4 ImageNet variants
    assert not any(rule.startswith("miniworld") for rule in jobs), jobs


def test_default_config_batches_datasets_into_one_train_and_one_evaluate_job_per_method(tmp_path):
    done = _snakemake(tmp_path, REPO / "config" / "config.yaml", "-n")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = _job_counts(done.stdout)
    methods = len(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["methods"])
    # One job per method evaluates it under every protocol; no per-protocol rule is left.
    assert jobs["train"] == methods and jobs["evaluate"] == methods, jobs
    assert jobs["image_features"] == 1  # every test set's frozen image features, in one job
    assert not any(rule.startswith("evaluate_") for rule in jobs), jobs
    assert jobs["miniworld_generate"] == 1 and jobs["miniworld_pretrain"] == 1
    assert jobs["check_data"] == 1  # every dataset's images, in one job


def test_batched_datasets_give_the_numbers_of_per_dataset_jobs(reduced_run, tmp_path):
    """workflow.batch_datasets changes how the grid is cut into jobs, not a single number."""
    config = reduced_config(tmp_path, methods=["coop"], protocols={"base2novel": {"datasets": ["toy", "toy_b"]},
                                                                   "open_world": {"datasets": ["toy"], "ratios": [100, 50, 0]}})
    raw = yaml.safe_load(config.read_text())
    raw["workflow"]["batch_datasets"] = True
    config.write_text(yaml.safe_dump(raw))
    done = _snakemake(tmp_path, config, "--cores", "2")
    assert done.returncode == 0, done.stderr[-5000:]
    assert "Job stats" in done.stdout + done.stderr
    stats = _job_counts(done.stdout + done.stderr)
    assert stats["train"] == 1 and stats["evaluate"] == 1, stats
    produced = sorted((tmp_path / "results" / "reduced").glob("*/coop/*/seed*/metrics.json"))
    assert len(produced) == 6  # base2novel: 2 datasets x 2 seeds; open_world: 1 x 2
    for path in produced:
        relative = path.relative_to(tmp_path / "results" / "reduced")
        reference = reduced_run[0] / "results" / "reduced" / relative
        assert json.loads(path.read_text())["summary"] == json.loads(reference.read_text())["summary"]


def test_lint_is_clean():
    done = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and "Congratulations, your workflow is in a good condition" in done.stdout + done.stderr
