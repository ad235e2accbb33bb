"""`bmip audit`: a fresh experiment passes; any edit after the run fails it, naming the file and number."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bmip.audit.check import audit
from bmip.audit.layout import Experiment
from bmip.audit.manifest import write_manifest
from bmip.cli import main

B2N_METRICS = "base2novel/coop/toy/seed1/metrics.json"
CHECKPOINT = "train/base2novel/coop/toy/seed1/prompts.safetensors"


def _problems(exp: Path) -> list[str]:
    report = audit(exp)
    assert not report.passed
    return [f.line() for f in report.findings.problems]


def _mentions(lines: list[str], *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in lines)


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def test_fresh_experiment_passes(experiment, capsys):
    workflow_report = (experiment / "audit.txt").read_text()
    assert "PASSED: 0 problem(s)" in workflow_report

    assert main(["audit", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "PROBLEM" not in out
    assert "(clean)" in out or "(dirty)" in out  # the code version the runs record is stated
    report = audit(experiment)
    # 2 methods x (toy, toy_b base-to-novel + toy cross-dataset) x 2 seeds trainings; 2 x 5 x 2 evaluations.
    assert report.findings.counts["runs"] == 12 + 20
    assert report.findings.counts["table numbers"] > 50
    assert report.findings.counts["few-shot split files"] == 12
    assert report.findings.counts["data check records"] == 12 + 20  # every run names the one it relied on
    assert report.findings.counts["mechanism records"] == 10  # every coop evaluation, no zsclip one
    assert report.findings.counts["prediction files"] == 20  # every evaluation keeps its per-image predictions


def test_edited_accuracy_in_metrics_is_named(experiment_copy):
    _edit_json(experiment_copy / B2N_METRICS, lambda d: d["summary"].update(base=d["summary"]["base"] + 10))
    problems = _problems(experiment_copy)
    assert _mentions(problems, B2N_METRICS, "changed since manifest.json was written")
    assert _mentions(problems, B2N_METRICS, "summary.base")
    assert _mentions(problems, "tables/base2novel.csv", "coop / toy, base:", B2N_METRICS)


def test_edited_metrics_fails_even_with_a_rewritten_manifest(experiment_copy):
    """The manifest is a record, not a seal: the table recomputation still catches the edit."""
    def edit(doc):  # a consistent edit of the file: one more correct base image
        block = doc["results"]["base"]
        block["correct"] += 1
        block["per_class"][0]["correct"] += 1
        block["accuracy"] = 100.0 * block["correct"] / block["total"]
        doc["summary"]["base"] = block["accuracy"]
        base, novel = doc["summary"]["base"], doc["summary"]["novel"]
        doc["summary"]["hm"] = 2 * base * novel / (base + novel)

    _edit_json(experiment_copy / B2N_METRICS, edit)
    write_manifest(Experiment.open(experiment_copy))
    problems = _problems(experiment_copy)
    assert _mentions(problems, "tables/base2novel.csv", "coop / toy, base:", "the table says", B2N_METRICS)


def test_edited_table_cell_is_named(experiment_copy):
    table = experiment_copy / "tables" / "cross_dataset.csv"
    lines = table.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    original = row[header.index("accuracy")]
    row[header.index("accuracy")] = f"{float(original) + 0.0001:.4f}"  # one unit in the last printed digit
    lines[1] = ",".join(row)
    table.write_text("\n".join(lines) + "\n")
    problems = _problems(experiment_copy)
    assert _mentions(problems, "tables/cross_dataset.csv", f"{row[0]} / {row[1]}, accuracy",
                     f"the table says {row[header.index('accuracy')]}", f"its runs give {original}")


def test_flipped_checkpoint_byte_is_named(experiment_copy):
    path = experiment_copy / CHECKPOINT
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # a bit of the last tensor value: the file still loads
    path.write_bytes(bytes(data))
    problems = _problems(experiment_copy)
    assert _mentions(problems, CHECKPOINT, "changed since manifest.json was written")
    assert _mentions(problems, CHECKPOINT, "changed since base2novel/coop/toy/seed1 evaluated it")
    assert _mentions(problems, CHECKPOINT, "changed since open_world/coop/toy/seed1 evaluated it")


def test_table_number_without_a_run_fails(experiment_copy):
    for seed in (1, 2):
        shutil.rmtree(experiment_copy / "base2novel" / "coop" / "toy_b" / f"seed{seed}")
    write_manifest(Experiment.open(experiment_copy))  # even once the manifest agrees with the deletion
    problems = _problems(experiment_copy)
    assert _mentions(problems, "tables/base2novel.csv", "row coop / toy_b", "has no run behind it")
    assert _mentions(problems, "base2novel/coop/toy_b/seed1/metrics.json", "missing")


@pytest.mark.parametrize("target, edit, named", [
    ("train/base2novel/coop/toy/seed2/provenance.json",
     lambda d: d["config"]["recipe"].update(lr=0.5), "is not the hash of the recorded config"),
    ("cross_dataset/coop/toy_b/seed2/provenance.json",
     lambda d: d["inputs"].update(checkpoint_sha256="0" * 64), "changed since cross_dataset/coop/toy_b/seed2"),
    ("train/cross_dataset/coop/toy/seed1/provenance.json",
     lambda d: d["inputs"]["train"].update(images_sha256="0" * 64), "are not the ones"),
])
def test_edited_provenance_is_named(experiment_copy, target, edit, named):
    _edit_json(experiment_copy / target, edit)
    problems = _problems(experiment_copy)
    assert _mentions(problems, target, "changed since manifest.json was written")
    assert any(named in line for line in problems), problems


def test_edited_split_file_is_named(experiment_copy):
    split = experiment_copy / "splits" / "toy" / "shot_2-seed_1.json"
    _edit_json(split, lambda d: d["train"].reverse())
    problems = _problems(experiment_copy)
    assert _mentions(problems, "splits/toy/shot_2-seed_1.json", "content hash")


def test_dataset_split_file_changed_after_the_run(experiment_copy):
    split_file = experiment_copy.parents[1] / "data" / "toy" / "split.json"
    split_file.write_text(split_file.read_text() + "\n")
    problems = _problems(experiment_copy)
    assert _mentions(problems, str(split_file), "split file changed since")


def test_cli_exit_codes_strict_mode_and_json(experiment_copy, tmp_path, capsys):
    (experiment_copy / "notes.txt").write_text("added after the run\n")
    out_json = tmp_path / "audit.json"
    assert main(["audit", str(experiment_copy), "--json", str(out_json)]) == 0  # a warning only
    assert "WARNING notes.txt: not listed in manifest.json" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["passed"] is True
    assert main(["audit", str(experiment_copy), "--strict"]) == 1
    assert "FAILED" in capsys.readouterr().out

    (experiment_copy / "tables" / "open_world.csv").write_text("method,dataset\n")
    assert main(["audit", str(experiment_copy), "--json", str(out_json)]) == 1
    record = json.loads(out_json.read_text())
    assert not record["passed"] and any(f["file"] == "tables/open_world.csv" for f in record["findings"])

    empty = tmp_path / "not_an_experiment"
    empty.mkdir()
    assert main(["audit", str(empty)]) == 2


def _rehash_data_check(exp: Path, dataset: str) -> None:
    """Make every run's provenance name the data check record of `dataset` as it is now."""
    from bmip.io import file_sha256

    digest = file_sha256(exp / "data_check" / f"{dataset}.json")
    for path in exp.glob("**/provenance.json"):
        doc = json.loads(path.read_text())
        if (doc.get("inputs", {}).get("data_check") or {}).get("record") == f"data_check/{dataset}.json":
            _edit_json(path, lambda d: d["inputs"]["data_check"].update(sha256=digest))


