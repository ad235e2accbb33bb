"""Counting Snakemake jobs from their `benchmark:` records (logs/benchmarks/<rule>/…tsv)."""
from __future__ import annotations

import os
from pathlib import Path

from bmip.audit.cost import benchmark_jobs
from bmip.audit.layout import Experiment

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _record(exp: Path, name: str, seconds: float, end: float) -> None:
    path = exp / "logs" / "benchmarks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:{int(seconds):02d}\t100\t200\t90\t95\t0\t0\t50\t{seconds}\n")
    os.utime(path, (end, end))


def test_each_benchmark_record_is_one_job_of_its_folders_rule(tmp_path):
    exp = tmp_path / "results" / "x"
    _record(exp, "train/base2novel/bmip/t0/seed1.tsv", 80.0, 90.0)
    _record(exp, "evaluate_cross_dataset/bmip.tsv", 20.0, 120.0)
    _record(exp, "evaluate_cross_dataset/coop.tsv", 30.0, 530.0)
    _record(exp, "tables/tables.tsv", 2.5, 600.0)
    (exp / "logs" / "benchmarks" / "figures").mkdir()
    (exp / "logs" / "benchmarks" / "figures" / "figures.tsv").write_text("not a record\n")
    jobs = benchmark_jobs(Experiment(path=exp, config=None, root=tmp_path))
    assert [(j["rule"], j["start"], j["end"], j["seconds"]) for j in jobs] == [
        ("train", 10.0, 90.0, 80.0), ("evaluate_cross_dataset", 100.0, 120.0, 20.0),
        ("evaluate_cross_dataset", 500.0, 530.0, 30.0), ("tables", 597.5, 600.0, 2.5)]
