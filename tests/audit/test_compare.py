"""`bmip compare`: a copy of a run is the same, wherever it lies, and so is a rerun that adds only
bookkeeping; a difference in a declared volatile field is expected, any other difference is a
problem that names the file and the key, cell or member."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

from bmip.audit.compare import Place, compare, compare_bytes
from bmip.audit.volatile import DECLARED, LOCATION, declaration
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


# --- experiments, not folders: wherever a folder lies, after a rerun that adds only bookkeeping ----

def _aside(experiment: Path, to: Path) -> Path:
    """The experiment folder alone, copied to `to` (whose path says nothing of results/<experiment>)."""
    shutil.copytree(experiment, to)
    return to


def _retime_provenance(folder: Path, relpath: str) -> None:
    """What a rerun of one job changes in its run's record, in the folder and in its crate."""
    _edit_json(folder / relpath / "provenance.json", lambda d: d["time"].update(end="2031-01-01T00:00:00+00:00"))
    _edit_crate(folder / "crate.zip", {f"results/reduced/{relpath}/provenance.json": _retime})


def test_a_folder_copied_aside_is_the_same_experiment(experiment, experiment_copy, tmp_path, capsys):
    # A later run's records against the copy: each crate's members are read as the files of its own
    # experiment folder, not under a folder taken from the copy's path ("copied aside/my ref").
    _retime_provenance(experiment_copy, EVALUATED)
    for aside in (_aside(experiment, tmp_path / "ref"), _aside(experiment, tmp_path / "copied aside" / "my ref")):
        assert compare(aside, experiment).text().endswith("SAME: every difference is in a declared volatile field "
                                                          "(0 file(s))\n")
        for a, b in ((aside, experiment_copy), (experiment_copy, aside)):
            result = compare(a, b)
            assert result.same, result.text()
            assert {d.path: d.detail for d in result.differences} == {
                f"{EVALUATED}/provenance.json": "time",
                "crate.zip": "members that differ only in declared fields, and their timestamps"}
        assert main(["compare", str(aside), str(experiment_copy)]) == 0
        assert capsys.readouterr().out.rstrip().endswith("SAME: every difference is in a declared volatile field "
                                                         "(2 file(s))")


def test_a_crate_made_where_the_copy_lies_is_the_same_experiment(experiment, tmp_path):
    """`bmip crate` on a copied folder puts the experiment under the copy's own location (its
    members as paths, its ids as URI paths, in the order of those)."""
    from bmip.audit.crate import write_crate

    aside = _aside(experiment, tmp_path / "copied aside" / "reduced")
    write_crate(aside, aside / "crate.zip")
    with zipfile.ZipFile(aside / "crate.zip") as archive:
        assert f"copied aside/reduced/{EVALUATED}/metrics.json" in archive.namelist()
    result = compare(experiment, aside)
    assert result.same, result.text()
    (crate,) = result.differences
    assert crate.path == "crate.zip" and crate.expected
    metadata = compare_bytes(
        "crate.zip/ro-crate-metadata.json", zipfile.ZipFile(experiment / "crate.zip").read("ro-crate-metadata.json"),
        zipfile.ZipFile(aside / "crate.zip").read("ro-crate-metadata.json"), (Place.of(experiment), Place.of(aside)))
    assert metadata.expected
    assert metadata.detail == ("the experiment folder's location in paths (results/reduced in A, "
                               "copied aside/reduced, copied%20aside/reduced in B)")


def test_paths_are_compared_relative_to_each_experiment_folder(experiment, tmp_path):
    """A record that names its folder by an absolute path (a results_dir given as one) is the same
    record; one that names another file under it is not."""
    aside = _aside(experiment, tmp_path / "copied aside" / "my ref")
    record = f"{EVALUATED}/provenance.json"
    checkpoint = "train/base2novel/coop/toy/seed1/prompts.safetensors"
    _edit_json(aside / record, lambda d: d["inputs"].update(checkpoint=f"{aside}/{checkpoint}"))
    result = compare(experiment, aside)
    assert result.same, result.text()
    (found,) = result.differences
    assert found.path == record and found.expected
    # (the record names its features file under results/reduced still: B names its folder both ways)
    assert found.detail == (f"the experiment folder's location in paths (results/reduced in A, {aside}, "
                            "results/reduced in B)")
    assert found.declared == declaration(record) and found.detail in result.text()
    # A text that names the folder (an audit report of the copy, by its path) is the same text.
    report = aside / "audit.txt"
    report.write_text(report.read_text().replace("bmip audit of results/reduced", f"bmip audit of {aside}", 1))
    text = compare(experiment, aside).text()
    assert (f"1 x {LOCATION.files}: the experiment folder's location in paths (results/reduced in A, {aside} in B) "
            "(e.g. audit.txt)") in text and LOCATION.why in text and text.rstrip().endswith("(2 file(s))")

    _edit_json(aside / record, lambda d: d["inputs"].update(checkpoint=f"{aside}/{checkpoint.replace('1', '2')}"))
    problems = {d.path: d.detail for d in compare(experiment, aside).problems}
    assert problems == {record: "differs at inputs.checkpoint"}
    # Another experiment's folder is not this one's location, even under the same results_dir.
    _edit_json(aside / record, lambda d: d["inputs"].update(checkpoint=f"results/other/{checkpoint}"))
    assert {d.path for d in compare(experiment, aside).problems} == {record}


