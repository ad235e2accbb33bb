"""Counting Snakemake jobs from its per-output metadata records."""
from __future__ import annotations

import base64
import json
from pathlib import Path

from bmip.audit.cost import snakemake_jobs
from bmip.audit.layout import Experiment


def _record(root: Path, output: str, rule: str, job_hash: int, start: float, end: float) -> None:
    (root / output).parent.mkdir(parents=True, exist_ok=True)
    (root / output).write_text("{}")
    name = base64.urlsafe_b64encode(output.encode()).decode()
    metadata = root / ".snakemake" / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    (metadata / name).write_text(json.dumps({"rule": rule, "job_hash": job_hash, "starttime": start, "endtime": end}))


def test_a_job_with_many_outputs_is_one_job_and_a_reused_hash_in_a_later_run_another(tmp_path):
    # One batched evaluation job: 4 outputs whose records end microseconds apart.
    for i, end in enumerate((120.0000001, 120.0000002, 120.0000004, 120.0000009)):
        _record(tmp_path, f"results/x/cross_dataset/bmip/t{i}/seed1/metrics.json", "evaluate_cross_dataset",
                7, 100.0 + i * 1e-4, end)
    # A job of a later Snakemake run that got the same hash.
    _record(tmp_path, "results/x/cross_dataset/coop/t0/seed1/metrics.json", "evaluate_cross_dataset", 7, 500.0, 530.0)
    _record(tmp_path, "results/x/train/base2novel/bmip/t0/seed1/train_log.csv", "train", 7, 10.0, 90.0)
    jobs = snakemake_jobs(Experiment(path=tmp_path / "results" / "x", config=None, root=tmp_path))
    assert [(j["rule"], round(j["seconds"], 3)) for j in jobs] == [
        ("train", 80.0), ("evaluate_cross_dataset", 20.0), ("evaluate_cross_dataset", 30.0)]
