"""Few-shot subsets are CoOp/Dassl's, item for item, and are stored as hashed, portable JSON."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from bmip.data import (
    Dataset,
    Item,
    SplitFileError,
    fewshot,
    fewshot_split,
    items_hash,
    load_dataset,
    read_fewshot_split,
    write_fewshot_split,
)

from .helpers import items


# --- Dassl's algorithm, written independently from docs/data.md, on the *global* random module -----------
def dassl_generate_fewshot(data_source, num_shots):
    if num_shots < 1:
        return data_source
    tracker = defaultdict(list)
    for item in data_source:
        tracker[item.label].append(item)
    output = []
    for label, group in tracker.items():
        if len(group) >= num_shots:
            sampled = random.sample(group, num_shots)
        else:
            sampled = group
        output.extend(sampled)
    return output


def dassl_subsets(train, val, num_shots, seed, sample_val=True):
    random.seed(seed)  # train.py, once, at process start
    train_fs = dassl_generate_fewshot(train, num_shots)
    val_fs = dassl_generate_fewshot(val, min(num_shots, 4)) if sample_val else val
    return train_fs, val_fs


def _toy(train, val=""):
    tr, va = items(train), items(val)
    names = sorted({it.classname for it in tr + va}, key=lambda c: int(c[1:]))
    return Dataset("toy", Path("/nowhere"), tr, va, [], names)


@pytest.mark.parametrize("name", ["eurosat", "dtd", "oxford_pets", "ucf101"])
@pytest.mark.parametrize("shots", [1, 2, 4, 8, 16])
def test_matches_dassl_on_real_splits(splits_root, name, shots):
    ds = load_dataset(name, splits_root, check_images=False)
    for seed in (1, 2, 3):
        assert fewshot_split(ds, shots, seed) == dassl_subsets(ds.train, ds.val, shots, seed)


def test_real_split_shapes(splits_root):
    ds = load_dataset("oxford_pets", splits_root, check_images=False)
    train, val = fewshot_split(ds, 16, 1)
    assert len(train) == 37 * 16 and len(val) == 37 * 4
    first_labels = list(dict.fromkeys(it.label for it in ds.train))
    assert list(dict.fromkeys(it.label for it in train)) == first_labels


def test_train_then_val_from_one_stream():
    ds = _toy("0 0 0 1 1 1", "0 0 0 1 1 1")
    train, val = fewshot_split(ds, 2, 5)
    rng = random.Random(5)
    assert train == fewshot(ds.train, 2, rng)
    assert val == fewshot(ds.val, 2, rng)  # continues the stream: differs from a fresh Random(5) in general
    assert (train, val) == dassl_subsets(ds.train, ds.val, 2, 5)


def test_val_uses_at_most_four_shots():
    ds = _toy(" ".join(["0"] * 20 + ["1"] * 20), " ".join(["0"] * 10 + ["1"] * 10))
    train, val = fewshot_split(ds, 16, 1)
    assert len(train) == 32 and len(val) == 8
    assert (train, val) == dassl_subsets(ds.train, ds.val, 16, 1)


def test_small_classes_are_kept_whole_without_rng_calls():
    ds = _toy("0 1 1 0 2 2 2 2 2")  # label 0: 2 items, label 1: 2, label 2: 5
    rng = random.Random(3)
    chosen = fewshot(ds.train, 4, rng)
    assert chosen[:2] == [ds.train[0], ds.train[3]]  # original order, no sampling
    assert chosen[2:4] == [ds.train[1], ds.train[2]]
    assert rng.getstate() == _after_draws(3, [(5, 4)])  # only class 2 consumed randomness
    assert chosen == dassl_subsets(ds.train, [], 4, 3)[0]


def _after_draws(seed, draws):
    rng = random.Random(seed)
    for n, k in draws:
        rng.sample(range(n), k)
    return rng.getstate()


def test_bucket_of_exactly_k_is_permuted_and_consumes_rng():
    ds = _toy("0 0 0 1 1 1")
    permuted = 0
    for seed in range(20):
        rng = random.Random(seed)
        chosen = fewshot(ds.train, 3, rng)
        assert sorted(chosen, key=lambda it: it.path) == ds.train  # all items
        assert rng.getstate() == _after_draws(seed, [(3, 3), (3, 3)])
        assert chosen == dassl_subsets(ds.train, [], 3, seed)[0]
        permuted += chosen != ds.train
    assert permuted > 0  # a random permutation, not the original order


def test_buckets_in_first_appearance_order():
    ds = _toy("2 0 2 1 0 1 2 0")
    chosen = fewshot(ds.train, 1, random.Random(0))
    assert [it.label for it in chosen] == [2, 0, 1]
    assert chosen == dassl_subsets(ds.train, [], 1, 0)[0]


def test_zero_shots_returns_everything():
    ds = _toy("0 1 0", "1 0")
    assert fewshot_split(ds, 0, 1) == (ds.train, ds.val)


def test_imagenet_samples_train_only():
    tr, va = items("0 0 0 1 1 1"), items("0 0 1 1")
    ds = Dataset("imagenet", Path("/x"), tr, va, va, ["c0", "c1"], sample_val=False)
    train, val = fewshot_split(ds, 2, 1)
    assert val == va
    assert (train, val) == dassl_subsets(tr, va, 2, 1, sample_val=False)


def test_test_only_dataset_cannot_be_sampled():
    ds = Dataset("imagenet_a", Path("/x"), [], [], items("0 1"), ["c0", "c1"], test_only=True)
    with pytest.raises(ValueError, match="test-only"):
        fewshot_split(ds, 16, 1)


def test_split_json_roundtrip(splits_root, tmp_path):
    ds = load_dataset("dtd", splits_root, check_images=False)
    path = write_fewshot_split(ds, 4, 2, tmp_path / "splits")
    assert path == tmp_path / "splits" / "dtd" / "shot_4-seed_2.json"
    doc = json.loads(path.read_text())
    assert doc["shots"] == 4 and doc["seed"] == 2 and doc["split_file"] == "split_zhou_DescribableTextures.json"
    assert all(not row[0].startswith("/") for row in doc["train"] + doc["val"])  # relative to the image root
    train, val = read_fewshot_split(path, ds)
    assert (train, val) == fewshot_split(ds, 4, 2)
    assert doc["hash"] == {"train": items_hash(train), "val": items_hash(val)}
    assert not list(path.parent.glob(".*"))  # no temporary files left
    mtime = path.stat().st_mtime_ns
    assert write_fewshot_split(ds, 4, 2, tmp_path / "splits") == path and path.stat().st_mtime_ns == mtime


def test_edited_split_json_is_refused(splits_root, tmp_path):
    ds = load_dataset("dtd", splits_root, check_images=False)
    path = write_fewshot_split(ds, 1, 1, tmp_path)
    doc = json.loads(path.read_text())
    doc["train"][0][0] = doc["train"][1][0]
    path.write_text(json.dumps(doc))
    with pytest.raises(SplitFileError, match="content hash of 'train'"):
        read_fewshot_split(path)
    with pytest.raises(SplitFileError, match="content hash"):
        write_fewshot_split(ds, 1, 1, tmp_path)
    doc["hash"]["train"] = items_hash(Item(p, y, c) for p, y, c in doc["train"])  # consistent, but not CoOp's
    path.write_text(json.dumps(doc))
    with pytest.raises(SplitFileError, match="differs from the one computed"):
        write_fewshot_split(ds, 1, 1, tmp_path)


def test_unseeded_splits_are_not_stored(tmp_path):
    with pytest.raises(ValueError, match="seed < 0"):
        write_fewshot_split(_toy("0 0 1 1"), 1, -1, tmp_path)


def test_split_json_of_another_dataset_is_refused(splits_root, tmp_path):
    dtd = load_dataset("dtd", splits_root, check_images=False)
    eurosat = load_dataset("eurosat", splits_root, check_images=False)
    path = write_fewshot_split(dtd, 1, 1, tmp_path)
    with pytest.raises(SplitFileError, match="is for 'dtd', not 'eurosat'"):
        read_fewshot_split(path, eurosat)
