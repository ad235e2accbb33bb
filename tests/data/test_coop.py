"""CoOp's on-disk formats load as is: the real split files, FGVC lists and ImageNet-style folders."""
from __future__ import annotations

import json
import shutil

import pytest

from bmip.data import (
    DatasetNotFoundError,
    MissingImagesError,
    SplitFileError,
    load_dataset,
)
from bmip.data.registry import DATASETS
from bmip.data.sources import BUNDLED_DIR

from .helpers import REAL_SPLITS, install_real_split, touch_all


@pytest.mark.parametrize("name", sorted(REAL_SPLITS))
def test_real_split_counts_and_classes(coop_root, name):
    _, n_train, n_val, n_test, n_cls = REAL_SPLITS[name]
    ds = load_dataset(name, coop_root)
    assert (len(ds.train), len(ds.val), len(ds.test), ds.num_classes) == (n_train, n_val, n_test, n_cls)
    assert ds.template == DATASETS[name].template
    assert ds.split_file.name == REAL_SPLITS[name][0]
    doc = json.loads(ds.split_file.read_text())
    assert [it.as_list() for it in ds.train] == doc["train"]  # file order, untouched
    names = {row[1]: row[2] for key in ("train", "val", "test") for row in doc[key]}
    assert ds.classnames == [names[y] for y in range(n_cls)]


def test_class_name_rules_as_stored(splits_root):
    names = {n: load_dataset(n, splits_root, check_images=False).classnames for n in ("eurosat", "caltech101", "stanford_cars",
                                                                 "ucf101", "oxford_pets")}
    assert names["eurosat"][0] == "Annual Crop Land" and "Sea or Lake" in names["eurosat"]
    assert {"face", "leopard", "motorbike", "airplane"} <= set(names["caltech101"])
    assert not {"BACKGROUND_Google", "Faces_easy"} & set(names["caltech101"])
    assert "2012 Audi TTS Coupe" in names["stanford_cars"]
    assert names["ucf101"][0] == "Apply_Eye_Makeup"
    assert names["oxford_pets"][0] == "abyssinian" and all(n == n.lower() for n in names["oxford_pets"])


def test_flowers_names_match_cat_to_name(tmp_path):
    flowers = install_real_split(tmp_path, "oxford_flowers", images=False)
    shutil.copyfile(BUNDLED_DIR / "cat_to_name.json", flowers / "cat_to_name.json")
    ds = load_dataset("Flowers102", tmp_path, check_images=False)
    cat_to_name = json.loads((BUNDLED_DIR / "cat_to_name.json").read_text())
    assert ds.classnames == [cat_to_name[str(y + 1)] for y in range(102)]
    assert ds.display_name == "Flowers102"


def test_flowers_refuses_a_foreign_cat_to_name(tmp_path):
    flowers = install_real_split(tmp_path, "oxford_flowers", images=False)
    names = json.loads((BUNDLED_DIR / "cat_to_name.json").read_text())
    names["1"], names["2"] = names["2"], names["1"]
    (flowers / "cat_to_name.json").write_text(json.dumps(names))
    with pytest.raises(SplitFileError, match="cat_to_name.json"):
        load_dataset("oxford_flowers", tmp_path)


def _small_dtd(tmp_path, rows):
    d = tmp_path / "dtd"
    (d / "images").mkdir(parents=True)
    doc = {"train": rows, "val": rows[:1], "test": rows[:1]}
    (d / "split_zhou_DescribableTextures.json").write_text(json.dumps(doc))
    return d


def test_missing_folder_names_the_download_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"bmip download oxford_pets --root"):
        load_dataset("oxford_pets", tmp_path)


def test_missing_split_file_names_the_download_command(tmp_path):
    (tmp_path / "eurosat").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"split_zhou_EuroSAT.json.*bmip download eurosat"):
        load_dataset("eurosat", tmp_path)


def test_missing_images_lists_first_paths_and_count(fast_tmp):
    install_real_split(fast_tmp, "dtd")
    doc = json.loads((fast_tmp / "dtd" / "split_zhou_DescribableTextures.json").read_text())
    gone = [row[0] for row in doc["test"][:7]]
    for rel in gone:
        (fast_tmp / "dtd" / "images" / rel).unlink()
    with pytest.raises(MissingImagesError) as e:
        load_dataset("dtd", fast_tmp)
    msg = str(e.value)
    assert "7 of 5640 images" in msg and "split_zhou_DescribableTextures.json" in msg
    assert all(rel in msg for rel in gone[:5]) and gone[6] not in msg
    assert "bmip download dtd" in msg


def test_labels_and_classnames_must_agree(tmp_path):
    rows = [["a/1.jpg", 0, "a"], ["b/1.jpg", 1, "b"], ["a/2.jpg", 0, "not-a"]]
    _small_dtd(tmp_path, rows)
    with pytest.raises(SplitFileError, match=r"split_zhou_DescribableTextures.json.*label 0 is 'a'"):
        load_dataset("dtd", tmp_path, check_images=False)


def test_one_name_two_labels_is_refused(tmp_path):
    _small_dtd(tmp_path, [["a/1.jpg", 0, "a"], ["b/1.jpg", 1, "a"]])
    with pytest.raises(SplitFileError, match="class 'a' has label 0"):
        load_dataset("dtd", tmp_path, check_images=False)


