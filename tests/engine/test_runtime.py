"""Batched prediction: the in-process evaluation-image cache gives exactly the DataLoader's images."""
from __future__ import annotations

import torch

from bmip.data import ImageDataset, load_dataset, test_transform
from bmip.engine.runtime import EvalImageCache, loader
from tests.engine.toy import make_toy_dataset


def test_cached_test_images_equal_the_loader_and_are_decoded_once(tmp_path):
    make_toy_dataset(tmp_path, "toy")
    data = load_dataset("toy", tmp_path)
    items = data.test
    cache = EvalImageCache()
    first = torch.cat(list(cache.batches(items, data.image_root, 32, batch=7)))
    reference = torch.cat([images for images, _ in loader(items, data.image_root, 32, batch=7, workers=0)])
    assert torch.equal(first, reference)
    assert (cache.misses, cache.hits) == (len(items), 0)
    again = torch.cat(list(cache.batches(items[::-1], data.image_root, 32, batch=5)))
    assert torch.equal(again, reference.flip(0))
    assert (cache.misses, cache.hits) == (len(items), len(items))


def test_cache_drops_least_recently_used_images_past_its_budget(tmp_path):
    make_toy_dataset(tmp_path, "toy")
    data = load_dataset("toy", tmp_path)
    one = ImageDataset([], data.image_root, test_transform(32)).load(data.test[0]).nbytes
    cache = EvalImageCache(max_bytes=3 * one)
    list(cache.batches(data.test[:5], data.image_root, 32, batch=2))
    assert cache.bytes == 3 * one
    list(cache.batches(data.test[2:5], data.image_root, 32, batch=2))  # the 3 kept: all hits
    assert (cache.misses, cache.hits) == (5, 3)
    list(cache.batches(data.test[:1], data.image_root, 32, batch=2))  # dropped earlier: decoded again
    assert cache.misses == 6 and cache.bytes == 3 * one
