"""Your own datasets (class folders, CSV, CoOp JSON) load through the same interface as the paper's."""
from __future__ import annotations

import json

import pytest

from bmip.data import (
    DatasetNotFoundError,
    MissingImagesError,
    SplitFileError,
    fewshot_split,
    load_dataset,
    subsample_classes,
)
from bmip.data.custom import split_per_class

from .helpers import items, touch_all


def _folders(root, counts):
    touch_all(root, [f"{name}/{i:03d}.jpg" for name, n in counts.items() for i in range(n)])
    (root / "notes.txt").write_text("ignored")
    return root


def test_class_folders_with_automatic_split(tmp_path):
    root = _folders(tmp_path / "shapes", {"square": 10, "circle": 20, "star": 5})
    ds = load_dataset(root)
    assert ds.name == "shapes" and ds.classnames == ["circle", "square", "star"]  # sorted folder names
    counts = {c: [sum(it.classname == c for it in lst) for lst in (ds.train, ds.val, ds.test)] for c in ds.classnames}
    assert counts == {"circle": [10, 4, 6], "square": [5, 2, 3], "star": [2, 1, 2]}
    assert load_dataset(root).train == ds.train  # deterministic
    assert load_dataset({"root": root, "seed": 1}).train != ds.train
    assert len({it.path for it in ds.train + ds.val + ds.test}) == 35


def test_adding_a_class_keeps_the_other_classes_splits(tmp_path):
    root = _folders(tmp_path / "d", {"a": 10, "b": 10})
    before = [it.path for it in load_dataset(root).train if it.classname == "b"]
    _folders(root, {"aa": 6})
    after = [it.path for it in load_dataset(root).train if it.classname == "b"]
    assert before == after


def test_too_small_class_needs_a_split_file(tmp_path):
    root = _folders(tmp_path / "d", {"a": 10, "b": 3})
    with pytest.raises(SplitFileError, match="class 'b' has 3 images"):
        load_dataset(root)


def test_class_folders_with_a_split_file(tmp_path):
    root = _folders(tmp_path / "d", {"a": 2, "b": 2})
    doc = {"train": [["a/000.jpg", 0, "a"], ["b/000.jpg", 1, "b"]], "val": [], "test": [["a/001.jpg", 0, "a"]]}
    (tmp_path / "my_split.json").write_text(json.dumps(doc))
    ds = load_dataset({"format": "folders", "root": root, "split_file": "../my_split.json"})
    assert [it.path for it in ds.train] == ["a/000.jpg", "b/000.jpg"] and ds.image_root == root


def test_csv_with_split_column(tmp_path):
    touch_all(tmp_path / "imgs", ["x/1.png", "x/2.png", "y/1.png"])
    (tmp_path / "data.csv").write_text(
        "path,label,classname,split\nimgs/x/1.png,0,ex,train\nimgs/y/1.png,1,why,TRAIN\nimgs/x/2.png,0,ex,test\n"
    )
    ds = load_dataset(tmp_path / "data.csv")
    assert [it.path for it in ds.train] == ["imgs/x/1.png", "imgs/y/1.png"] and ds.val == []
    assert ds.classnames == ["ex", "why"] and ds.name == "data"


def test_csv_train_val_test_files(tmp_path):
    touch_all(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "train.csv").write_text("path,label,classname\na.jpg,0,a\nb.jpg,1,b\n")
    (tmp_path / "val.csv").write_text("path,label,classname\nb.jpg,1,b\n")
    (tmp_path / "test.csv").write_text("path,label,classname\nc.jpg,0,a\n")
    ds = load_dataset(tmp_path)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (2, 1, 1)


def test_csv_errors_name_file_and_line(tmp_path):
    (tmp_path / "d.csv").write_text("path,label\na.jpg,0\n")
    with pytest.raises(SplitFileError, match=r"d.csv: missing column\(s\) \['classname'\]"):
        load_dataset(tmp_path / "d.csv")
    (tmp_path / "d.csv").write_text("path,label,classname,split\na.jpg,zero,a,train\n")
    with pytest.raises(SplitFileError, match="d.csv, line 2: label 'zero'"):
        load_dataset(tmp_path / "d.csv")
    (tmp_path / "d.csv").write_text("path,label,classname,split\na.jpg,0,a,holdout\n")
    with pytest.raises(SplitFileError, match="line 2: split 'holdout'"):
        load_dataset(tmp_path / "d.csv")


def _miniworld(data_root, name="mini_shapes", template=None, with_images=True, n_classes=3):
    d = data_root / name
    rows = {"train": [[f"c{y}/{i}.png", y, f"class {y}"] for y in range(n_classes) for i in range(4)],
            "val": [["c0/9.png", 0, "class 0"]], "test": [[f"c{y}/8.png", y, f"class {y}"] for y in range(n_classes)]}
    if template:
        rows["template"] = template
    (d / "images").mkdir(parents=True)
    (d / "split.json").write_text(json.dumps(rows))
    if with_images:
        touch_all(d / "images", [r[0] for k in ("train", "val", "test") for r in rows[k]])
    return d


def test_coop_json_layout_by_name_under_the_data_root(tmp_path):
    _miniworld(tmp_path, template="a rendering of a {}.", n_classes=4)
    ds = load_dataset("mini_shapes", tmp_path)
    assert ds.name == "mini_shapes" and ds.template == "a rendering of a {}."
    assert ds.image_root == tmp_path / "mini_shapes" / "images" and ds.split_file.name == "split.json"
    train, val = fewshot_split(ds, 2, 1)  # same interface as the paper's datasets
    assert len(train) == 8 and len(val) == 1
    assert subsample_classes(train, val, ds.test, "base")[3] == ["class 0", "class 1"]


def test_coop_json_layout_by_path_and_by_spec(tmp_path):
    d = _miniworld(tmp_path)
    assert load_dataset(d).classnames == load_dataset(str(d / "split.json")).classnames
    ds = load_dataset({"format": "coop_json", "root": "mini_shapes", "name": "m", "template": "{}"}, tmp_path)
    assert (ds.name, ds.template) == ("m", "{}")


def test_test_only_coop_layout(tmp_path):
    d = tmp_path / "shift"
    touch_all(d / "images", ["a/1.png", "b/1.png"])
    (d / "split.json").write_text(json.dumps({"train": [], "val": [], "test": [["a/1.png", 0, "a"], ["b/1.png", 1, "b"]]}))
    ds = load_dataset(d)
    assert ds.num_classes == 2 and ds.train == [] and ds.test_only


def test_custom_errors_say_what_is_wrong(tmp_path):
    _miniworld(tmp_path, with_images=False)
    with pytest.raises(MissingImagesError, match=r"16 of 16 images listed in .*split.json are missing.*first: c0/0.png"):
        load_dataset("mini_shapes", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="not a registered dataset"):
        load_dataset("no_such_thing", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no class folders"):
        load_dataset(tmp_path / "empty")


def test_split_per_class_proportions_follow_dtd():
    by_class = {"a": items(" ".join(["0"] * 100)), "b": items(" ".join(["1"] * 7))}
    train, val, test = split_per_class(by_class)
    assert [sum(it.label == 0 for it in lst) for lst in (train, val, test)] == [50, 20, 30]
    assert [sum(it.label == 1 for it in lst) for lst in (train, val, test)] == [4, 1, 2]  # round(3.5), round(1.4)
