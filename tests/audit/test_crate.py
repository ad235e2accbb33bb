"""`bmip crate` and `bmip audit CRATE`: the experiment as one RO-Crate that validates against the
Workflow Run profiles offline, lists every output with its hash, describes every run, is the same
bytes when made twice, and fails its audit, naming the file or number, once anything in it changed."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from bmip.audit.crate import METADATA, jobs, write_crate
from bmip.audit.crate_check import audit_crate
from bmip.audit.crate_profiles import validate_crate
from bmip.audit.layout import Experiment, Run
from bmip.audit.manifest import write_manifest
from bmip.audit.records import RunRecord
from bmip.cli import main
from bmip.config import ConfigError, validate
from bmip.io import file_sha256

PREFIX = "results/reduced"
B2N_METRICS = "base2novel/coop/toy/seed1/metrics.json"
CHECKPOINT = "train/base2novel/coop/toy/seed1/prompts.safetensors"


def _entities(crate: Path) -> dict[str, dict]:
    """The crate's entities by id, from a zip or a folder."""
    if crate.suffix == ".zip":
        with zipfile.ZipFile(crate) as archive:
            doc = json.loads(archive.read(METADATA))
    else:
        doc = json.loads((crate / METADATA).read_text())
    return {e["@id"]: e for e in doc["@graph"]}


def _ids(value) -> set[str]:
    values = value if isinstance(value, list) else [value]
    return {v["@id"] for v in values}


def _problems(crate: Path) -> list[str]:
    report = audit_crate(crate)
    assert not report.passed
    return [f.line() for f in report.findings.problems]


def _mentions(lines: list[str], *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in lines)


