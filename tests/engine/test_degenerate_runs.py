"""A run started on degenerate data: refused before training with the workflow start's message, or,
for classes with fewer images than `shots`, trained as Dassl samples them and named in the log, the
provenance and the tables."""
from __future__ import annotations

import json
import logging

import pytest

from bmip.config import validate
from bmip.data.errors import DegenerateDatasetError
from bmip.engine import paths
from bmip.engine.train import train
from bmip.report.tables import write_tables
from tests.engine.toy import make_toy_dataset, toy_config


def _toy(tmp_path, keep):
    """The toy dataset with each split list edited by `keep(split, rows) -> rows`, and its config."""
    folder = make_toy_dataset(tmp_path / "data")
    split = json.loads((folder / "split.json").read_text())
    (folder / "split.json").write_text(json.dumps({key: keep(key, rows) for key, rows in split.items()}))
    return validate(toy_config(tmp_path, data_root=str(tmp_path / "data")))


def test_a_class_with_fewer_images_than_shots_is_named_and_recorded(tmp_path, caplog):
    # red (label 0, a base class) keeps 2 of its 6 training images; shots is 4.
    config = _toy(tmp_path, lambda key, rows: [r for r in rows if key != "train" or r[1] != 0 or r[0] < "red/train_2"])
    with caplog.at_level(logging.WARNING, logger="bmip"):
        out = train(config, "base2novel", "zsclip", "toy", 1)
    assert ("toy: 1 class has fewer than shots=4 training images, so all of its images are used, as Dassl samples: "
            "'red colour' (2). The run's provenance.json records them (inputs.short_classes)") in caplog.text
    record = json.loads((out / paths.PROVENANCE).read_text())
    assert record["inputs"]["short_classes"] == {"red colour": 2}
    assert record["inputs"]["train"]["n_images"] == 2 + 4 + 4  # Dassl's sampling: red whole, the others 4 each


def test_a_full_dataset_records_no_short_class(tmp_path):
    config = _toy(tmp_path, lambda key, rows: rows)
    out = train(config, "base2novel", "zsclip", "toy", 1)
    assert json.loads((out / paths.PROVENANCE).read_text())["inputs"]["short_classes"] == {}


def test_training_a_two_class_dataset_is_refused_before_anything_is_written(tmp_path):
    config = _toy(tmp_path, lambda key, rows: [r for r in rows if r[1] < 2])
    with pytest.raises(DegenerateDatasetError) as err:
        train(config, "base2novel", "zsclip", "toy", 1)
    assert str(err.value).splitlines() == [
        f"protocols.{protocol}.datasets[0]: dataset 'toy' has 2 classes: CoOp's base/new split (base = the first "
        "ceil(n/2) labels, new = the rest) gives it 1 base and 1 new, and an accuracy over fewer than 2 classes "
        "means nothing (over one class it is 100% whatever the model does); base-to-novel and open-world need at "
        "least 2 classes in each half, so at least 4 classes. Add classes to 'toy', or remove it from "
        f"protocols.{protocol}.datasets."
        for protocol in ("base2novel", "open_world")
    ]
    assert not paths.experiment_dir(config).exists()


def test_training_a_one_class_source_is_refused(tmp_path):
    config = _toy(tmp_path, lambda key, rows: [r for r in rows if r[1] == 0])
    with pytest.raises(DegenerateDatasetError, match=r"^protocols.cross_dataset.source: dataset 'toy' has 1 class, "):
        train(config, "cross_dataset", "zsclip", "toy", 1)


def test_the_markdown_tables_note_short_classes(tmp_path):
    """Tables read `short_classes` from the metrics files (bmip.engine.evaluate copies the training
    run's record there); the CSV, which the audit recomputes, is unchanged."""
    files = []
    for seed in (1, 2):
        for dataset, short in (("toy", {"red colour": 2}), ("other", {})):
            path = tmp_path / "base2novel" / "zsclip" / dataset / f"seed{seed}" / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"protocol": "base2novel", "method": "zsclip", "dataset": dataset, "seed": seed,
                                        "trained_on": dataset, "summary": {"base": 80.0, "novel": 60.0, "hm": 68.57},
                                        "short_classes": short}))
            files.append(path)
    write_tables(files, tmp_path / "tables")
    text = (tmp_path / "tables" / "base2novel.md").read_text()
    assert text.endswith("\nNote: toy was trained on fewer than `shots` images in 1 class (all of its images are "
                         "used, as Dassl samples): red colour (2).\n")
    assert "Note" not in (tmp_path / "tables" / "base2novel.csv").read_text()
    assert "Note" not in (tmp_path / "tables" / "open_world.md").read_text()
