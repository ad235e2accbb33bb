"""A full disk never leaves a result that looks finished: no partial split file, checkpoint or
metrics.json; the job fails saying the disk is full and where; once space is freed the rerun
writes exactly the bytes of an uninterrupted run.

The full disk is simulated at fsync, after the data was written, as delayed allocation (ext4,
XFS, NFS) often reports it: the partial temporary file is on disk when the error comes.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bmip.engine import paths
from bmip.io import DiskFullError


@pytest.fixture
def full_for(monkeypatch) -> set[str]:
    """The names of the files that, from now on, cannot be written for lack of space (a set the
    test changes: empty it to free the space)."""
    real_fsync, full = os.fsync, set()

    def fsync(fd: int) -> None:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if any(name.startswith(f".{target}.") for target in full):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return full


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_split_file(tmp_path, toy_data, full_for, caplog):
    from bmip.cli import main

    args = ["splits", "toy", "--root", str(toy_data), "--shots", "2", "--seed", "1"]
    assert main([*args, "--out", str(tmp_path / "clean")]) == 0
    full_for.add("shot_2-seed_1.json")
    out = tmp_path / "full"
    assert main([*args, "--out", str(out)]) == 1
    assert (f"DiskFullError: [Errno 28] no space left on the device holding {out / 'toy'} while writing "
            "shot_2-seed_1.json") in caplog.text
    assert _files(out) == set()  # neither the split file nor its temporary file
    full_for.clear()
    assert main([*args, "--out", str(out)]) == 0
    name = "toy/shot_2-seed_1.json"
    assert _files(out) == {name} and (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()


def test_checkpoint_and_metrics(toy_setup, tmp_path, full_for):
    from bmip.engine.evaluate import evaluate
    from bmip.engine.train import train

    config, _ = toy_setup
    clean_train = train(config, "base2novel", "bmip", "toy", 1, tmp_path / "clean" / "train")
    clean_eval = evaluate(config, "base2novel", "bmip", "toy", 1, clean_train / paths.PROMPTS,
                          tmp_path / "clean" / "eval")
    out = tmp_path / "full"

    full_for.add(paths.PROMPTS)
    with pytest.raises(DiskFullError, match=rf"no space left on the device holding {out / 'train'} while writing "
                                            rf"{paths.PROMPTS} .*nothing was left half-written"):
        train(config, "base2novel", "bmip", "toy", 1, out / "train")
    left = _files(out)
    assert not any(name.endswith(paths.PROMPTS) or name.endswith(".tmp") for name in left), left
    assert paths.PROVENANCE not in {Path(n).name for n in left}  # the training does not look finished

    full_for.clear()
    full_for.add(paths.METRICS)  # room for the checkpoint now, not for the evaluation's metrics
    trained = train(config, "base2novel", "bmip", "toy", 1, out / "train")
    with pytest.raises(DiskFullError, match=f"while writing {paths.METRICS} "):
        evaluate(config, "base2novel", "bmip", "toy", 1, trained / paths.PROMPTS, out / "eval")
    left = _files(out / "eval")
    assert not any(name.endswith(paths.METRICS) or name.endswith(".tmp") for name in left), left

    full_for.clear()  # space freed: the rerun gives the uninterrupted run's bytes
    finished = evaluate(config, "base2novel", "bmip", "toy", 1, trained / paths.PROMPTS, out / "eval")
    for clean, rerun, names in ((clean_train, trained, (paths.PROMPTS, paths.TRAIN_LOG)),
                                (clean_eval, finished, (paths.METRICS, paths.GATES))):
        for name in names:
            assert (rerun / name).read_bytes() == (clean / name).read_bytes(), name
