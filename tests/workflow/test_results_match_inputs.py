"""Results always match their inputs (issue 32), through the workflow on a small experiment whose
paths hold spaces and non-ASCII characters: a class-folder dataset and a one-CSV dataset.

Each case changes a finished copy of the experiment the way a user would, and checks the dry-run
plan (by rule and count), the rerun's results against a fresh run on the changed data, and the
audit.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bmip.data import load_dataset
from tests.workflow.reduced import snakemake_command
from tests.workflow.test_workflow import _job_counts

TIMEOUT = 900
DATA = "data Ü root"
RESULTS = "my results"
EXP = Path(RESULTS) / "edge"
CLASSES = ("red", "green", "blue", "yellow")
RGB = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def _image(path: Path, colour: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(RGB[colour]) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_data(workdir: Path) -> None:
    """pets: one folder per class (5 images each); sheet: a folder holding one data.csv with a
    split column."""
    root = workdir / DATA
    for c, colour in enumerate(CLASSES):
        for i in range(5):
            _image(root / "pets" / f"{colour} fur" / f"bild_{i}.png", colour, 100 * c + i)
    rows = ["path,label,classname,split"]
    for c, colour in enumerate(CLASSES):
        for i, split in enumerate(("train", "train", "val", "test", "test")):
            _image(root / "sheet" / "images" / f"{colour}_{i}.png", colour, 1000 + 100 * c + i)
            rows.append(f"images/{colour}_{i}.png,{c},{colour},{split}")
    (root / "sheet" / "data.csv").write_text("\n".join(rows) + "\n")


def edge_config(workdir: Path, **changes) -> Path:
    config = {
        "experiment": "edge",
        "results_dir": RESULTS,
        "data_root": DATA,
        "backbone": {"model": "test-vit-tiny", "pretrained": "none"},
        "seeds": [1],
        "shots": 2,
        "eval_batch_size": 8,
        "methods": ["zsclip", "coop"],
        "protocols": {
            "base2novel": {"datasets": ["pets"]},
            "cross_dataset": {"source": "pets", "targets": ["sheet"]},
        },
        "recipes": {"default": {"coop": {"epochs": 1, "batch_size": 4, "options": {"n_ctx": 2}}}},
        "workflow": {"resources": {
            "train": {"threads": 1, "mem_mb": 2000, "runtime": 10},
            "evaluate": {"threads": 1, "mem_mb": 2000, "runtime": 10},
            "light": {"threads": 1, "mem_mb": 1000, "runtime": 5},
        }},
    }
    config.update(changes)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def _snakemake(workdir: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(workdir, config, *extra), capture_output=True, text=True,
                          timeout=TIMEOUT)


def _plan(workdir: Path, config: Path) -> dict[str, int]:
    dry = _snakemake(workdir, config, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    out = dry.stdout + dry.stderr
    return {} if "Nothing to be done" in out else _job_counts(dry.stdout)


def _run(workdir: Path, config: Path) -> subprocess.CompletedProcess:
    done = _snakemake(workdir, config, "--cores", "2")
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    return done


def _results(workdir: Path) -> dict[str, bytes]:
    """The files whose bytes are the experiment's numbers: metrics, records, tables."""
    exp = workdir / EXP
    names = [*exp.glob("*/*/*/seed*/metrics.json"), *exp.glob("*/*/*/seed*/gates.json"),
             *exp.glob("*/*/*/seed*/mechanism.json"), *exp.glob("tables/*.csv")]
    return {str(p.relative_to(exp)): p.read_bytes() for p in sorted(names)}


