"""On the reduced workflow run: BMIP's gate files (written, complete, audited), the LaTeX tables,
and `bmip figures` giving the workflow's own bytes again from shuffled inputs."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import yaml

from bmip.audit.check import audit
from bmip.engine import gates, paths
from bmip.report.figures import FIGURES
from bmip.report.tables import TABLES
from tests.report.test_latex import check_booktabs


def _experiment(reduced_run):
    workdir, config = reduced_run
    return workdir / "results" / "reduced", yaml.safe_load(config.read_text())


def test_bmip_evaluations_record_every_deep_block_of_both_towers_and_others_none(reduced_run):
    exp, config = _experiment(reduced_run)
    depth = config["recipes"]["default"]["bmip"]["options"]["depth"]
    found = 0
    for metrics_file in sorted(exp.glob(f"*/*/*/seed*/{paths.METRICS}")):
        metrics = json.loads(metrics_file.read_text())
        gate_file = metrics_file.with_name(paths.GATES)
        if metrics["method"] != "bmip":  # a record that it has none
            doc = json.loads(gate_file.read_text())
            assert doc["parts"] is None and doc["absent"].startswith(f"{metrics['method']} has no gates"), gate_file
            continue
        found += 1
        doc = json.loads(gate_file.read_text())
        identity = {k: metrics[k] for k in ("protocol", "method", "dataset", "seed")}
        assert gates.problems(doc, identity, depth) == [], gate_file
        for part, towers in doc["parts"].items():
            assert sorted(towers["vision"], key=int) == sorted(towers["text"], key=int) == [str(k) for k in range(1, depth)]
            images, classes = metrics["results"][part]["total"], len(metrics["results"][part]["label_space"])
            slots = 2  # BMIP's default n_ctx
            assert all(e["n"] == images * slots for e in towers["vision"].values())  # each test image and slot
            assert all(e["n"] == classes * slots for e in towers["text"].values())  # each class prompt and slot
            for entry in (*towers["vision"].values(), *towers["text"].values()):
                assert 0 < entry["w"]["min"] <= entry["w"]["mean"] <= entry["w"]["max"] < 1
    assert found == 2 * (2 + 1 + 1 + 1)  # seeds x (base2novel on 2 datasets, open_world, cross_dataset, dg)


def test_the_audit_covers_gate_files(reduced_run, tmp_path):
    exp, _ = _experiment(reduced_run)
    assert "gate files" in (exp / "audit.txt").read_text() and "PASSED" in (exp / "audit.txt").read_text()
    manifest = json.loads((exp / "manifest.json").read_text())
    listed = {e["path"]: e for e in manifest["files"]}
    assert listed["base2novel/bmip/toy/seed1/gates.json"]["rule"] == "evaluate_base2novel"
    copy = tmp_path / "run"
    shutil.copytree(reduced_run[0], copy, ignore=shutil.ignore_patterns(".snakemake"))
    exp = copy / "results" / "reduced"
    (exp / "base2novel/bmip/toy/seed1/gates.json").unlink()
    shutil.copy(exp / "base2novel/bmip/toy/seed2/gates.json", exp / "base2novel/maple/toy/seed2/gates.json")
    edited = exp / "open_world/bmip/toy/seed1/gates.json"
    doc = json.loads(edited.read_text())
    doc["parts"]["joint"]["vision"]["1"]["w"]["max"] = 1.5
    edited.write_text(json.dumps(doc))
    problems = {(f.file, f.message) for f in audit(exp).findings.problems}
    messages = " | ".join(f"{file}: {message}" for file, message in problems)
    assert "base2novel/bmip/toy/seed1/gates.json: missing: every evaluation writes it (bmip's: its gate statistics)" \
        in messages
    assert "base2novel/maple/toy/seed2/gates.json: method 'maple' has nothing of the kind to record" in messages
    assert "open_world/bmip/toy/seed1/gates.json: joint/vision/1: w must lie in (0, 1)" in messages


def test_latex_tables_are_written_and_well_formed(reduced_run):
    exp, _ = _experiment(reduced_run)
    for name in TABLES:
        check_booktabs((exp / "tables" / f"{name}.tex").read_text())


def test_figures_from_shuffled_inputs_are_the_workflows_bytes(reduced_run, tmp_path):
    exp, _ = _experiment(reduced_run)
    logs = sorted(exp.glob("train/*/*/*/seed*/train_log.csv"))
    gate_files = sorted(exp.glob("base2novel/*/*/seed*/gates.json"))
    mechanism_files = sorted(exp.glob("base2novel/*/*/seed*/mechanism.json"))
    causal_files = sorted(exp.glob("analysis/*/*/seed*/causal.json"))
    assert logs and gate_files and mechanism_files and causal_files
    random.Random(0).shuffle(logs)
    random.Random(1).shuffle(gate_files)
    random.Random(2).shuffle(mechanism_files)
    cmd = [sys.executable, "-m", "bmip.cli", "figures", "--tables", str(exp / "tables"), "--train-logs",
           *map(str, logs), "--gates", *map(str, gate_files), "--mechanism", *map(str, mechanism_files),
           "--causal", *map(str, causal_files), "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONHASHSEED": "7"})
    assert done.returncode == 0, done.stderr[-3000:]
    for name in FIGURES:
        for suffix in (".png", ".pdf"):
            assert (tmp_path / f"{name}{suffix}").read_bytes() == (exp / "figures" / f"{name}{suffix}").read_bytes(), \
                name + suffix
