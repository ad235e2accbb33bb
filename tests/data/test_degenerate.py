"""Degenerate data is refused before any number: too few classes for a protocol, one folder as two
classes; classes with fewer images than `shots` are named (Dassl's sampling kept)."""
from __future__ import annotations

import json
import random

import pytest

from bmip.data import fewshot, load_dataset, open_world_split, subsample_classes
from bmip.data.checks import class_count_problems, training_class_problems
from bmip.data.errors import DegenerateDatasetError
from bmip.data.sampling import short_classes, short_classes_warning

from .helpers import items, touch_all

NOTHING = "and an accuracy over fewer than 2 classes means nothing (over one class it is 100% whatever the model does)"


def _folders(path, classes, per_class=4):
    touch_all(path, [f"{c}/{i}.png" for c in classes for i in range(per_class)])


def _config(root, **protocols):
    return {"data_root": str(root), "protocols": protocols}


def test_base_to_novel_refuses_fewer_than_two_classes_per_half(tmp_path):
    _folders(tmp_path / "one", ["a"])
    _folders(tmp_path / "two", ["a", "b"])
    _folders(tmp_path / "three", ["a", "b", "c"])
    _folders(tmp_path / "four", ["a", "b", "c", "d"])
    config = _config(tmp_path, base2novel={"datasets": ["four", "one", "two", "three"]},
                     open_world={"datasets": ["two"]})
    problems = class_count_problems(config)
    assert problems == [
        "protocols.base2novel.datasets[1]: dataset 'one' has 1 class: CoOp's base/new split (base = the first "
        f"ceil(n/2) labels, new = the rest) gives it 1 base and 0 new, {NOTHING}; base-to-novel and open-world "
        "need at least 2 classes in each half, so at least 4 classes. Add classes to 'one', or remove it from "
        "protocols.base2novel.datasets.",
        "protocols.base2novel.datasets[2]: dataset 'two' has 2 classes: CoOp's base/new split (base = the first "
        f"ceil(n/2) labels, new = the rest) gives it 1 base and 1 new, {NOTHING}; base-to-novel and open-world "
        "need at least 2 classes in each half, so at least 4 classes. Add classes to 'two', or remove it from "
        "protocols.base2novel.datasets.",
        "protocols.base2novel.datasets[3]: dataset 'three' has 3 classes: CoOp's base/new split (base = the first "
        f"ceil(n/2) labels, new = the rest) gives it 2 base and 1 new, {NOTHING}; base-to-novel and open-world "
        "need at least 2 classes in each half, so at least 4 classes. Add classes to 'three', or remove it from "
        "protocols.base2novel.datasets.",
        "protocols.open_world.datasets[0]: dataset 'two' has 2 classes: CoOp's base/new split (base = the first "
        f"ceil(n/2) labels, new = the rest) gives it 1 base and 1 new, {NOTHING}; base-to-novel and open-world "
        "need at least 2 classes in each half, so at least 4 classes. Add classes to 'two', or remove it from "
        "protocols.open_world.datasets.",
    ]


def test_transfer_sources_and_targets_need_two_classes(tmp_path):
    _folders(tmp_path / "one", ["a"])
    _folders(tmp_path / "two", ["a", "b"])
    config = _config(tmp_path, cross_dataset={"source": "one", "targets": ["two", "one"]},
                     domain_generalization={"source": "two", "targets": ["one"]})
    assert class_count_problems(config) == [
        f"protocols.cross_dataset.source: dataset 'one' has 1 class, {NOTHING}. Add classes to 'one', or train on "
        "another dataset (protocols.cross_dataset.source).",
        f"protocols.cross_dataset.targets[1]: dataset 'one' has 1 class, {NOTHING}. Add classes to 'one', or remove "
        "it from protocols.cross_dataset.targets.",
        f"protocols.domain_generalization.targets[0]: dataset 'one' has 1 class, {NOTHING}. Add classes to 'one', or "
        "remove it from protocols.domain_generalization.targets.",
    ]


