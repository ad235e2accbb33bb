"""The attribute world: what an object can be, what its class is called, and how people caption it.

A class ("concept") is a combination of colour, pattern and shape, named as the natural-language
phrase ``"<colour> <pattern> <shape>"`` so that CLIP prompts such as "a photo of a red striped
circle." read naturally. Captions for pretraining vary the wording, sometimes name the rendering
style and the nuisances, and sometimes leave attributes out, like web alt-text does.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# A human label for the generator; ``generator_fingerprint`` catches every code change anyway.
GENERATOR_VERSION = "3"  # 3: foreground masks beside the images (images unchanged)
GENERATOR_MODULES = ("world.py", "render.py", "datasets.py")

COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
# Hue centres in degrees, one per entry of COLOURS.
COLOUR_HUES: tuple[float, ...] = (0.0, 28.0, 55.0, 120.0, 180.0, 228.0, 275.0, 320.0)
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "heart", "crescent")

# Caption wording: synonyms that captions use now and then (class names always use the first word).
PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "plain", "solid"),
    "striped": ("striped", "striped", "stripy"),
    "dotted": ("dotted", "dotted", "polka-dot"),
    "checkered": ("checkered", "checkered", "checked"),
}
PATTERN_NOUNS: dict[str, str] = {
    "plain": "no pattern",
    "striped": "stripes",
    "dotted": "dots",
    "checkered": "a checkerboard pattern",
}
# How captions open for each rendering style; the first entry of "photo" is CLIP's prompt.
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "photo": ("a photo of", "a picture of", "an image of", "a photograph of"),
    "clutter": ("a photo of", "a cluttered photo of", "a messy photo of"),
    "indoor": ("an indoor photo of", "a warm-lit photo of", "a snapshot of"),
    "sketch": ("a sketch of", "a pencil drawing of", "a drawing of"),
    "cartoon": ("a cartoon of", "a sticker of", "a clipart of"),
    "night": ("a dark photo of", "a night photo of", "a low-light photo of"),
    "pixel": ("a pixel art of", "a pixelated image of", "a low-resolution image of"),
    "aerial": ("an aerial photo of", "a satellite image of", "a top-down photo of"),
    "closeup": ("a close-up photo of", "a macro photo of", "a detail photo of"),
    "hard": ("a photo of", "a hard-to-see photo of", "a camouflaged photo of"),
    "painting": ("a painting of", "an oil painting of", "an artwork of"),
}
STYLE_PHRASES["photo_v2"] = STYLE_PHRASES["photo"]
STYLE_PHRASES["rendition"] = STYLE_PHRASES["painting"] + STYLE_PHRASES["cartoon"] + STYLE_PHRASES["pixel"]


def generator_fingerprint() -> str:
    """SHA-256 of the modules that determine generated images, so a stale world root is detected."""
    digest = hashlib.sha256()
    for name in GENERATOR_MODULES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True, order=True)
class Concept:
    """One class of the world: indices into COLOURS, PATTERNS and SHAPES."""

    colour: int
    pattern: int
    shape: int

    @property
    def name(self) -> str:
        """The class name used in prompts and split files, e.g. "red striped circle"."""
        return f"{COLOURS[self.colour]} {PATTERNS[self.pattern]} {SHAPES[self.shape]}"

    @property
    def folder(self) -> str:
        """The image folder name: the class name with spaces as underscores."""
        return self.name.replace(" ", "_")


def all_concepts() -> list[Concept]:
    """Every attribute combination, in a fixed order."""
    return [
        Concept(c, p, s)
        for c, p, s in itertools.product(range(len(COLOURS)), range(len(PATTERNS)), range(len(SHAPES)))
    ]


def concept_from_name(name: str) -> Concept:
    """Inverse of ``Concept.name``."""
    colour, pattern, shape = name.split(" ")
    return Concept(COLOURS.index(colour), PATTERNS.index(pattern), SHAPES.index(shape))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _with_article(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def where_words(cx: float, cy: float) -> str:
    """Position phrase for an object centre in [-1, 1] (y downwards), e.g. "at the top left"."""
    row = "top" if cy < -0.25 else "bottom" if cy > 0.25 else ""
    col = "left" if cx < -0.25 else "right" if cx > 0.25 else ""
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    return "in the centre"


def size_word(scale: float) -> str | None:
    """"small"/"large" for clearly small or large objects, else nothing."""
    return "small" if scale < 0.5 else "large" if scale > 0.72 else None


# Every word a caption can contain besides attribute words and style phrases (see ``caption``).
CAPTION_WORDS: tuple[str, ...] = (
    "a", "an", "with", "that", "is", "and", "coloured", "there", "in", "this", "picture", "shape",
    "at", "the", "top", "bottom", "left", "right", "on", "centre", "small", "large", ".", ",",
)


def caption_vocabulary() -> list[str]:
    """All words and punctuation captions are made of, so pretraining can train only those embeddings."""
    words = set(CAPTION_WORDS) | set(COLOURS) | set(SHAPES)
    words |= {w for synonyms in PATTERN_WORDS.values() for w in synonyms}
    words |= {w for noun in PATTERN_NOUNS.values() for w in noun.split()}
    words |= {w for phrases in STYLE_PHRASES.values() for p in phrases for w in p.split()}
    return sorted(words)


def caption(
    concept: Concept,
    style: str,
    rng: np.random.Generator,
    where: str | None = None,
    size: str | None = None,
    style_prob: float = 0.7,
    partial_prob: float = 0.2,
) -> str:
    """One random caption for an image of ``concept`` rendered in ``style``.

    ``where``/``size`` are nuisance words ("at the top left", "small") that a caption may mention, so
    the text tower learns them as separate from the class. With probability ``partial_prob`` one
    attribute is left out, as real captions are often incomplete.
    """
    colour = COLOURS[concept.colour]
    pattern_key = PATTERNS[concept.pattern]
    pattern = str(rng.choice(PATTERN_WORDS[pattern_key]))
    shape = SHAPES[concept.shape]
    phrases = STYLE_PHRASES[style] if style != "photo" and rng.random() < style_prob else STYLE_PHRASES["photo"]
    opener = str(rng.choice(phrases))
    adjectives = []
    if size is not None and rng.random() < 0.3:
        adjectives.append(size)
    drop = int(rng.integers(3)) if rng.random() < partial_prob else -1
    if drop != 0:
        adjectives.append(colour)
    if drop != 1:
        adjectives.append(pattern)
    noun = shape if drop != 2 else "shape"
    thing = _with_article(" ".join(adjectives + [noun]))
    pattern_noun = PATTERN_NOUNS[pattern_key]
    templates = (
        f"{opener} {thing}.",
        f"{opener} {thing}.",
        f"{opener} {_with_article(f'{pattern} {colour} {noun}')}.",
        f"{opener} {_with_article(f'{colour} {noun}')} with {pattern_noun}.",
        f"{opener} {_with_article(noun)} that is {colour} and {pattern}.",
        f"{_with_article(f'{pattern} {noun}')}, coloured {colour}.",
        f"{thing}.",
        f"there is {thing} in this picture.",
    )
    text = str(rng.choice(templates))
    if where is not None and rng.random() < 0.25:
        text = f"{text[:-1]} {where}."
    return text
