"""`bmip compare`: a copy of a run is the same; a difference in a declared volatile field is
expected, any other difference is a problem that names the file and the key, cell or member."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from bmip.audit.compare import compare
from bmip.audit.volatile import DECLARED, declaration
from bmip.cli import main

TRAINED = "train/base2novel/coop/toy/seed1"
EVALUATED = "base2novel/coop/toy/seed1"


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _edit_crate(path: Path, edits: dict) -> None:
    """Rewrite crate.zip with `edits[member](bytes) -> bytes` applied."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in members:
            archive.writestr(info, edits.get(info.filename, lambda d: d)(data))
    path.write_bytes(buffer.getvalue())


def _retime(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["time"]["end"] = "2031-01-01T00:00:00+00:00"
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def test_a_copy_is_the_same_and_the_cli_says_so(experiment, experiment_copy, capsys):
    result = compare(experiment, experiment_copy)
    assert result.same and result.differences == []
    files = [p for p in experiment.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts)]
    assert result.identical == len(files) > 100
    assert main(["compare", str(experiment), str(experiment_copy)]) == 0
    assert "SAME" in capsys.readouterr().out
    assert main(["compare", str(experiment), str(experiment.parent)]) == 2


def test_volatile_fields_are_expected_differences_with_their_reasons(experiment, experiment_copy, capsys):
    _edit_json(experiment_copy / TRAINED / "provenance.json",
               lambda d: (d["time"].update(wall_seconds=123.4), d["hardware"].update(cpu_model="another CPU"),
                          d.update(command=["/elsewhere/bmip/cli.py", *d["command"][1:]])))
    _edit_json(experiment_copy / "manifest.json", lambda d: (
        d.update(created="2031-01-01T00:00:00+00:00"),
        next(e for e in d["files"] if e["path"] == f"{TRAINED}/provenance.json").update(sha256="0" * 64)))
    provenance_table = experiment_copy / "provenance" / "base2novel.csv"
    provenance_table.write_text(provenance_table.read_text().replace("cpu, ", "cpu on another host, ", 1))
    (experiment_copy / "logs" / "tables.log").write_text("another log\n")
    prefix = "results/reduced"
    _edit_crate(experiment_copy / "crate.zip", {f"{prefix}/{EVALUATED}/provenance.json": _retime})

    result = compare(experiment, experiment_copy)
    assert result.same, result.text()
    found = {d.path: d for d in result.differences}
    assert set(found) == {f"{TRAINED}/provenance.json", "manifest.json", "provenance/base2novel.csv",
                          "logs/tables.log", "crate.zip"}
    assert found[f"{TRAINED}/provenance.json"].detail == "command, hardware, time"
    assert found["manifest.json"].detail == "created, files[<volatile file>].sha256"
    assert found["provenance/base2novel.csv"].detail == "columns hardware"
    assert main(["compare", str(experiment), str(experiment_copy)]) == 0
    out = capsys.readouterr().out
    assert "expected differences" in out and declaration("manifest.json").why in out and "PROBLEM" not in out


def test_results_that_differ_are_problems_naming_the_key_cell_or_member(experiment, experiment_copy, capsys):
    _edit_json(experiment_copy / EVALUATED / "metrics.json", lambda d: d["summary"].update(base=1.0))
    _edit_json(experiment_copy / TRAINED / "provenance.json",
               lambda d: (d["time"].update(wall_seconds=1.0), d["inputs"].update(epochs_run=99)))
    _edit_json(experiment_copy / "manifest.json",
               lambda d: next(e for e in d["files"] if e["path"] == f"{TRAINED}/prompts.safetensors")
               .update(sha256="0" * 64))
    table = experiment_copy / "provenance" / "base2novel.csv"
    table.write_text(table.read_text().replace("\ncoop,", "\nkooc,", 1))
    log = experiment_copy / TRAINED / "train_log.csv"
    log.write_text(log.read_text() + "99,0.1,0.1,0.1,\n")
    with (experiment_copy / TRAINED / "prompts.safetensors").open("ab") as fh:
        fh.write(b"\0")
    (experiment_copy / "figures" / "stray.png").write_bytes(b"png")
    _edit_crate(experiment_copy / "crate.zip", {f"results/reduced/{EVALUATED}/metrics.json": lambda d: d + b" "})

    result = compare(experiment, experiment_copy)
    assert not result.same
    problems = {d.path: d.detail for d in result.problems}
    assert problems[f"{EVALUATED}/metrics.json"] == "differs at summary.base"
    assert problems[f"{TRAINED}/provenance.json"] == "differs at inputs.epochs_run"
    assert problems["manifest.json"] == f"differs at files[{TRAINED}/prompts.safetensors].sha256"
    assert "column method: 'coop' vs 'kooc'" in problems["provenance/base2novel.csv"]
    assert problems[f"{TRAINED}/train_log.csv"].endswith("lines")
    assert "sha256" in problems[f"{TRAINED}/prompts.safetensors"]
    assert problems["figures/stray.png"] == "only in B"
    assert f"results/reduced/{EVALUATED}/metrics.json: same JSON content, different bytes" in problems["crate.zip"]
    assert main(["compare", str(experiment), str(experiment_copy)]) == 1
    assert "DIFFERENT: 8 file(s)" in capsys.readouterr().out


def test_the_audit_states_every_volatile_declaration(experiment):
    report = (experiment / "audit.txt").read_text()
    assert report.startswith("bmip audit of results/reduced\n")  # not the absolute path of the run's folder
    for declared in DECLARED:
        assert f"{declared.files}: {declared.fields()} — {declared.why}" in report


def test_the_declaration_covers_only_records_of_the_execution():
    """Results are never volatile: a change in one is always a problem."""
    for result in ("config.yaml", "splits/toy/shot_2-seed_1.json", f"{EVALUATED}/metrics.json",
                   f"{EVALUATED}/gates.json", f"{TRAINED}/prompts.safetensors", f"{TRAINED}/train_log.csv",
                   "tables/base2novel.csv", "tables/base2novel.md", "tables/base2novel.tex",
                   "figures/hm_per_dataset.png", "figures/hm_per_dataset.pdf", "audit.txt",
                   "crate.zip/workflow/Snakefile"):
        assert declaration(result) is None, result
    for record in (f"{TRAINED}/provenance.json", f"{EVALUATED}/provenance.json", "logs/train/base2novel/coop/toy.log",
                   "cost.csv", "cost.md", "manifest.json", "crate.zip", "crate.zip/ro-crate-metadata.json",
                   "provenance/open_world.csv"):
        assert declaration(record) is not None, record