def _audit(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bmip.cli", "audit", str(EXP)], cwd=workdir, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> Path:
    """A finished run of the edge experiment (its working folder)."""
    workdir = tmp_path_factory.mktemp("edge") / "work dir é"
    workdir.mkdir()
    make_data(workdir)
    _run(workdir, edge_config(workdir))
    return workdir


def _copy(edge: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished experiment (times kept, as Snakemake compares them)."""
    workdir = tmp_path / "copy ü"
    shutil.copytree(edge, workdir, symlinks=True)
    return workdir, workdir / "config.yaml"


def test_the_edge_experiment_ran_through_paths_with_spaces_and_its_rerun_does_nothing(edge):
    assert "PASSED" in (edge / EXP / "audit.txt").read_text()
    assert (edge / EXP / "cross_dataset" / "coop" / "sheet" / "seed1" / "metrics.json").is_file()
    assert _plan(edge, edge / "config.yaml") == {}


def test_changed_images_rerun_their_dataset_and_give_the_numbers_of_a_fresh_run(edge, tmp_path):
    workdir, config = _copy(edge, tmp_path)
    pets = workdir / DATA / "pets"
    # A touch, or a copy of the same bytes, changes no number: nothing reruns.
    image = pets / load_dataset("pets", workdir / DATA).test[0].path  # a test image: its features change
    data = image.read_bytes()
    os.utime(image, (time.time() + 5, time.time() + 5))
    image.write_bytes(data)
    assert _plan(workdir, config) == {}
    # Replaced content of one image: pets' check, split, features, trainings and evaluations, and
    # everything downstream; nothing of sheet but the evaluations of pets' models on it.
    _image(image, image.parent.name.split()[0], 7)  # another image of its class
    jobs = _plan(workdir, config)
    assert {k: jobs.get(k) for k in ("check_data", "fewshot_splits", "image_features", "train", "evaluate_base2novel",
                                     "evaluate_cross_dataset", "tables", "audit")} == {
        "check_data": 1, "fewshot_splits": 1, "image_features": 1, "train": 4, "evaluate_base2novel": 2,
        "evaluate_cross_dataset": 2, "tables": 1, "audit": 1}
    # An image added to a class (a new file in an existing folder) is seen the same way.
    _image(pets / "green fur" / "bild_9.png", "green", 9)
    assert _plan(workdir, config)["check_data"] == 1
    # The audit of the results as they stand refuses them: they are older than their images.
    audit = _audit(workdir)
    assert audit.returncode != 0
    assert "PROBLEM inputs/pets.json: the images of pets under " in audit.stdout
    assert f"{DATA}/pets changed since the results were computed (item lists, image content)" in audit.stdout
    _run(workdir, config)
    assert "PASSED" in (workdir / EXP / "audit.txt").read_text()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copytree(workdir / DATA, fresh / DATA)
    _run(fresh, edge_config(fresh))
    assert _results(workdir) == _results(fresh)
    features = Path(EXP) / "features" / "pets" / "image_features.safetensors"
    assert (workdir / features).read_bytes() == (fresh / features).read_bytes() != (edge / features).read_bytes()


def test_deleted_and_corrupted_results_are_rebuilt_by_a_plain_rerun(edge, tmp_path):
    workdir, config = _copy(edge, tmp_path)
    exp = workdir / EXP
    (exp / "base2novel" / "coop" / "pets" / "seed1" / "metrics.json").unlink()
    (exp / "base2novel" / "coop" / "pets" / "seed1" / "gates.json").unlink()
    (exp / "figures" / "base_vs_novel.png").unlink()
    checkpoint = exp / "train" / "base2novel" / "coop" / "pets" / "seed1" / "prompts.safetensors"
    checkpoint.write_bytes(b"not a checkpoint")
    audit = _audit(workdir)
    assert audit.returncode != 0 and "FAILED" in audit.stdout
    dry = _snakemake(workdir, config, "-n")
    assert "prompts.safetensors: 16 bytes" in dry.stderr and "A run sets them aside" in dry.stderr
    jobs = _job_counts(dry.stdout)
    assert jobs["evaluate_base2novel"] == 1 and jobs["figures"] == 1
    done = _run(workdir, config)
    assert "rebuilt now" in done.stderr
    assert _job_counts(done.stdout + done.stderr)["train"] == 1  # the corrupted checkpoint's training
    set_aside = list((exp / ".set_aside").rglob("prompts.safetensors"))
    assert len(set_aside) == 1 and set_aside[0].read_bytes() == b"not a checkpoint"  # kept, not deleted
    assert _results(workdir) == _results(edge)
    assert "PASSED" in (exp / "audit.txt").read_text()
    assert _plan(workdir, config) == {}


def test_a_setting_reruns_exactly_the_jobs_whose_numbers_it_changes(edge, tmp_path):
    workdir, config = _copy(edge, tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["eval_batch_size"] = 4  # evaluation and features; training only validates under best_val
    changed = workdir / "batch.yaml"
    changed.write_text(yaml.safe_dump(raw, allow_unicode=True))
    jobs = _plan(workdir, changed)
    assert "train" not in jobs and jobs["image_features"] == 2
    assert jobs["evaluate_base2novel"] == 2 and jobs["evaluate_cross_dataset"] == 2
    raw = yaml.safe_load(config.read_text())
    raw["workflow"]["resources"]["train"]["mem_mb"] = 3000  # no number: the job grid's requests only
    raw["crate"] = {"authors": [{"name": "A. Researcher"}]}  # the crate only
    changed.write_text(yaml.safe_dump(raw, allow_unicode=True))
    jobs = _plan(workdir, changed)
    assert not any(rule.startswith(("train", "evaluate", "image_features", "check_data", "tables")) for rule in jobs)
    assert jobs["crate"] == 1


def test_a_second_run_or_an_unlock_cannot_damage_a_live_run(edge, tmp_path):
    workdir = tmp_path / "live"
    workdir.mkdir()
    make_data(workdir)
    config = edge_config(workdir)
    live = subprocess.Popen(snakemake_command(workdir, config, "--cores", "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lock_folder = workdir / ".snakemake" / "bmip"
        deadline = time.time() + 120
        while not (list(lock_folder.glob("*.lock")) and (workdir / EXP / "config.yaml").exists()):
            assert live.poll() is None and time.time() < deadline, "the first run did not start"
            time.sleep(0.5)
        second = _snakemake(workdir, config, "--cores", "1")
        assert second.returncode != 0
        assert "is being produced by a live run (pid" in second.stderr and "nothing was started" in second.stderr
        unlock = _snakemake(workdir, config, "--unlock")
        assert unlock.returncode != 0 and "--unlock refused" in unlock.stderr
        assert (workdir / EXP / "config.yaml").exists()
        dry = _snakemake(workdir, config, "-n")
        assert dry.returncode == 0 and "a live run is producing" in dry.stderr
    finally:
        out, _ = live.communicate(timeout=TIMEOUT)
    assert live.returncode == 0, out[-4000:]
    assert _results(workdir) == _results(edge)  # byte for byte the undisturbed run's
    assert (workdir / EXP / "config.yaml").read_bytes() == (edge / EXP / "config.yaml").read_bytes()


def test_config_mistakes_are_refused_before_any_job_with_file_and_line(tmp_path):
    make_data(tmp_path)
    config = edge_config(tmp_path)
    text = config.read_text()
    config.write_text(text.replace("shots: 2\n", "shots: 2\nworkers: 0\nshots: 16\n"))
    done = _snakemake(tmp_path, config, "-n")
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "config.yaml gives a key twice" in out and "shots: line 9 and line 11" in out
    # A misspelt method under recipes names the nearest one.
    config.write_text(text.replace("    coop:\n", "    cop:\n"))
    done = _snakemake(tmp_path, config, "-n")
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "recipes.default.cop: 'cop' is not a method" in out and "did you mean 'coop'" in out
    assert not (tmp_path / RESULTS).exists()  # refused before anything was written
    # 4e-3 is the number it looks like (YAML 1.1 reads it as text).
    config.write_text(text.replace("      epochs: 1\n", "      epochs: 1\n      lr: 4e-3\n"))
    assert "lr: 4e-3" in config.read_text()
    done = _snakemake(tmp_path, config, "-n")
    assert done.returncode == 0, done.stdout[-3000:]  # text, 4e-3 would be "not of type 'number'"


def test_degenerate_data_is_refused_before_any_job(tmp_path):
    make_data(tmp_path)
    for colour in CLASSES[1:]:
        shutil.rmtree(tmp_path / DATA / "pets" / f"{colour} fur")
    done = _snakemake(tmp_path, edge_config(tmp_path), "-n")
    assert done.returncode != 0 and "protocols.base2novel.datasets[0]: dataset 'pets' has 1 class" in done.stdout
    make_data(tmp_path)
    shutil.rmtree(tmp_path / DATA / "pets" / "blue fur")
    (tmp_path / DATA / "pets" / "blue fur").symlink_to(tmp_path / DATA / "pets" / "red fur")
    done = _snakemake(tmp_path, edge_config(tmp_path), "-n")
    assert done.returncode != 0 and "class folders 'blue fur' and 'red fur' are one folder" in done.stdout
    assert not (tmp_path / RESULTS).exists()
