"""Foreground masks of miniworld: deterministic, aligned with the drawn object, stored beside the
images and read through the data layer; the images stay byte-identical."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from bmip.miniworld import render as R

# sha256 of every style's images for one seed, rendered by the generator before masks existed:
# adding masks must not change a single image byte.
IMAGES_BEFORE_MASKS = "8c3f1d10a935dd0595cbb8612c8bffea7900846275d11cccb01fa08b120519bb"
CONCEPTS = np.stack([np.arange(12) % 8, np.arange(12) % 4, (np.arange(12) * 3) % 8], axis=1)


def _render_all() -> tuple[str, dict[str, np.ndarray]]:
    digest, masks = hashlib.sha256(), {}
    for style in sorted(R.STYLES):
        images, layout = R.render(style, CONCEPTS, np.random.default_rng(7))
        digest.update(style.encode())
        digest.update(images.tobytes())
        masks[style] = layout.mask
    return digest.hexdigest(), masks


def test_images_unchanged_and_masks_deterministic():
    first, masks = _render_all()
    again, masks_again = _render_all()
    assert first == IMAGES_BEFORE_MASKS
    for style, mask in masks.items():
        assert mask.shape == (12, R.IMAGE_SIZE, R.IMAGE_SIZE) and mask.dtype == np.float32
        assert np.array_equal(mask, masks_again[style])
        assert 0 <= mask.min() and mask.max() <= 1 and (mask > 0).any(), style


def test_mask_is_where_the_object_changed_a_flat_background(monkeypatch):
    """A photo-style object on a flat black background without noise: the pixels that differ from
    the background are exactly those the mask covers."""
    monkeypatch.setattr(R, "gradient_background", lambda n, s, rng, sat, val: np.zeros((n, s, s, 3), np.float32))
    concepts = np.array([[c, p, s] for c, p, s in zip(range(8), [0, 1, 2, 3] * 2, range(8))])
    images, layout = R.photo(concepts, np.random.default_rng(3), noise=(0.0, 0.0))
    changed = images.max(axis=-1) > 0
    assert changed.any() and not changed.all()
    assert np.array_equal(changed, layout.mask > 0)


def test_generated_dataset_masks_reach_the_data_layer(tmp_path):
    from PIL import Image

    from bmip.data import load_dataset
    from bmip.data.masks import has_masks, patch_foreground
    from bmip.miniworld.datasets import DATASETS, SizePreset, write_dataset

    spec = DATASETS["toys"]
    write_dataset(tmp_path, spec, 0, SizePreset(train=1, val=1, test=2, shift_test=2))
    data = load_dataset(spec.dir, tmp_path)
    assert has_masks(data)
    item = data.test[0]
    mask = np.asarray(Image.open(tmp_path / spec.dir / "masks" / item.path))
    assert mask.shape == (R.IMAGE_SIZE, R.IMAGE_SIZE) and mask.dtype == np.uint8 and mask.max() > 0
    shares = patch_foreground(data, data.test[:2], R.IMAGE_SIZE, 8)
    assert shares.shape == (2, 16)
    # patch 0 is the mean of the mask's top-left 8x8 pixels
    assert float(shares[0, 0]) == pytest.approx(mask[:8, :8].mean() / 255.0, abs=1e-6)
    other = load_dataset(spec.dir, tmp_path)
    (tmp_path / spec.dir / "masks").rename(tmp_path / "elsewhere")
    assert not has_masks(other)
