"""Every number in the tables, recomputed from the runs it came from.

The tables are rebuilt with the same functions that wrote them (bmip.report.tables) from the
metrics files of the config's grid, rendered the same way, and compared cell by cell with the
CSVs on disk. A CSV number may differ from the recomputed one only by the rounding of `%.4f`.
This is what the check is: it finds a table edited after it was written, or written from other
runs than the grid's, not an error in the statistics of that code (tests/report checks those);
the audit report says so.
Each metrics file is also checked against itself: its summary must be the accuracies of its own
results (correct/total), so one edited accuracy is named in the file where it was edited; an
open-world file's OpenworldAUC must be its own record's pairs won over its pairs, and that record
consistent with the base and novel parts it counts.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd

from bmip.audit.findings import Findings
from bmip.audit.layout import TABLES_DIR, Experiment, Run
from bmip.report.tables import TABLE_PROTOCOL
from bmip.audit.records import read_json
from bmip.engine import paths as P
from bmip.methods import VARIANT_MARK
from bmip.report.display import is_average
from bmip.report.tables import TABLES, build_tables, load_metrics

FLOAT_FORMAT = "%.4f"  # bmip.report.tables.write_tables
TOLERANCE = 0.5e-4 + 1e-9  # half a unit in the last printed place, plus float noise
KEY_COLUMNS = ("method", "dataset", "ratio")

# Where each summary value of a metrics file comes from in its own results, per protocol.
SUMMARY_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "base2novel": {"base": ("base",), "novel": ("novel",)},
    "cross_dataset": {"accuracy": ("all",)},
    "domain_generalization": {"accuracy": ("all",)},
    "open_world": {"accuracy": ("joint",), "base": ("base_part",), "novel": ("novel_part",)},
}
HM_OF = {"base2novel": ("base", "novel"), "open_world": ("base", "novel")}


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def _hm(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a + b == 0:
        return None
    return 2 * a * b / (a + b)


def _result_blocks(node: Any, where: str = "results") -> list[tuple[str, dict[str, Any]]]:
    """Every {correct, total, accuracy} block inside a metrics file's results, with its key path."""
    blocks = []
    if isinstance(node, dict):
        if {"correct", "total", "accuracy"} <= node.keys():
            blocks.append((where, node))
        for key, value in node.items():
            if key != "per_class":
                blocks += _result_blocks(value, f"{where}.{key}")
    return blocks


