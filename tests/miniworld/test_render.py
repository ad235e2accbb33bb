from __future__ import annotations

import numpy as np
import pytest

from bmip.miniworld.render import IMAGE_SIZE, STYLES, hsv_to_rgb, render
from bmip.miniworld.world import COLOUR_HUES, all_concepts


def _concepts(n: int) -> np.ndarray:
    concepts = all_concepts()
    return np.array([[c.colour, c.pattern, c.shape] for c in concepts[:: max(1, len(concepts) // n)][:n]])


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_renders_deterministic_uint8_images(style: str) -> None:
    concepts = _concepts(12)
    a, layout = render(style, concepts, np.random.default_rng(0))
    b, _ = render(style, concepts, np.random.default_rng(0))
    assert a.shape == (12, IMAGE_SIZE, IMAGE_SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert layout.scale.shape == (12,)
    assert a.std(axis=(1, 2, 3)).min() > 3, "every image shows something"


def test_images_depend_on_the_concept() -> None:
    """The same random stream with a different class gives a different image (the class is visible)."""
    concepts = _concepts(16)
    shuffled = concepts[::-1].copy()
    a, _ = render("photo", concepts, np.random.default_rng(0))
    b, _ = render("photo", shuffled, np.random.default_rng(0))
    differs = [not np.array_equal(x, y) for x, y, c, d in zip(a, b, concepts, shuffled) if tuple(c) != tuple(d)]
    assert all(differs)


def test_colour_names_map_to_their_hues() -> None:
    rgb = hsv_to_rgb(np.asarray(COLOUR_HUES), np.ones(len(COLOUR_HUES)), np.ones(len(COLOUR_HUES)))
    assert rgb[0].argmax() == 0  # red
    assert rgb[3].argmax() == 1  # green
    assert rgb[5].argmax() == 2  # blue
