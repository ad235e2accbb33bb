"""Base/novel split, open-world union and ratio sweep behave as CoOp's (and the authors' older) code."""
from __future__ import annotations

import math
import random

import pytest

from bmip.data import (
    RATIO_SWEEP,
    Item,
    base_novel_labels,
    fewshot_split,
    load_dataset,
    open_world_split,
    ratio_counts,
    subsample_classes,
    subsample_classes_ratio,
)

from .helpers import items


@pytest.mark.parametrize("name, n_base, n_new", [("oxford_pets", 19, 18), ("dtd", 24, 23), ("eurosat", 5, 5),
                                                  ("ucf101", 51, 50), ("caltech101", 50, 50)])
def test_base_new_counts_after_fewshot(splits_root, name, n_base, n_new):
    ds = load_dataset(name, splits_root, check_images=False)
    train, val = fewshot_split(ds, 16, 1)
    base = subsample_classes(train, val, ds.test, "base")
    new = subsample_classes(train, val, ds.test, "new")
    assert len(base[3]) == n_base and len(new[3]) == n_new
    for (tr, va, te, names), offset in ((base, 0), (new, n_base)):
        for lst in (tr, va, te):
            assert {it.label for it in lst} == set(range(len(names)))
            assert all(names[it.label] == ds.classnames[it.label + offset] == it.classname for it in lst)
        assert len(te) == sum(1 for it in ds.test if offset <= it.label < offset + len(names))
    assert len(base[0]) == 16 * n_base  # sampled over all classes first, then split


def test_relabelling_keeps_order_and_drops_other_classes():
    tr = [Item("a", 7, "g"), Item("b", 3, "d"), Item("c", 5, "f"), Item("d", 9, "h"), Item("e", 3, "d")]
    te = [Item("t1", 9, "h"), Item("t2", 3, "d"), Item("t3", 1, "b")]
    b_tr, _, b_te, b_names = subsample_classes(tr, [], te, "base")  # sorted labels 3 5 7 9: base 3 5
    assert [(it.path, it.label) for it in b_tr] == [("b", 0), ("c", 1), ("e", 0)]
    assert [(it.path, it.label) for it in b_te] == [("t2", 0)]
    assert b_names == ["d", "f"]
    n_tr, _, n_te, n_names = subsample_classes(tr, [], te, "new")
    assert [(it.path, it.label) for it in n_tr] == [("a", 0), ("d", 1)] and n_names == ["g", "h"]
    assert [(it.path, it.label) for it in n_te] == [("t1", 1)]


def test_all_is_unchanged():
    tr, te = items("0 1 2"), items("2 1")
    assert subsample_classes(tr, [], te, "all") == (tr, [], te, ["c0", "c1", "c2"])
    with pytest.raises(ValueError, match="subsample"):
        subsample_classes(tr, [], te, "novel")


def test_open_world_union_reports_base_and_novel_labels(splits_root):
    ds = load_dataset("oxford_pets", splits_root, check_images=False)
    train, val = fewshot_split(ds, 16, 1)
    ow = open_world_split(train, val, ds.test)
    assert ow.base_labels == tuple(range(19)) and ow.novel_labels == tuple(range(19, 37))
    assert ow.test == ds.test and ow.classnames == ds.classnames
    assert (ow.train, ow.val) == subsample_classes(train, val, ds.test, "base")[:2]
    assert sum(ow.is_base(it.label) for it in ow.test) == sum(it.label < 19 for it in ds.test)


# --- ratio sweep --------------------------------------------------------------------------------
def reference_ratio(train, r, seed):
    """The authors' `subsample_classes_ratio` "new" branch after `random.seed(seed)`, as stated in docs/data.md."""
    random.seed(seed)
    labels = sorted({it.label for it in train})
    n = len(labels)
    m = math.ceil(n / 2)
    base_cnt = int(m * r / 100)
    new_cnt = m - base_cnt
    if new_cnt > n - m or new_cnt > m:
        new_cnt = n - m
        base_cnt = m - new_cnt
    if new_cnt < 0:
        new_cnt, base_cnt = 0, m
    return random.sample(labels[:m], base_cnt) + random.sample(labels[m:], new_cnt)


@pytest.mark.parametrize("n", [10, 37, 47, 1, 2, 3])
def test_ratio_always_m_classes(n):
    m = math.ceil(n / 2)
    tr = items(" ".join(str(y) for y in range(n)))
    for r in RATIO_SWEEP:
        b, k = ratio_counts(n, r)
        assert b + k == m and 0 <= b <= m and 0 <= k <= n - m
        out = subsample_classes_ratio(tr, [], tr, "new", r, seed=1)
        assert len(out[3]) == m and {it.label for it in out[0]} == set(range(m))


def test_ratio_extremes():
    odd, even = items(" ".join(str(y) for y in range(37))), items(" ".join(str(y) for y in range(10)))
    base_odd = set(range(19))
    full = subsample_classes_ratio(odd, [], odd, "new", 100, seed=2)
    assert {f"c{y}" for y in base_odd} == set(full[3])  # r = 100: exactly the base classes (shuffled)
    zero = subsample_classes_ratio(odd, [], odd, "new", 0, seed=2)
    assert sum(int(c[1:]) in base_odd for c in zero[3]) == 1  # odd n, r = 0: one base class remains
    assert ratio_counts(37, 0) == (1, 18) and ratio_counts(10, 0) == (0, 5) and ratio_counts(37, 150) == (19, 0)
    zero_even = subsample_classes_ratio(even, [], even, "new", 0, seed=2)
    assert {int(c[1:]) for c in zero_even[3]} == set(range(5, 10))


@pytest.mark.parametrize("name", ["oxford_pets", "dtd", "eurosat"])
def test_ratio_selection_is_dassl_identical_and_relabelled_in_selected_order(splits_root, name):
    ds = load_dataset(name, splits_root, check_images=False)
    for seed in (1, 2, 3):
        train, val = fewshot_split(ds, 16, seed)
        for r in range(0, 101, 10):
            selected = reference_ratio(train, r, seed)
            tr, va, te, names = subsample_classes_ratio(train, val, ds.test, "new", r, seed)
            assert names == [ds.classnames[y] for y in selected]
            new_of = {y: i for i, y in enumerate(selected)}
            assert [(it.path, it.label) for it in te] == [(it.path, new_of[it.label]) for it in ds.test
                                                          if it.label in new_of]


def test_ratio_base_and_all_use_no_rng():
    tr = items("0 1 2 3 4")
    assert subsample_classes_ratio(tr, [], tr, "base", 30, 1) == subsample_classes(tr, [], tr, "base")
    assert subsample_classes_ratio(tr, [], tr, "all", 30, 1) == subsample_classes(tr, [], tr, "all")
    assert base_novel_labels(tr) == ([0, 1, 2], [3, 4])
