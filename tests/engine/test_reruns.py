"""The pieces that make results match their inputs, one by one: the image inventory, the ledger of
what jobs wrote, the settings and code each stage depends on, and the experiment lock."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bmip import ledger
from bmip import workflow_lock as WL
from bmip.config import validate
from bmip.schema import SCHEMA_FILE
from bmip.engine import dependencies as DEP
from bmip.engine import inventory as INV
from tests.engine.toy import make_toy_dataset, toy_config


@pytest.fixture()
def toy(tmp_path):
    make_toy_dataset(tmp_path / "data")
    return validate(toy_config(tmp_path, methods=["coop"], protocols={"base2novel": {"datasets": ["toy"]}}))


def _inventory(config):
    return json.loads(INV.inventory_path(Path(config["results_dir"]) / "toy", "toy").read_text())


def test_inventory_is_rewritten_only_when_the_images_it_records_change(toy, tmp_path):
    assert INV.update_inventories(toy, ["toy"]) == ["toy"]
    first = _inventory(toy)
    assert first["files"]["n"] == 5 * (4 + 3 + 4)  # per class: 4-shot train, val (3: all it has), the 4 test images
    path = INV.inventory_path(Path(toy["results_dir"]) / "toy", "toy")
    stamp = path.stat().st_mtime_ns
    image = tmp_path / "data" / "toy" / "images" / "red" / "test_0.png"
    data = image.read_bytes()
    os.utime(image, (time.time() + 10, time.time() + 10))  # touched: same content
    assert INV.update_inventories(toy, ["toy"]) == [] and path.stat().st_mtime_ns == stamp
    image.write_bytes((tmp_path / "data" / "toy" / "images" / "blue" / "test_0.png").read_bytes())
    assert INV.update_inventories(toy, ["toy"]) == ["toy"]
    assert _inventory(toy)["files"]["content_sha256"] != first["files"]["content_sha256"]
    assert INV.inventory_problems(Path(toy["results_dir"]) / "toy", toy, ["toy"]) == []
    image.write_bytes(data)
    problems = INV.inventory_problems(Path(toy["results_dir"]) / "toy", toy, ["toy"])
    assert len(problems) == 1 and "the images of toy" in problems[0] and "image content" in problems[0]


def test_an_image_no_run_reads_changes_no_record(toy, tmp_path):
    INV.update_inventories(toy, ["toy"])
    recorded = _inventory(toy)
    unread = [p for p in (tmp_path / "data" / "toy" / "images").rglob("train_*.png")]
    from bmip.engine.inventory import checked_parts

    parts = checked_parts(toy, ["toy"])["toy"][1]
    read_files = {it.path for items in parts.values() for it in items}
    spare = [p for p in unread if p.relative_to(tmp_path / "data" / "toy" / "images").as_posix() not in read_files]
    assert spare, "4 of 6 train images per class are read: two are not"
    spare[0].write_bytes(b"anything")
    assert INV.update_inventories(toy, ["toy"]) == [] and _inventory(toy) == recorded


def test_ledger_tells_changed_from_touched_and_sets_aside_without_deleting(tmp_path):
    exp = tmp_path / "results" / "x"
    out = exp / "a" / "metrics.json"
    out.parent.mkdir(parents=True)
    out.write_text('{"acc": 1}')
    beside = tmp_path / "weights.pt"
    beside.write_bytes(b"w")
    done = subprocess.run([sys.executable, "-m", "bmip.ledger", str(exp), str(out), str(beside)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert ledger.changed_files(exp) == {}
    os.utime(out, (time.time() + 10, time.time() + 10))
    assert ledger.changed_files(exp) == {}  # touched, same bytes
    out.write_text('{"acc": 2}')
    beside.write_bytes(b"v")
    changed = ledger.changed_files(exp)
    assert sorted(changed) == ["../../weights.pt", "a/metrics.json"] and "where its job wrote 10 bytes" in \
        changed["a/metrics.json"]
    folder = ledger.set_aside(exp, sorted(changed))
    assert not out.exists() and (folder / "a" / "metrics.json").read_text() == '{"acc": 2}'
    assert (folder / "outside" / "outside" / "weights.pt").read_bytes() == b"v"
    assert ledger.changed_files(exp) == {}  # gone: the workflow rebuilds them


def test_every_config_key_is_declared_as_changing_numbers_or_not():
    keys = set(yaml.safe_load(SCHEMA_FILE.read_text())["properties"])
    declared = set(DEP.NO_NUMBERS) | {k for stage in DEP.SETTINGS.values() for k in stage}
    assert keys == declared, (keys - declared, declared - keys)


def test_train_depends_on_eval_batch_size_only_where_validation_picks_the_epoch():
    config = {"device": "cpu", "precision": "fp32", "eval_batch_size": 8, "workers": 0, "selection": {"mode": "last"}}
    assert "eval_batch_size" not in DEP.settings(config, "train")
    config["selection"]["mode"] = "best_val"
    assert DEP.settings(config, "train")["eval_batch_size"] == 8
    assert DEP.settings(config, "evaluate") == {"device": "cpu", "precision": "fp32", "eval_batch_size": 8}


def test_code_fingerprint_follows_the_code_a_stage_imports_and_ignores_docstrings(tmp_path, monkeypatch):
    assert "bmip.engine.train" in DEP.modules("train") and "bmip.methods.bmip" in DEP.modules("train")
    assert "bmip.engine.train" not in DEP.modules("tables")
    assert "bmip.report.tables" not in DEP.modules("train")
    package = tmp_path / "bmip"
    (package / "engine").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "engine" / "__init__.py").write_text("")
    module = package / "engine" / "train.py"
    monkeypatch.setattr(DEP, "PACKAGE", package)

    def fingerprint(source: str) -> str:
        module.write_text(source)
        DEP._parsed.cache_clear()
        DEP.code_fingerprint.cache_clear()
        return DEP.code_fingerprint("train")

    base = fingerprint('"""Doc."""\nx = 1  # a comment\n')
    assert fingerprint('"""Another doc."""\n\nx = 1\n') == base
    assert fingerprint('"""Doc."""\nx = 2\n') != base
    DEP._parsed.cache_clear()
    DEP.code_fingerprint.cache_clear()


def test_invocation_tells_runs_from_dry_runs_unlocks_and_readers():
    assert WL.invocation(["--cores", "2"]) == "run"
    assert WL.invocation(["-pn"]) == "dry-run"
    assert WL.invocation(["--unlock"]) == "unlock"
    assert WL.invocation(["--report", "r.html"]) == "other"
    assert WL.invocation(["--delete-all-output"]) == "run"  # deletes: needs the lock like a run


def test_experiment_lock_refuses_a_second_holder_until_the_first_process_exits(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bmip import workflow_lock as W; "
                               "h = W.hold('results/x'); print('held', flush=True); time.sleep(60)"],
                              cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WL.ExperimentBusy, match=rf"results/x is being produced by a live run \(pid {holder.pid}"):
            WL.hold("results/x", tmp_path)
        with pytest.raises(WL.ExperimentBusy, match="--unlock refused"):
            WL.refuse_unlock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    WL.refuse_unlock(tmp_path)  # the kernel released it: not stale, nothing to remove
    handle = WL.hold("results/x", tmp_path)
    handle.close()
