"""Table recomputation on hand-made metrics files: no workflow needed."""
from __future__ import annotations

import json

import pytest

from bmip.audit.findings import Findings
from bmip.audit.layout import Experiment, Run
from bmip.audit.recompute import check_metrics_file, check_tables
from bmip.engine import paths as P
from bmip.report.tables import write_tables


def _block(correct: int, total: int) -> dict:
    return {"correct": correct, "total": total, "accuracy": 100.0 * correct / total}


def _metrics(protocol: str, method: str, dataset: str, seed: int, base: int, novel: int) -> dict:
    b, n = _block(base, 9), _block(novel, 7)
    return {"protocol": protocol, "method": method, "dataset": dataset, "seed": seed,
            "summary": {"base": b["accuracy"], "novel": n["accuracy"],
                        "hm": 2 * b["accuracy"] * n["accuracy"] / (b["accuracy"] + n["accuracy"])},
            "results": {"base": b, "novel": n}}


@pytest.fixture
def experiment(tmp_path) -> Experiment:
    """Base-to-novel runs of two methods on two datasets, three seeds, and their tables."""
    files = []
    for method in ("coop", "bmip"):
        for dataset, offset in (("dtd", 0), ("eurosat", 1)):
            for seed in (1, 2, 3):
                path = tmp_path / "base2novel" / method / dataset / f"seed{seed}" / P.METRICS
                path.parent.mkdir(parents=True)
                path.write_text(json.dumps(_metrics("base2novel", method, dataset, seed, 4 + seed + offset, 3 + seed)))
                files.append(path)
    write_tables(files, tmp_path / "tables")
    return Experiment(path=tmp_path.resolve(), config=None, root=tmp_path.resolve())


def _check(exp: Experiment) -> Findings:
    findings = Findings()
    check_tables(exp, exp.found_evaluations(), findings)
    return findings


def test_tables_written_from_the_runs_pass(experiment):
    findings = _check(experiment)
    assert findings.problems == []
    assert findings.counts["table numbers"] == 2 * 2 * 6 + 2 * 3  # per-dataset rows, then averages (no std/seeds)


def test_a_cell_off_by_its_rounding_passes_and_by_one_digit_fails(experiment):
    table = experiment.path / "tables" / "base2novel.csv"
    text = table.read_text()
    row = text.splitlines()[1]
    base = row.split(",")[2]
    assert row.startswith("coop,dtd,")
    exact = sum(100.0 * (4 + seed) / 9 for seed in (1, 2, 3)) / 3
    table.write_text(text.replace(row, row.replace(f",{base},", f",{exact:.7f},", 1)))
    assert _check(experiment).problems == [], "the exact value, more digits than %.4f prints, is what %.4f rounds"
    table.write_text(text.replace(row, row.replace(f",{base},", f",{float(base) + 0.0001:.4f},", 1)))
    problems = _check(experiment).problems
    assert len(problems) == 1 and problems[0].file == "tables/base2novel.csv" and ", base:" in problems[0].message


def test_rows_of_a_protocol_with_no_runs_fail(experiment):
    (experiment.path / "cross_dataset.csv").write_text("")
    table = experiment.path / "tables" / "cross_dataset.csv"
    table.write_text("method,dataset,accuracy,accuracy_std,seeds\nbmip,dtd,50.0000,0.0000,3.0000\n")
    problems = _check(experiment).problems
    assert [p.file for p in problems] == ["tables/cross_dataset.csv"]
    assert "row bmip / dtd (accuracy=50.0000, accuracy_std=0.0000, seeds=3.0000) has no run behind it" in problems[0].message


def test_metrics_summary_must_be_its_own_results():
    run = Run("evaluate", "base2novel", "coop", "dtd", 1)
    doc = _metrics("base2novel", "coop", "dtd", 1, 5, 4)
    findings = Findings()
    assert check_metrics_file(run, doc, "m.json", findings) and findings.problems == []
    doc["results"]["novel"]["accuracy"] = 99.0
    doc["summary"]["base"] = 12.0
    check_metrics_file(run, doc, "m.json", findings)
    messages = [p.message for p in findings.problems]
    assert any(m.startswith("results.novel.accuracy = 99.0 but 4/7 correct") for m in messages)
    assert any(m.startswith("summary.base = 12.0 but results.base.accuracy") for m in messages)
    assert not check_metrics_file(Run("evaluate", "base2novel", "coop", "dtd", 2), doc, "m.json", findings)
    assert "but its folder is" in findings.problems[-1].message
