from __future__ import annotations

import numpy as np
import open_clip
import pytest

from bmip.miniworld.world import (
    COLOURS,
    PATTERNS,
    SHAPES,
    STYLE_PHRASES,
    all_concepts,
    caption,
    caption_vocabulary,
    concept_from_name,
    size_word,
    where_words,
)


def test_class_names_are_attribute_phrases_that_round_trip() -> None:
    concepts = all_concepts()
    assert len(concepts) == len(COLOURS) * len(PATTERNS) * len(SHAPES)
    names = [c.name for c in concepts]
    assert len(set(names)) == len(names)
    for concept in concepts:
        colour, pattern, shape = concept.name.split(" ")
        assert (colour, pattern, shape) == (COLOURS[concept.colour], PATTERNS[concept.pattern], SHAPES[concept.shape])
        assert concept_from_name(concept.name) == concept
        assert concept.folder == concept.name.replace(" ", "_")


def test_captions_are_deterministic_and_name_the_attributes() -> None:
    concept = concept_from_name("red striped circle")
    a = [caption(concept, "photo", np.random.default_rng(5)) for _ in range(3)]
    b = [caption(concept, "photo", np.random.default_rng(5)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(0)
    texts = [caption(concept, "sketch", rng, where="at the top", size="small") for _ in range(300)]
    assert len(set(texts)) > 50
    assert sum("red" in t for t in texts) > 250
    assert sum("circle" in t for t in texts) > 250
    assert any(t.startswith(STYLE_PHRASES["sketch"]) for t in texts)
    assert all(t.endswith(".") for t in texts)


def test_caption_vocabulary_covers_every_caption_token() -> None:
    """Pretraining trains only the vocabulary's embeddings, so no caption may use another token."""
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    allowed = {0, tokenizer.sot_token_id, tokenizer.eot_token_id}
    for word in caption_vocabulary():
        allowed.update(tokenizer.encode(word))
    rng = np.random.default_rng(1)
    concepts = all_concepts()
    for style in STYLE_PHRASES:
        for _ in range(200):
            concept = concepts[int(rng.integers(len(concepts)))]
            where = where_words(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)))
            text = caption(concept, style, rng, where=where, size=size_word(float(rng.uniform(0.2, 2))))
            assert set(tokenizer.encode(text)) <= allowed, text
    for concept in concepts:
        assert set(tokenizer.encode(f"a photo of a {concept.name}.")) <= allowed


@pytest.mark.parametrize(
    "cx, cy, expected", [(0.0, 0.0, "in the centre"), (-0.5, -0.5, "at the top left"), (0.5, 0.0, "on the right")]
)
def test_where_words(cx: float, cy: float, expected: str) -> None:
    assert where_words(cx, cy) == expected
