"""The layouts of your own dataset, named from a config as the workflow names them: by a name under
data_root, which is also the loaded dataset's name (the workflow files its records under it)."""
from __future__ import annotations

import json

import pytest

from bmip.data import DatasetNotFoundError, fewshot_split, load_dataset
from bmip.data.custom import class_names_of, load_csv_dataset

from .helpers import touch_all

# Spaces and non-ASCII characters in every part of a path: data root, dataset, class, file.
ROOT = "data root/dätä"
CLASSES = ("chat noir", "große Katze", "狗", "ñandú")


def _rows(classes=CLASSES, per_class=5):
    """(relative path, label, class name) of per_class images of each class."""
    return [(f"{name}/bild {i} é.png", label, name) for label, name in enumerate(classes) for i in range(per_class)]


def _folders(dataset, classes=CLASSES):
    touch_all(dataset, [path for path, _, _ in _rows(classes)])


def _csv(file, rows, split=True):
    parts = ["train", "train", "val", "test", "test"]
    lines = ["path,label,classname" + (",split" if split else "")]
    lines += [f'"imgs/{p}",{y},"{c}"' + (f",{parts[i % 5]}" if split else "") for i, (p, y, c) in enumerate(rows)]
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    touch_all(file.parent / "imgs", [p for p, _, _ in rows])


def _csv_folder(dataset):
    _csv(dataset / "data.csv", _rows())


def _csv_file(dataset):
    _csv(dataset, _rows())


def _csv_three_files(dataset):
    rows = _rows()
    for part, keep in (("train", (0, 1)), ("val", (2,)), ("test", (3, 4))):
        chosen = [r for i, r in enumerate(rows) if i % 5 in keep]
        _csv(dataset / f"{part}.csv", chosen, split=False)


def _coop_json(dataset):
    rows = _rows()
    split = {"name": "another name", "train": [], "val": [], "test": []}
    for i, (path, label, name) in enumerate(rows):
        split[("train", "train", "val", "test", "test")[i % 5]].append([path, label, name])
    touch_all(dataset / "images", [p for p, _, _ in rows])
    (dataset / "split.json").write_text(json.dumps(split, ensure_ascii=False), encoding="utf-8")


LAYOUTS = {
    "class folders": ("Vögel und Bäume", _folders),
    "folder holding one data.csv": ("mein Datensatz", _csv_folder),
    "CSV file": ("mydata ü.csv", _csv_file),
    "folder of train/val/test.csv": ("drei Dateien", _csv_three_files),
    "images + split.json": ("coop ö", _coop_json),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_by_its_config_name_with_spaces_and_non_ascii(tmp_path, layout):
    name, make = LAYOUTS[layout]
    root = tmp_path / ROOT
    make(root / name)
    ds = load_dataset(name, root)  # as a job loads the config's dataset; images checked on disk
    assert ds.name == name  # the name the workflow files data_check/<name>.json and splits/<name>/ under
    assert sorted(ds.classnames) == sorted(CLASSES)
    assert class_names_of(root / name) == ds.classnames  # the cheap listing the workflow's start uses
    assert all(ds.abspath(it).is_file() for it in ds.train + ds.val + ds.test)
    assert len(ds.train) == 2 * len(CLASSES) and len(ds.test) >= len(CLASSES)
    train, val = fewshot_split(ds, 1, 1)
    assert sorted(it.classname for it in train) == sorted(CLASSES)


def test_folder_holding_one_csv_with_a_split_column(tmp_path):
    d = tmp_path / "mine"
    touch_all(d / "imgs", ["x/1.png", "x/2.png", "y/1.png", "y/2.png"])
    (d / "data.csv").write_text("path,label,classname,split\nimgs/x/1.png,0,ex,train\nimgs/y/1.png,1,why,train\n"
                                "imgs/x/2.png,0,ex,test\nimgs/y/2.png,1,why,val\n")
    ds = load_dataset("mine", tmp_path)
    assert ds.name == "mine" and ds.classnames == ["ex", "why"] and ds.image_root == d
    assert [it.path for it in ds.train] == ["imgs/x/1.png", "imgs/y/1.png"]
    assert [it.path for it in ds.val] == ["imgs/y/2.png"] and [it.path for it in ds.test] == ["imgs/x/2.png"]


def test_csv_file_named_in_the_config_keeps_that_name(tmp_path):
    touch_all(tmp_path / "imgs", ["a/1.png", "b/1.png"])
    (tmp_path / "mydata.csv").write_text("path,label,classname,split\nimgs/a/1.png,0,a,train\nimgs/b/1.png,1,b,test\n")
    assert load_dataset("mydata.csv", tmp_path).name == "mydata.csv"
    assert load_dataset(tmp_path / "mydata.csv").name == "mydata"  # a path of its own: named after the file


def test_split_json_name_does_not_rename_a_dataset_named_in_the_config(tmp_path):
    _coop_json(tmp_path / "toy")
    assert load_dataset("toy", tmp_path).name == "toy"
    assert load_dataset(tmp_path / "toy").name == "another name"  # by path, the file's own name still applies


def test_registry_dataset_takes_its_registry_key(splits_root):
    assert load_dataset("EuroSAT", splits_root, check_images=False).name == "eurosat"


def test_folder_with_several_csvs_says_which_to_keep(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("path,label,classname\n")
    (tmp_path / "d" / "b.csv").write_text("path,label,classname\n")
    with pytest.raises(DatasetNotFoundError, match=r"d: expected one CSV file \(columns path,label,classname\[,split\]\) "
                                                   r"or train.csv and test.csv \(val.csv optional\); found a.csv, b.csv"):
        load_csv_dataset(tmp_path / "d")