def _zip(folder: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out


def _rewrite_hash(crate: Path, name: str) -> None:
    """Make the crate's metadata agree with the file as it is now (a careful forger)."""
    metadata = crate / METADATA
    doc = json.loads(metadata.read_text())
    data = (crate / name).read_bytes()
    for entity in doc["@graph"]:
        if entity["@id"] == name:
            entity["sha256"], entity["contentSize"] = hashlib.sha256(data).hexdigest(), str(len(data))
    metadata.write_text(json.dumps(doc, indent=4))


@pytest.fixture
def crate_dir(experiment, tmp_path) -> Path:
    """A fresh crate of the experiment as a folder (checkpoints listed by hash only), to tamper with."""
    return write_crate(experiment, tmp_path / "crate")


def test_workflow_crate_validates_against_the_profiles_offline(experiment, monkeypatch):
    # Any request that left the machine would fail: the validator must find the context in its cache.
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    report = audit_crate(experiment / "crate.zip", profiles=True)
    assert report.passed, report.text()
    assert report.findings.counts["RO-Crate profiles"] == 2  # ro-crate-1.1 and provenance-run-crate


def test_profile_validation_fails_a_crate_without_licence_or_language(crate_dir, tmp_path):
    doc = json.loads((crate_dir / METADATA).read_text())
    for entity in doc["@graph"]:
        if entity["@id"] == "./":
            del entity["license"]
        if entity["@id"] == "workflow/Snakefile":
            del entity["programmingLanguage"]
    (crate_dir / METADATA).write_text(json.dumps(doc))
    [result] = validate_crate(crate_dir, tmp_path / "cache" / "http", profiles=("provenance-run-crate",))
    assert not result.passed
    messages = " ".join(i["message"] for i in result.issues if i["severity"] == "REQUIRED")
    assert "license" in messages and "programmingLanguage" in messages, result.issues


def test_crate_lists_every_manifest_file_with_its_hash_and_size(experiment):
    crate = experiment / "crate.zip"
    entities = _entities(crate)
    with zipfile.ZipFile(crate) as archive:
        members = set(archive.namelist())
    manifest = json.loads((experiment / "manifest.json").read_text())
    for entry in manifest["files"] + manifest["logs"]:
        path = f"{PREFIX}/{entry['path']}"
        left_out = entry["path"].endswith(("prompts.safetensors", "image_features.safetensors"))
        entity = entities[f"#{path}" if left_out else path]
        assert "File" in entity["@type"]
        assert (entity["sha256"], int(entity["contentSize"])) == (entry["sha256"], entry["size"]), path
        assert (path in members) != left_out, path
    for name in ("manifest.json", "audit.txt", "logs/manifest.log", "logs/audit.log"):
        assert f"{PREFIX}/{name}" in members
    kept = [e for e in manifest["files"] if e["path"].endswith("/predictions.json.gz")]
    assert len(kept) == 20  # every evaluation's per-image predictions, in the crate
    assert all(entities[f"{PREFIX}/{e['path']}"]["encodingFormat"] == "application/gzip" for e in kept)
    assert f"{PREFIX}/crate.zip" not in members and f"{PREFIX}/logs/crate.log" not in members
    assert {"workflow/Snakefile", "workflow/rules/audit.smk", METADATA} <= members
    experiment_folder = entities[f"{PREFIX}/"]
    # + manifest.json, audit.txt and their rules' logs, written after the manifest
    assert len(_ids(experiment_folder["hasPart"])) == len(manifest["files"]) + len(manifest["logs"]) + 4


def test_every_run_has_its_create_action_with_inputs_and_outputs(experiment):
    entities = _entities(experiment / "crate.zip")
    exp = Experiment.open(experiment)
    controls = [e for e in entities.values() if e["@type"] == "ControlAction"]
    runs = exp.expected_trainings() + exp.expected_evaluations()
    assert len(runs) == 12 + 20
    for run in runs:
        record = json.loads((exp.run_dir(run) / "provenance.json").read_text())
        action = entities[f"#run:{run.relpath}"]
        assert action["@type"] == "CreateAction"
        assert (action["startTime"], action["endTime"]) == (record["time"]["start"], record["time"]["end"])
        assert action["instrument"] == {"@id": f"#bmip@{record['code']['git_commit']}"
                                                + ("+dirty" if record["code"]["git_dirty"] else "")}
        outputs = {f"{PREFIX}/{p.relative_to(experiment).as_posix()}" for p in exp.run_dir(run).iterdir()}
        outputs = {f"#{o}" if o.endswith("prompts.safetensors") else o for o in outputs}
        assert _ids(action["result"]) == outputs
        data = record["inputs"]["train" if run.kind == "train" else "test"]
        if run.kind == "train":
            read = f"{PREFIX}/splits/{run.dataset}/shot_2-seed_{run.seed}.json"
        else:
            read = f"#{PREFIX}/{exp.training_of(run).relpath}/prompts.safetensors"
            assert entities[read]["sha256"] == record["inputs"]["checkpoint_sha256"]
        features = set()
        if run.kind != "train":  # zsclip and coop read their test set's frozen image features
            features = {f"#{PREFIX}/features/{run.dataset}/image_features.safetensors"}
            assert entities[next(iter(features))]["sha256"] == record["inputs"]["frozen_image_features"]["sha256"]
        assert _ids(action["object"]) == {read, *features, f"#input:{data['split_file']}", "#backbone:test-vit-tiny/none"}
        assert entities[f"#input:{data['split_file']}"]["sha256"] == data["split_file_sha256"]
        [control] = [c for c in controls if action["@id"] in _ids(c["object"])]
        rule = "train" if run.kind == "train" else f"evaluate_{run.protocol}"
        [job] = [entities[i] for i in _ids(control["object"]) if i.startswith("#job:")]
        assert job["instrument"] == {"@id": f"#rule:{rule}"} and control["instrument"] == {"@id": f"#step:{rule}"}
        assert job["startTime"] <= action["startTime"] and action["endTime"] <= job["endTime"]
    # Seeds are batched: one train job per (protocol, method, dataset) holds both seeds' runs.
    control = entities["#control:train/base2novel/coop/toy"]
    assert _ids(control["object"]) == {"#job:train/base2novel/coop/toy", "#run:train/base2novel/coop/toy/seed1",
                                       "#run:train/base2novel/coop/toy/seed2"}


def test_crate_describes_the_workflow_and_its_parameters(experiment):
    entities = _entities(experiment / "crate.zip")
    root = entities["./"]
    assert root["mainEntity"] == {"@id": "workflow/Snakefile"}
    assert "https://w3id.org/ro/wfrun/provenance/0.5" in _ids(root["conformsTo"])
    workflow = entities["workflow/Snakefile"]
    assert {"File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"} <= set(workflow["@type"])
    language = entities[workflow["programmingLanguage"]["@id"]]
    assert language["name"] == "Snakemake" and re.fullmatch(r"\d+\.\d+\.\d+", language["version"])
    manifest = json.loads((experiment / "manifest.json").read_text())
    rules = {e["rule"] for e in manifest["files"] + manifest["logs"]} | {"manifest", "audit"}
    assert _ids(workflow["step"]) == {f"#step:{rule}" for rule in rules}
    assert {f"#rule:{rule}" for rule in rules} <= _ids(workflow["hasPart"])
    run = entities["#workflow-run"]
    assert run["instrument"] == {"@id": "workflow/Snakefile"}
    assert {"#workflow-run", "#job:tables", "#run:train/base2novel/coop/toy/seed1"} <= _ids(root["mentions"])
    values = {entities[i]["name"]: entities[i]["value"] for i in _ids(run["object"]) if i.startswith("#value:")}
    assert values["seeds"] == "[1, 2]" and values["shots"] == 2 and values["backbone.model"] == "test-vit-tiny"
    assert values["protocols.cross_dataset.source"] == "toy" and values["crate.license"] == "MIT"
    assert _ids(workflow["input"]) == {f"#param:{key}" for key in values}
    assert {f"{PREFIX}/tables/base2novel.csv", f"{PREFIX}/logs/tables.log"} <= _ids(entities["#job:tables"]["result"])
    assert _ids(entities["#job:splits/toy"]["result"]) == {
        f"{PREFIX}/splits/toy/shot_2-seed_1.json", f"{PREFIX}/splits/toy/shot_2-seed_2.json",
        f"{PREFIX}/logs/splits/toy.log", f"{PREFIX}/logs/benchmarks/fewshot_splits/toy.tsv"}


def test_same_experiment_gives_the_same_crate(experiment, tmp_path):
    first, second = write_crate(experiment, tmp_path / "a.zip"), write_crate(experiment, tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes() == (experiment / "crate.zip").read_bytes()
    # The only times in it are the runs' own.
    times = set()
    for path in experiment.rglob("provenance.json"):
        record = json.loads(path.read_text())
        times |= {record["time"]["start"], record["time"]["end"]}
    text = zipfile.ZipFile(first).read(METADATA).decode()
    stamps = set(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[^\"]*", text))
    assert stamps and stamps <= times
    assert len({info.date_time for info in zipfile.ZipFile(first).infolist()}) == 1


def test_audit_passes_on_the_fresh_crate_zip_and_folder(experiment, crate_dir, capsys):
    assert main(["audit", str(experiment / "crate.zip")]) == 0
    out = capsys.readouterr().out
    assert "PASSED: 0 problem(s)" in out and "files against the crate's metadata" in out
    assert "table numbers" in out and "files against manifest.json" in out
    assert main(["audit", str(crate_dir)]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_audit_names_a_file_deleted_from_the_zip(crate_dir, tmp_path):
    (crate_dir / PREFIX / B2N_METRICS).unlink()
    problems = _problems(_zip(crate_dir, tmp_path / "tampered.zip"))
    assert _mentions(problems, f"{PREFIX}/{B2N_METRICS}", f"listed in {METADATA} but missing from the crate")
    assert _mentions(problems, B2N_METRICS, "listed in manifest.json but missing")


def test_audit_names_a_flipped_checkpoint_byte(experiment, tmp_path):
    crate = write_crate(experiment, tmp_path / "crate", include_checkpoints=True)
    path = crate / PREFIX / CHECKPOINT
    assert _entities(crate)[f"{PREFIX}/{CHECKPOINT}"]["sha256"] == file_sha256(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    problems = _problems(crate)
    assert _mentions(problems, f"{PREFIX}/{CHECKPOINT}", "changed since the crate was made")
    assert _mentions(problems, CHECKPOINT, "changed since base2novel/coop/toy/seed1 evaluated it")


@pytest.mark.parametrize("forged", [False, True], ids=["edited", "edited-and-crate-metadata-rewritten"])
def test_audit_names_an_edited_accuracy(crate_dir, forged):
    path = crate_dir / PREFIX / B2N_METRICS
    doc = json.loads(path.read_text())
    doc["summary"]["base"] += 0.0001
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    if forged:
        _rewrite_hash(crate_dir, f"{PREFIX}/{B2N_METRICS}")
    problems = _problems(crate_dir)
    assert _mentions(problems, f"{PREFIX}/{B2N_METRICS}", "changed since the crate was made") != forged
    assert _mentions(problems, B2N_METRICS, "changed since manifest.json was written")
    assert _mentions(problems, B2N_METRICS, "summary.base")
    assert _mentions(problems, "tables/base2novel.csv", "coop / toy, base:", B2N_METRICS)


def test_audit_names_a_table_cell_off_by_one_unit_even_with_every_hash_rewritten(crate_dir):
    exp_dir = crate_dir / PREFIX
    table = exp_dir / "tables" / "cross_dataset.csv"
    lines = table.read_text().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    original = row[header.index("accuracy")]
    row[header.index("accuracy")] = f"{float(original) + 0.0001:.4f}"
    lines[1] = ",".join(row)
    table.write_text("\n".join(lines) + "\n")
    write_manifest(Experiment.open(exp_dir))
    for name in ("tables/cross_dataset.csv", "manifest.json"):
        _rewrite_hash(crate_dir, f"{PREFIX}/{name}")
    problems = _problems(crate_dir)
    assert problems == [p for p in problems if "tables/cross_dataset.csv" in p]
    assert _mentions(problems, f"{row[0]} / {row[1]}, accuracy", f"the table says {row[header.index('accuracy')]}",
                     f"its runs give {original}")


def test_audit_names_a_file_the_metadata_does_not_list(crate_dir):
    (crate_dir / PREFIX / "notes.txt").write_text("added after the crate was made\n")
    problems = _problems(crate_dir)
    assert _mentions(problems, f"{PREFIX}/notes.txt", f"not listed in {METADATA}")


def test_audit_refuses_a_zip_with_a_parent_member(experiment, tmp_path, capsys):
    name = "../outside.txt"
    crate = tmp_path / "evil.zip"
    shutil.copy(experiment / "crate.zip", crate)
    with zipfile.ZipFile(crate, "a") as archive:
        archive.writestr(name, "outside")
    assert main(["audit", str(crate)]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM evil.zip: entry {name!r} contains '..'; refusing the whole archive" in out


def test_not_a_crate_exits_2(tmp_path):
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("notes.txt", "no metadata")
    assert main(["audit", str(empty)]) == 2
    text = tmp_path / "text.zip"
    text.write_text("not a zip")
    assert main(["audit", str(text)]) == 2


def test_crate_section_names_authors_and_licence(experiment_copy, tmp_path):
    config = yaml.safe_load((experiment_copy / "config.yaml").read_text())
    orcid = "https://orcid.org/0000-0002-1825-0097"
    config["crate"] = {"license": "CC-BY-4.0", "authors": [{"name": "Josiah Carberry", "orcid": orcid}]}
    (experiment_copy / "config.yaml").write_text(yaml.safe_dump(validate(config)))
    entities = _entities(write_crate(experiment_copy, tmp_path / "crate.zip"))
    assert entities["./"]["license"] == {"@id": "https://spdx.org/licenses/CC-BY-4.0"}
    assert entities["./"]["author"] == {"@id": orcid} and entities[orcid]["name"] == "Josiah Carberry"
    assert entities["#workflow-run"]["agent"] == {"@id": orcid}
    config["crate"] = {"authors": [{"nam": "typo"}]}
    with pytest.raises(ConfigError, match="crate.authors.0"):
        validate(config)


def test_jobs_follow_the_log_files_when_datasets_are_batched(tmp_path):
    """With workflow.batch_datasets, one train and one evaluate job per method cover every dataset."""
    config = {"workflow": {"batch_datasets": True}, "protocols": {}}
    exp = Experiment(path=tmp_path, config=config, root=tmp_path)
    files = ["logs/train/coop.log", "logs/evaluate/coop.log", "logs/evaluate/maple.log", "logs/tables.log",
             "train/base2novel/coop/toy/seed1/prompts.safetensors", "train/cross_dataset/coop/src/seed1/train_log.csv",
             "base2novel/coop/toy/seed1/metrics.json", "domain_generalization/maple/v2/seed3/metrics.json",
             "tables/base2novel.csv"]
    records = [RunRecord(Run("train", "base2novel", "coop", "toy", 1), {}),
               RunRecord(Run("evaluate", "domain_generalization", "maple", "v2", 3), {})]
    found = {job.key: job for job in jobs(exp, files, records)}
    assert set(found) == {"train/coop", "evaluate/coop", "evaluate/maple", "tables"}
    assert found["train/coop"].outputs == ["logs/train/coop.log", "train/base2novel/coop/toy/seed1/prompts.safetensors",
                                           "train/cross_dataset/coop/src/seed1/train_log.csv"]
    assert sorted(found["evaluate/maple"].outputs) == ["domain_generalization/maple/v2/seed3/metrics.json",
                                                       "logs/evaluate/maple.log"]
    assert [r.run.dataset for r in found["train/coop"].runs] == ["toy"]
    assert [r.run.method for r in found["evaluate/maple"].runs] == ["maple"] and not found["evaluate/coop"].runs