def test_class_counts_come_from_the_registry_miniworld_csv_and_split_files_without_images(tmp_path):
    (tmp_path / "two.csv").write_text("path,label,classname\nx.png,0,x\ny.png,1,y\n")  # images absent: not read
    (tmp_path / "coop").mkdir()
    (tmp_path / "coop" / "split.json").write_text(json.dumps(
        {"train": [["a.png", 0, "a"]], "val": [], "test": [["b.png", 1, "b"], ["c.png", 2, "c"]]}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "split.json").write_text("{not json")  # the data check names what is wrong with it
    config = _config(tmp_path, base2novel={"datasets": ["eurosat", "OxfordPets", "two.csv", "coop", "broken",
                                                        "not_there_yet"]},
                     cross_dataset={"source": "toys", "targets": ["objects_a"]})
    problems = class_count_problems({**config, "miniworld": {}})
    assert [p.split(":")[0] for p in problems] == ["protocols.base2novel.datasets[2]", "protocols.base2novel.datasets[3]"]
    assert "dataset 'two.csv' has 2 classes" in problems[0] and "dataset 'coop' has 3 classes" in problems[1]


def test_one_folder_as_two_classes_is_refused_naming_both(tmp_path):
    pets = tmp_path / "pets"
    _folders(pets, ["cat", "cow"])
    (pets / "dog").symlink_to(pets / "cat", target_is_directory=True)
    expected = (f"{pets}: class folders 'cat' and 'dog' are one folder ({pets / 'cat'}; 'dog' is a link to it): "
                "different classes would hold the same images. Delete the link (or the copied folder), or give each "
                "class a folder of its own images.")
    with pytest.raises(DegenerateDatasetError) as err:
        load_dataset("pets", tmp_path)
    assert str(err.value) == expected
    config = _config(tmp_path, cross_dataset={"source": "pets", "targets": ["pets"]})
    assert class_count_problems(config) == [f"protocols.cross_dataset.source: {expected}"]


def test_a_link_to_a_folder_outside_the_dataset_is_a_class_like_any_other(tmp_path):
    _folders(tmp_path / "elsewhere", ["x"])
    _folders(tmp_path / "d", ["a"])
    (tmp_path / "d" / "b").symlink_to(tmp_path / "elsewhere" / "x", target_is_directory=True)
    assert load_dataset("d", tmp_path).classnames == ["a", "b"]


def test_the_split_functions_refuse_a_half_of_one_class():
    train = items("0 0 1 1 2 2")
    with pytest.raises(DegenerateDatasetError, match=r"^dataset 'tiny' has 3 classes: .* gives it 2 base and 1 new, "
                                                     r".* Add classes to the dataset, or leave it out of base2novel "
                                                     r"and open_world\.$"):
        subsample_classes(train, [], train, "base", dataset="tiny")
    with pytest.raises(DegenerateDatasetError, match="^dataset 'tiny' has 3 classes"):
        open_world_split(train, [], train, dataset="tiny")
    with pytest.raises(DegenerateDatasetError, match="^the dataset has 2 classes"):
        subsample_classes(items("0 1"), [], [], "new")
    assert subsample_classes(items("0 1"), [], [], "all")[3] == ["c0", "c1"]  # all classes: nothing to split
    assert subsample_classes(items("0 1 2 3"), [], [], "new")[3] == ["c2", "c3"]


def test_training_refusal_names_the_config_keys_of_its_training():
    config = {"data_root": "/nowhere", "protocols": {"base2novel": {"datasets": ["tiny"]},
                                                      "open_world": {"datasets": ["other", "tiny"]},
                                                      "cross_dataset": {"source": "tiny", "targets": ["tiny"]}}}
    base = training_class_problems(config, "base2novel", "tiny", 2)
    assert [p.split(":")[0] for p in base] == ["protocols.base2novel.datasets[0]", "protocols.open_world.datasets[1]"]
    assert training_class_problems(config, "cross_dataset", "tiny", 2) == []
    assert training_class_problems(config, "cross_dataset", "tiny", 1)[0].startswith(
        "protocols.cross_dataset.source: dataset 'tiny' has 1 class")
    assert training_class_problems(config, "base2novel", "unnamed", 3)[0].startswith(
        "protocols.base2novel.datasets: dataset 'unnamed' has 3 classes")


def test_short_classes_keep_dassls_sampling_and_are_named():
    pool = items("0 0 0 0 0 1 1 2 2 2 2")
    chosen = fewshot(pool, 4, random.Random(1))
    assert sum(it.label == 1 for it in chosen) == 2  # Dassl keeps a small class whole
    assert short_classes(chosen, 4) == {"c1": 2}
    assert short_classes(chosen, 2) == {} and short_classes(chosen, 0) == {}
    assert short_classes_warning("toy", 4, {"c1": 2, "c3": 1}) == (
        "toy: 2 classes have fewer than shots=4 training images, so all of their images are used, as Dassl samples: "
        "'c1' (2), 'c3' (1). The run's provenance.json records them (inputs.short_classes); add images to these "
        "classes for a 4-shot result, or lower shots")

