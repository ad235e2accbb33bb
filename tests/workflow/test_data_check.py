"""The workflow's data check: broken images stop the grid before any training, all listed at once;
after removing them the run completes and the audit checks the records; adding a dataset checks
only that one and reruns no finished training."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.engine.test_data_check import make_pond
from tests.engine.toy import make_toy_dataset
from tests.workflow.reduced import snakemake_command
from tests.workflow.test_workflow import _job_counts

TIMEOUT = 900


def _pond_workflow(workdir: Path) -> Path:
    config = {
        "experiment": "pond",
        "results_dir": "results",
        "data_root": "data",
        "backbone": {"model": "test-vit-tiny", "pretrained": "none"},
        "seeds": [1],
        "shots": 16,  # every image of the dataset is read
        "eval_batch_size": 16,
        "methods": ["zsclip", "coop"],
        "protocols": {"base2novel": {"datasets": ["pond"]}},
        "recipes": {"default": {"coop": {"epochs": 1, "batch_size": 8, "options": {"n_ctx": 2}}}},
        "workflow": {"resources": {
            "train": {"threads": 1, "mem_mb": 2000, "runtime": 10},
            "evaluate": {"threads": 1, "mem_mb": 2000, "runtime": 10},
            "light": {"threads": 1, "mem_mb": 1000, "runtime": 5},
        }},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_broken_images_stop_the_workflow_before_training_then_the_fixed_run_completes(tmp_path):
    broken = make_pond(tmp_path / "data")
    config = _pond_workflow(tmp_path)
    failed = subprocess.run(snakemake_command(tmp_path, config, "--cores", "2"), capture_output=True, text=True,
                            timeout=TIMEOUT)
    exp = tmp_path / "results" / "pond"
    assert failed.returncode != 0
    assert "Error in rule check_data" in failed.stdout + failed.stderr
    assert not (exp / "train").exists() and not (exp / "base2novel").exists()  # no training, no evaluation
    log = (exp / "logs" / "check_data" / "pond.log").read_text()
    assert f"{len(broken)} image file(s) in 1 dataset(s) cannot be read" in log
    for path in broken.values():
        assert f"  {path.resolve().relative_to(tmp_path)}: " in log or f"  data/pond/frog/{path.name}: " in log
    for path in broken.values():
        path.unlink()
    done = subprocess.run(snakemake_command(tmp_path, config, "--cores", "2"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-4000:]
    record = exp / "data_check" / "pond.json"
    assert '"status": "passed"' in record.read_text()
    assert "PASSED: 0 problem(s)" in (exp / "audit.txt").read_text()
    # The audit checks the record the runs name: a record edited afterwards is a problem.
    record.write_text(record.read_text().replace('"passed"', '"failed"'))
    audit = subprocess.run([*snakemake_command(tmp_path, config)[:1], "-m", "bmip.cli", "audit", str(exp)],
                           capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert audit.returncode != 0
    assert "data_check/pond.json: changed since train/base2novel/coop/pond/seed1 ran" in audit.stdout + audit.stderr


def test_a_dataset_added_is_checked_alone_and_reruns_no_finished_job_of_the_others(reduced_run, tmp_path):
    workdir, config = reduced_run
    exp = workdir / "results" / "reduced"
    assert sorted(p.name for p in (exp / "data_check").glob("[!.]*.json")) == ["toy.json", "toy_b.json"]
    make_toy_dataset(workdir / "data", "toy_c")
    changed = yaml.safe_load(config.read_text())
    changed["protocols"]["domain_generalization"]["targets"].append("toy_c")
    edited = tmp_path / "changed.yaml"
    edited.write_text(yaml.safe_dump(changed))
    dry = subprocess.run(snakemake_command(workdir, edited, "-n", "--cores", "2"), capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert dry.returncode == 0, dry.stderr
    jobs = _job_counts(dry.stdout)
    assert jobs["check_data"] == 1 and "wildcards: dataset=toy_c" in dry.stdout
    assert "train" not in jobs and "evaluate_base2novel" not in jobs
    assert jobs["evaluate_domain_generalization"] == len(changed["methods"])  # its jobs gain a target