def test_a_data_check_that_failed_or_did_not_cover_the_run_is_named(experiment_copy):
    record = experiment_copy / "data_check" / "toy.json"
    _edit_json(record, lambda d: d.update(status="failed", problems=[{"path": "red/test_0.png", "problem": "empty"}]))
    _rehash_data_check(experiment_copy, "toy")  # even with provenance that agrees with the edited record
    problems = _problems(experiment_copy)
    assert _mentions(problems, "data_check/toy.json", "records unreadable images, yet train/base2novel/coop/toy/seed1")
    _edit_json(record, lambda d: d.update(status="passed", problems=[]) or d["parts"]["test"].update(images_sha256="0" * 64))
    _rehash_data_check(experiment_copy, "toy")
    problems = _problems(experiment_copy)
    assert _mentions(problems, "data_check/toy.json", "did not check the test images base2novel/coop/toy/seed1")
    assert not _mentions(problems, "data_check/toy.json", "records unreadable images")


def test_a_run_without_a_data_check_is_a_warning_and_a_missing_record_a_problem(experiment_copy):
    target = experiment_copy / "base2novel" / "coop" / "toy" / "seed1" / "provenance.json"
    _edit_json(target, lambda d: d["inputs"].update(data_check=None))
    report = audit(experiment_copy)
    assert any("no data check recorded" in f.line() and "base2novel/coop/toy/seed1" in f.line()
               for f in report.findings.warnings)
    (experiment_copy / "data_check" / "toy_b.json").unlink()
    assert _mentions(_problems(experiment_copy), "data_check/toy_b.json", "missing: train/base2novel/coop/toy_b/seed1")