def test_wrong_class_count_is_refused(tmp_path):
    _small_dtd(tmp_path, [["a/1.jpg", 0, "a"], ["b/1.jpg", 1, "b"]])
    with pytest.raises(SplitFileError, match="2 classes found, DTD has 47"):
        load_dataset("dtd", tmp_path, check_images=False)


@pytest.mark.parametrize("bad", [["/etc/passwd", 0, "a"], ["../x.jpg", 0, "a"], ["a.jpg", -1, "a"], ["a.jpg", 0]])
def test_malformed_rows_are_refused_with_key_and_index(tmp_path, bad):
    _small_dtd(tmp_path, [["a/1.jpg", 0, "a"], bad])
    with pytest.raises(SplitFileError, match=r'"train"\[1\]'):
        load_dataset("dtd", tmp_path, check_images=False)


def test_fgvc_aircraft_text_lists(tmp_path):
    d = tmp_path / "fgvc_aircraft"
    variants = [f"V-{i}" for i in range(98)] + ["F-16A/B", "Boeing 707-320"]
    (d / "images").mkdir(parents=True)
    (d / "variants.txt").write_text("\n".join(variants) + "\n")
    train = [f"{1000 + i} {v}" for i, v in enumerate(reversed(variants))]
    (d / "images_variant_train.txt").write_text("\n".join(train) + "\n")
    (d / "images_variant_val.txt").write_text("2000 V-3\n")
    (d / "images_variant_test.txt").write_text("2001 Boeing 707-320\n")
    touch_all(d / "images", [f"{1000 + i}.jpg" for i in range(100)] + ["2000.jpg", "2001.jpg"])
    ds = load_dataset("fgvc_aircraft", tmp_path)
    assert ds.classnames == variants  # label = line index in variants.txt
    assert ds.train[0].as_list() == ["1000.jpg", 99, "Boeing 707-320"]
    assert ds.test[0].as_list() == ["2001.jpg", 99, "Boeing 707-320"]
    (d / "images_variant_val.txt").write_text("2000 V-999\n")
    with pytest.raises(SplitFileError, match=r"images_variant_val.txt, line 1: variant 'V-999'"):
        load_dataset("fgvc_aircraft", tmp_path)


def _imagenet_names(tmp_path, n=1000):
    wnids = [f"n{i:08d}" for i in range(n)]
    lines = [f"{w} class {i}" for i, w in enumerate(wnids)]
    (tmp_path / "imagenet").mkdir(exist_ok=True)
    (tmp_path / "imagenet" / "classnames.txt").write_text("\n".join(lines) + "\n")
    return wnids


def test_imagenet_folders_train_and_val(fast_tmp):
    wnids = _imagenet_names(fast_tmp)
    img = fast_tmp / "imagenet" / "images"
    touch_all(img, [f"train/{w}/{w}_{j}.JPEG" for w in wnids for j in (2, 1)] + [f"val/{w}/v_{w}.JPEG" for w in wnids])
    ds = load_dataset("imagenet", fast_tmp)
    assert ds.num_classes == 1000 and ds.classnames[3] == "class 3"
    assert ds.train[0].path == f"train/{wnids[0]}/{wnids[0]}_1.JPEG"  # files sorted inside a class
    assert ds.val == ds.test and len(ds.test) == 1000 and not ds.sample_val


def test_imagenet_without_images_explains_the_manual_step(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="image-net.org"):
        load_dataset("imagenet", tmp_path)


@pytest.mark.parametrize("name, folder, sub", [("imagenet_a", "imagenet-adversarial", "imagenet-a"),
                                               ("imagenet_r", "imagenet-rendition", "imagenet-r")])
def test_imagenet_a_r_use_the_200_class_subset_in_folder_order(fast_tmp, name, folder, sub):
    wnids = _imagenet_names(fast_tmp)
    chosen = sorted(wnids[::5], reverse=True)[:200]
    root = fast_tmp / folder / sub
    touch_all(root, [f"{w}/x.jpg" for w in chosen])
    (root / "README.txt").write_text("not a class")
    ds = load_dataset(name, fast_tmp)  # falls back to imagenet/classnames.txt
    by_wnid = {w: f"class {i}" for i, w in enumerate(wnids)}
    assert ds.classnames == [by_wnid[w] for w in sorted(chosen)]
    assert [it.label for it in ds.test] == list(range(200)) and ds.test_only and not ds.train


def test_imagenet_v2_numbered_folders(fast_tmp):
    _imagenet_names(fast_tmp)
    base = fast_tmp / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    touch_all(base, [f"{i}/a.jpeg" for i in range(1000)])
    shutil.copyfile(fast_tmp / "imagenet" / "classnames.txt", fast_tmp / "imagenetv2" / "classnames.txt")
    ds = load_dataset("imagenetv2", fast_tmp)
    assert ds.test[10].path == "10/a.jpeg" and ds.test[10].label == 10 and ds.classnames[10] == "class 10"


def test_imagenet_sketch_needs_classnames(tmp_path):
    touch_all(tmp_path / "imagenet-sketch" / "images", ["n00000001/a.jpg"])
    with pytest.raises(DatasetNotFoundError, match="classnames.txt.*bmip download imagenet_sketch"):
        load_dataset("imagenet_sketch", tmp_path)