def check_metrics_file(run: Run, doc: Any, name: str, findings: Findings) -> bool:
    """The file is the run's (protocol, method, dataset, seed) and its summary is its own results.

    Returns whether the file can be used to recompute the tables.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("summary"), dict):
        findings.problem(name, "not a metrics record (no summary)")
        return False
    identity = {"protocol": run.protocol, "method": run.method, "dataset": run.dataset, "seed": run.seed}
    wrong = {k: doc.get(k) for k, v in identity.items() if doc.get(k) != v}
    if wrong:
        findings.problem(name, f"says {wrong}, but its folder is {identity}")
        return False
    summary, results = doc["summary"], doc.get("results") or {}
    for where, block in _result_blocks(results):
        total, correct, accuracy = block["total"], block["correct"], block["accuracy"]
        expected = 100.0 * correct / total if total else None
        if not _close(accuracy, expected):
            findings.problem(name, f"{where}.accuracy = {accuracy} but {correct}/{total} correct is {expected}")
        per_class = block.get("per_class")
        if isinstance(per_class, list) and per_class:
            hits = sum(c.get("correct", 0) for c in per_class)
            if hits != correct:
                findings.problem(name, f"{where}.correct = {correct} but its per-class counts sum to {hits}")
    sources = dict(SUMMARY_SOURCES.get(run.protocol, {}))
    if run.protocol == "open_world":
        sources.update({f"ratio_{r}": ("ratio", r) for r in (results.get("ratio") or {})})
    for metric, path in sources.items():
        node: Any = results
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        source = node.get("accuracy") if isinstance(node, dict) else None
        findings.count("metrics summary values")
        if not _close(summary.get(metric), source):
            findings.problem(name, f"summary.{metric} = {summary.get(metric)} but results.{'.'.join(path)}.accuracy "
                                   f"is {source}")
    if run.protocol in HM_OF:
        base, novel = (summary.get(k) for k in HM_OF[run.protocol])
        findings.count("metrics summary values")
        if not _close(summary.get("hm"), _hm(base, novel)):
            findings.problem(name, f"summary.hm = {summary.get('hm')} but the HM of base {base} and novel {novel} "
                                   f"is {_hm(base, novel)}")
    if run.protocol == "open_world":
        for problem in openworld_auc_problems(summary, results, findings):
            findings.problem(name, problem)
    return True


def openworld_auc_problems(summary: dict[str, Any], results: dict[str, Any], findings: Findings) -> list[str]:
    """What is wrong with an open-world file's OpenworldAUC (bmip.engine.evaluate._openworld_record):
    summary.openworld_auc must be 100 · pairs_won / pairs, the pairs N_b·N_n of the base and novel
    parts' images, and pairs_won possible for their within-domain correct images (at most
    correct_b·correct_n, plus the misclassified pairs the official code counts for an inverted
    detector: none, half or all of them), in halves (ties count ½)."""
    record = results.get("openworld_auc")
    if record is None and "openworld_auc" not in summary:
        findings.skip("OpenworldAUC values (metrics files written before bmip recorded it)")
        return []
    findings.count("metrics summary values")
    if not isinstance(record, dict):
        return ["summary.openworld_auc has no record under results.openworld_auc"]
    value = record.get("value")
    if value is None:
        if summary.get("openworld_auc") is not None or not isinstance(record.get("absent"), str):
            return [f"summary.openworld_auc = {summary.get('openworld_auc')}, but results.openworld_auc records "
                    "none, and must say why under 'absent'"]
        return []
    keys = ("pairs_won", "pairs", "misclassified_pairs_won")
    parts = {part: record.get(part) if isinstance(record.get(part), dict) else {} for part in ("base", "novel")}
    counts = [record.get(k) for k in keys] + [parts[p].get(k) for p in parts for k in ("images", "correct_in_domain")]
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in counts):
        return [f"results.openworld_auc lacks a count of {', '.join(keys)}, base/novel images and correct_in_domain"]
    won, pairs, wrong_won, images_b, correct_b, images_n, correct_n = counts
    out = []
    if not _close(summary.get("openworld_auc"), value):
        out.append(f"summary.openworld_auc = {summary.get('openworld_auc')} but results.openworld_auc.value is {value}")
    expected = 100.0 * won / pairs if pairs else None
    if not _close(value, expected):
        out.append(f"results.openworld_auc.value = {value} but {won} of {pairs} pairs won is {expected}")
    for part, images in (("base", images_b), ("novel", images_n)):
        total = (results.get(f"{part}_part") or {}).get("total")
        if images != total:
            out.append(f"results.openworld_auc.{part}.images = {images} but results.{part}_part.total is {total}")
    if pairs != images_b * images_n:
        out.append(f"results.openworld_auc.pairs = {pairs} but {images_b} base x {images_n} novel images "
                   f"give {images_b * images_n}")
    if not (0 <= correct_b <= images_b and 0 <= correct_n <= images_n):
        out.append("results.openworld_auc: more images correct in their domain than there are images")
    wrong = (images_b - correct_b) * (images_n - correct_n)
    if wrong_won not in (0, wrong / 2, wrong):
        out.append(f"results.openworld_auc.misclassified_pairs_won = {wrong_won}: none, half or all of the {wrong} "
                   "misclassified pairs")
    if 2 * won != int(2 * won) or not 0 <= won - wrong_won <= correct_b * correct_n:
        out.append(f"results.openworld_auc.pairs_won = {won}: not a count of halves of at most {correct_b} x "
                   f"{correct_n} correct pairs plus {wrong_won} misclassified ones")
    return out


def _as_text_table(table: pd.DataFrame) -> pd.DataFrame:
    """The recomputed table as text cells like the CSV's, but with every digit of each number
    (`%.17g` round-trips a float), so a CSV value is compared with the exact value it rounds."""
    return _read_csv(io.StringIO(table.to_csv(index=False, float_format="%.17g")))


def _read_csv(source: Path | io.StringIO) -> pd.DataFrame:
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def _row_sources(long: pd.DataFrame, protocol: str, key: dict[str, str], exp: Experiment) -> str:
    part = long[(long["protocol"] == protocol) & (long["method"] == key.get("method"))]
    if not is_average(key.get("dataset", "")):
        part = part[part["dataset"] == key.get("dataset")]
    files = sorted({exp.rel(Path(s)) for s in part["source"]})
    return ", ".join(files) if files else "no run"


def compare_table(name: str, recomputed: pd.DataFrame, long: pd.DataFrame, exp: Experiment,
                  findings: Findings) -> None:
    """Cell-by-cell comparison of `tables/<name>.csv` with the table rebuilt from the runs."""
    file = f"{TABLES_DIR}/{name}.csv"
    path = exp.path / file
    if not path.is_file():
        findings.problem(file, "missing: the tables rule writes every table")
        return
    try:
        actual = _read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        findings.problem(file, f"unreadable CSV ({err})")
        return
    expected = _as_text_table(recomputed)
    protocol = TABLE_PROTOCOL[name]
    if list(actual.columns) != list(expected.columns) and not expected.empty:
        findings.problem(file, f"columns {list(actual.columns)}, expected {list(expected.columns)}")
        return
    keys = [c for c in KEY_COLUMNS if c in actual.columns]
    want = {tuple(row[k] for k in keys): row for _, row in expected.iterrows()}
    seen: set[tuple] = set()
    for _, row in actual.iterrows():
        key = tuple(row[k] for k in keys)
        label = " / ".join(key)
        if key in seen:
            findings.problem(file, f"row {label} appears twice")
            continue
        seen.add(key)
        if key not in want:
            numbers = ", ".join(f"{c}={row[c]}" for c in actual.columns if c not in keys and row[c] != "")
            findings.problem(file, f"row {label} ({numbers}) has no run behind it: no metrics file of "
                                   f"{protocol}/{key[0] if key else '?'} in the experiment's grid gives it")
            continue
        for column in (c for c in actual.columns if c not in keys):
            try:
                got, ref = _number(row[column]), _number(want[key][column])
            except ValueError:
                findings.problem(file, f"{label}, {column}: {row[column]!r} is not a number")
                continue
            if got is not None:
                findings.count("table numbers")
            if got is None and ref is None:
                continue
            if got is None or ref is None or not abs(got - ref) <= TOLERANCE:
                sources = _row_sources(long, protocol, dict(zip(keys, key)), exp)
                shown = "(blank)" if ref is None else FLOAT_FORMAT % ref
                findings.problem(file, f"{label}, {column}: the table says {row[column] or '(blank)'}, its runs give "
                                       f"{shown} (from {sources})")
    for key in want.keys() - seen:
        findings.problem(file, f"row {' / '.join(key)} is missing, though its runs exist")


def check_tables(exp: Experiment, evaluations: list[Run], findings: Findings) -> None:
    """Check every metrics file, rebuild every table from the usable ones, compare with the CSVs."""
    usable, variants = [], []  # methods' metrics files (the main tables), ablation variants'
    for run in evaluations:
        path = exp.run_dir(run) / P.METRICS
        name = exp.rel(path)
        doc, error = read_json(path)
        if error is not None:
            if error != "missing":  # a missing run is reported once, by the run checks
                findings.problem(name, error)
            continue
        if check_metrics_file(run, doc, name, findings):
            (variants if VARIANT_MARK in run.method else usable).append(path)
    long = load_metrics(usable)
    for name, table in build_tables(long).items():
        if name in TABLES:
            compare_table(name, table, long, exp, findings)
    check_ablation_tables(exp, usable + variants, findings)


def check_ablation_tables(exp: Experiment, metric_files: list[Path], findings: Findings) -> None:
    """Each ablation table (and the paired main table) rebuilt from the runs' metrics and
    predictions files by the function that wrote it: the CSV must be the same text (the bootstrap
    is seeded). A run whose predictions cannot be read is named, and the tables are not rebuilt."""
    from bmip.engine.predictions import PredictionsError
    from bmip.report.ablations import build_ablation_tables, csv_text

    if not exp.config or not (exp.config.get("ablations") or "base2novel" in exp.config.get("protocols", {})):
        return
    try:
        built = build_ablation_tables({"ablations": {}, **exp.config}, load_metrics(metric_files))
    except PredictionsError as err:
        path, _, why = str(err).partition(": ")
        findings.problem(exp.rel(Path(path)) if why else TABLES_DIR, f"{why or err}: the paired tables cannot be "
                                                                      "recomputed without it")
        return
    for name, (table, _, _) in built.items():
        path = exp.path / TABLES_DIR / f"{name}.csv"
        if not path.is_file():
            if name.startswith("ablation_"):  # (an experiment from before paired tables has none of those)
                findings.problem(exp.rel(path), "missing: the config's ablations: declare it")
        elif path.read_text() != csv_text(table):
            findings.problem(exp.rel(path), "differs from the table recomputed from its runs' metrics files "
                                            "(bmip.report.ablations); rerun the ablation_report rule")