MECHANISM = "base2novel/coop/toy/seed1/mechanism.json"


def test_a_missing_or_incomplete_mechanism_record_of_a_prompt_method_is_named(experiment_copy):
    def drop_a_block(doc):
        blocks = doc["parts"]["base"]["text"]["blocks"]
        del blocks[max(blocks, key=int)]
        doc["parts"]["novel"]["text"]["blocks"]["0"]["lambda"]["over_heads"]["mean"] = 1.5

    _edit_json(experiment_copy / MECHANISM, drop_a_block)
    problems = _problems(experiment_copy)
    assert _mentions(problems, MECHANISM, "base/text: blocks")
    assert _mentions(problems, MECHANISM, "novel/text/0: lambda")
    (experiment_copy / MECHANISM).unlink()
    assert _mentions(_problems(experiment_copy), MECHANISM, "missing: every evaluation writes it (coop's: its prompt "
                                                            "mechanism)")


def test_predictions_that_disagree_with_their_metrics_or_are_missing_are_named(experiment_copy):
    from bmip.engine import predictions

    target = B2N_METRICS.replace("metrics.json", "predictions.json.gz")
    doc = predictions.read_predictions(experiment_copy / target)
    base = doc["spaces"]["base"]
    y, n_classes = base["labels"][0], max(base["labels"] + base["predicted"]) + 1
    base["predicted"][0] = (y + 1) % n_classes if base["predicted"][0] == y else y  # right <-> wrong
    (experiment_copy / target).write_bytes(predictions.encode(doc))
    problems = _problems(experiment_copy)
    assert _mentions(problems, target, "base:", "correct from the images, metrics.json says")
    (experiment_copy / target).unlink()
    assert _mentions(_problems(experiment_copy), target, "missing. Every evaluation writes it")


def test_zero_shot_clip_records_that_it_has_no_mechanism_and_a_real_record_there_is_refused(experiment_copy):
    target = "base2novel/zsclip/toy/seed1/mechanism.json"
    own = json.loads((experiment_copy / target).read_text())
    assert own["parts"] is None and "learns no prompts" in own["absent"]
    shutil.copy(experiment_copy / MECHANISM, experiment_copy / target)
    assert _mentions(_problems(experiment_copy), target, "method 'zsclip' has nothing of the kind to record")
    # A prompt method's record that says it has none is refused too.
    _edit_json(experiment_copy / MECHANISM, lambda doc: doc.update(parts=None, absent="nothing"))
    assert _mentions(_problems(experiment_copy), MECHANISM, "records nothing (nothing), but every evaluation of coop")


FEATURES = "features/toy/image_features.safetensors"
ZS_PROVENANCE = "open_world/zsclip/toy/seed1/provenance.json"


def test_fresh_experiment_counts_its_frozen_feature_reads(experiment):
    report = audit(experiment)
    # zsclip and coop: every evaluation read its test set's frozen image features.
    assert report.findings.counts["frozen image feature reads"] == 20
    record = json.loads((experiment / ZS_PROVENANCE).read_text())
    assert record["work"]["image_forwards"] == 0 and record["work"]["image_features_reused"] > 0


def test_edited_image_forward_count_is_named(experiment_copy):
    _edit_json(experiment_copy / ZS_PROVENANCE, lambda doc: doc["work"].update(image_forwards=3))
    write_manifest(Experiment.open(experiment_copy))  # the forged count alone, not a manifest mismatch, must fail it
    assert _mentions(_problems(experiment_copy), ZS_PROVENANCE, "records 3 image forwards")


def test_replaced_frozen_features_are_named(experiment_copy):
    """Features of another test set (toy_b's, images generated alike) put in toy's place: the
    recorded sha256 no longer matches, and the file's key names another dataset."""
    shutil.copy(experiment_copy / "features/toy_b/image_features.safetensors", experiment_copy / FEATURES)
    write_manifest(Experiment.open(experiment_copy))
    problems = _problems(experiment_copy)
    assert _mentions(problems, FEATURES, "changed since open_world/zsclip/toy/seed1 read it")
    assert _mentions(problems, FEATURES, "computed for another setting", "dataset toy_b vs the run's toy")