def test_a_changed_metric_in_a_copied_folder_is_named(experiment, tmp_path, capsys):
    aside = _aside(experiment, tmp_path / "copied aside" / "my ref")
    _edit_json(aside / EVALUATED / "metrics.json", lambda d: d["summary"].update(base=1.0))
    result = compare(experiment, aside)
    assert [(d.path, d.detail) for d in result.problems] == [(f"{EVALUATED}/metrics.json", "differs at summary.base")]
    assert main(["compare", str(experiment), str(aside)]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM {EVALUATED}/metrics.json: differs at summary.base" in out and "DIFFERENT: 1 file(s)" in out


COST_HEADER = ("rule,jobs,job_seconds,runs,run_seconds,mean_run_seconds,max_run_seconds,peak_rss_mib,hardware,"
               "image_forwards,image_features_reused\n")
COST_TRAIN = 'train,6,24.565,12,1.084,0.09,0.167,1065.700,"cpu, AMD EPYC, 1 threads",,\n'
COST_TABLES = "tables,1,0.575,0,,,,,,,\n"


def test_cost_rows_a_rerun_adds_are_bookkeeping_but_its_runs_are_compared():
    """A rerun's cost.csv counts its own jobs, and those that ran after the first summary (manifest,
    audit, crate: rows of Snakemake jobs only); the runs and image forwards it counts are results."""
    first = (COST_HEADER + COST_TRAIN + COST_TABLES + "total,7,25.140,12,1.084,,0.167,1065.700,cpu,40,400\n").encode()
    rerun = (COST_HEADER + COST_TRAIN.replace("6,24.565", "7,31.002") + COST_TABLES.replace("0.575", "0.612")
             + "manifest,1,0.312,0,,,,,,,\naudit,1,0.714,0,,,,,,,\n"
             + "total,10,33.000,12,1.084,,0.167,1065.700,cpu,40,400\n").encode()
    found = compare_bytes("cost.csv", first, rerun)
    assert found.expected, found.detail
    assert found.detail == ("columns jobs, job_seconds; rows holding only those columns: rule 'manifest' only in B, "
                            "rule 'audit' only in B")
    more_runs = rerun.replace(b"train,7,31.002,12,", b"train,7,31.002,13,")
    assert compare_bytes("cost.csv", first, more_runs).detail == "rule 'train' column runs: '12' vs '13'"
    lost = (COST_HEADER + COST_TABLES).encode()
    assert not compare_bytes("cost.csv", first, lost).expected
    assert "rule 'train' only in A" in compare_bytes("cost.csv", first, lost).detail


def test_a_rerun_that_adds_only_bookkeeping_is_the_same(workflow_run, experiment, tmp_path, capsys):
    """The run's folder (with Snakemake's records) copied and rerun with `--forcerun evaluate_base2novel`:
    new run times, logs, cost rows, manifest and crate; against the reference copied aside: SAME."""
    from tests.workflow.reduced import snakemake_command

    reference = _aside(experiment, tmp_path / "copied aside" / "reference")
    workdir = tmp_path / "rerun"
    shutil.copytree(workflow_run, workdir)
    done = subprocess.run(snakemake_command(workdir, workdir / "config.yaml", "--cores", "2", "--forcerun",
                                            "evaluate_base2novel"), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    rerun = workdir / "results" / "reduced"
    assert (rerun / "cost.csv").read_bytes() != (reference / "cost.csv").read_bytes()
    result = compare(reference, rerun)
    assert result.same, result.text()
    found = {d.path: d for d in result.differences}
    assert found[f"{EVALUATED}/provenance.json"].detail == "time"
    assert found["cost.csv"].expected and "crate.zip" in found
    assert main(["compare", str(reference), str(rerun)]) == 0
    assert "SAME" in capsys.readouterr().out
    _edit_json(rerun / EVALUATED / "metrics.json", lambda d: d["summary"].update(base=1.0))
    assert {d.path: d.detail for d in compare(reference, rerun).problems} == {
        f"{EVALUATED}/metrics.json": "differs at summary.base"}
