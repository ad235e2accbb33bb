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


def _open_world(seed: int) -> dict:
    """An open-world metrics file as bmip.engine.evaluate writes it: 9 base and 7 novel images,
    OpenworldAUC from 5 and 4 within-domain correct ones."""
    b, n = _block(4 + seed, 9), _block(3, 7)
    won = 10.5 + seed
    record = {"value": 100.0 * won / 63, "pairs_won": won, "pairs": 63, "misclassified_pairs_won": 0.0,
              "base": {"images": 9, "correct_in_domain": 5}, "novel": {"images": 7, "correct_in_domain": 4},
              "detector": "max_base_softmax", "precision": "float32", "ties": 0.5, "correctness": "within_domain"}
    return {"protocol": "open_world", "method": "bmip", "dataset": "dtd", "seed": seed,
            "summary": {"accuracy": 100.0 * (b["correct"] + 3) / 16, "base": b["accuracy"], "novel": n["accuracy"],
                        "hm": 2 * b["accuracy"] * n["accuracy"] / (b["accuracy"] + n["accuracy"]),
                        "openworld_auc": record["value"]},
            "results": {"joint": _block(b["correct"] + 3, 16), "base_part": b, "novel_part": n,
                        "openworld_auc": record, "ratio": {}}}


def test_openworld_auc_must_be_its_own_records_pairs():
    run = Run("evaluate", "open_world", "bmip", "dtd", 1)
    findings = Findings()
    assert check_metrics_file(run, _open_world(1), "m.json", findings) and findings.problems == []

    def problems(edit) -> list[str]:
        doc = _open_world(1)
        edit(doc["summary"], doc["results"]["openworld_auc"])
        found = Findings()
        check_metrics_file(run, doc, "m.json", found)
        return [p.message for p in found.problems]

    assert problems(lambda s, r: s.update(openworld_auc=25.0)) == [
        f"summary.openworld_auc = 25.0 but results.openworld_auc.value is {100 * 11.5 / 63}"]
    # The summary and the value edited together: the pairs no longer give it.
    assert problems(lambda s, r: (s.update(openworld_auc=25.0), r.update(value=25.0))) == [
        f"results.openworld_auc.value = 25.0 but 11.5 of 63 pairs won is {100 * 11.5 / 63}"]

    def pairs(won: float, of: int = 63):
        """An edit that keeps the value and the summary those pairs' number."""
        return lambda s, r: (r.update(pairs_won=won, pairs=of, value=100 * won / of),
                             s.update(openworld_auc=100 * won / of))

    # More pairs won than the 5 x 4 correct images can give; a quarter of a pair; pairs not N_b x N_n.
    too_many = problems(pairs(21.0))
    assert len(too_many) == 1 and "at most 5 x 4 correct pairs" in too_many[0]
    assert any("count of halves" in m for m in problems(pairs(11.25)))
    assert any("give 63" in m for m in problems(pairs(11.5, of=64)))
    assert any("base_part.total is 9" in m for m in problems(lambda s, r: r["base"].update(images=10)))
    assert any("misclassified pairs" in m for m in problems(lambda s, r: r.update(misclassified_pairs_won=3.0)))


def test_a_run_without_openworld_auc_says_why_or_is_older():
    run = Run("evaluate", "open_world", "bmip", "dtd", 1)
    doc = _open_world(1)
    doc["results"]["openworld_auc"] = {"value": None, "absent": "scored per label space"}
    doc["summary"]["openworld_auc"] = None
    findings = Findings()
    check_metrics_file(run, doc, "m.json", findings)
    assert findings.problems == []
    del doc["results"]["openworld_auc"]["absent"]
    check_metrics_file(run, doc, "m.json", findings)
    assert [p.message for p in findings.problems] == [
        "summary.openworld_auc = None, but results.openworld_auc records none, and must say why under 'absent'"]
    older = _open_world(1)
    del older["results"]["openworld_auc"], older["summary"]["openworld_auc"]
    findings = Findings()
    check_metrics_file(run, older, "m.json", findings)
    assert findings.problems == [] and findings.skipped == {
        "OpenworldAUC values (metrics files written before bmip recorded it)": 1}


def test_an_edited_openworld_auc_cell_or_metrics_file_fails_the_table_check(tmp_path):
    files = []
    for seed in (1, 2, 3):
        path = tmp_path / "open_world" / "bmip" / "dtd" / f"seed{seed}" / P.METRICS
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_open_world(seed)))
        files.append(path)
    write_tables(files, tmp_path / "tables")
    exp = Experiment(path=tmp_path.resolve(), config=None, root=tmp_path.resolve())
    assert _check(exp).problems == []
    mean = 100 * 12.5 / 63  # seeds won 11.5, 12.5, 13.5 of 63 pairs
    table = tmp_path / "tables" / "open_world.csv"
    text = table.read_text()
    assert f",{mean:.4f},3.0000" in text
    table.write_text(text.replace(f",{mean:.4f},3.0000", f",{mean + 0.001:.4f},3.0000"))
    problems = _check(exp).problems
    assert len(problems) == 1 and "bmip / dtd, openworld_auc: the table says" in problems[0].message
    table.write_text(text)
    doc = json.loads(files[0].read_text())
    doc["summary"]["openworld_auc"] += 1.0
    files[0].write_text(json.dumps(doc))
    messages = [p.message for p in _check(exp).problems]
    assert any(m.startswith("summary.openworld_auc = ") for m in messages)
