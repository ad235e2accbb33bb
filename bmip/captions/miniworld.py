"""The `miniworld` captioner: the stand-in for an MLLM on the embedded benchmark.

No MLLM can be run on miniworld's 32x32 images usefully (nor at all on a CPU-only machine), so its
captions are written from the scene facts of each image, which the generator leaves beside it:

* the rendering style, from `world.json` (each dataset has one: "an indoor photo of", "a sketch of");
* where the main object is and how big: its foreground mask (`<dataset>/masks/<path>`, the
  generator's record of the object's pixel coverage, bmip/miniworld/render.py `Layout.mask`): the
  centroid gives the placement words and the farthest covered pixel the size;
* the background's colours: the image's pixels outside the mask (the darker and the lighter third);
* the light: the image's mean brightness.

Never the object's colour, pattern or shape: in miniworld the class *is* that triple ("red striped
circle"), so any of them in a caption would put the label into the text a method reads, which is
exactly what the MLLM's instruction forbids for real datasets. For the same reason the background's
hue is left out where the generator draws it from the object's colour (the `hard` style's
camouflage, objects_a). What remains is instance-specific and class-independent: placement, size,
background and lighting — the kind of detail an MLLM adds beyond the category. The words come from
the miniworld CLIP's caption vocabulary where one fits (bmip.miniworld.world.caption_vocabulary:
positions, sizes, colours, the style phrases); "background", "grey", "white", "black", "pale",
"dim", "bright" and "light" are outside it.

The generator keeps no per-image record of background colours or lighting (its render functions
return only the images and the layout), so these are read back from what it wrote, deterministically:
the same image and mask give the same caption, and a changed image a caption of what it shows now.
"""
from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from bmip.captions.captioners import ImageRef, code_sha256, library_versions
from bmip.captions.store import CaptionsError
from bmip.data import Dataset
from bmip.data.masks import mask_root
from bmip.miniworld.datasets import WORLD_FILE
from bmip.miniworld.world import COLOUR_HUES, COLOURS, size_word, where_words

# How each rendering style opens a caption (the first of bmip.miniworld.world.STYLE_PHRASES where
# it reads well; `rendition` mixes paintings, cartoons and pixel art).
OPENERS: dict[str, str] = {
    "photo": "a photo of", "photo_v2": "a photo of", "clutter": "a cluttered photo of",
    "indoor": "an indoor photo of", "hard": "a hard-to-see photo of", "sketch": "a sketch of",
    "cartoon": "a cartoon of", "night": "a dark photo of", "pixel": "a pixel art of",
    "aerial": "an aerial photo of", "closeup": "a close-up photo of", "painting": "a painting of",
    "rendition": "an artwork of",
}
# Styles whose background colour the generator draws from the object's colour: its hue is not named.
CLASS_COLOURED_BACKGROUND = frozenset({"hard"})
INSTRUCTION = ("scene facts of the generated image, never its object's colour, pattern or shape: the style, "
               "the object's size and place (from its mask), the background's colours (pixels outside the "
               "mask) and the light (mean brightness)")
SETTINGS = {"template": "{opener} {object} {place}, on {background} background{light}.",
            "size_words": "small < 0.5 < - < 0.72 < large (object radius, half-image units)",
            "fills_frame": "mask covers > 0.6 of the image", "light": "dark < 0.2 < dim < 0.35 < - < 0.7 < bright"}


def _world(data: Dataset) -> dict[str, Any]:
    """The dataset's entry in the generated world's record, with the generator's fingerprint."""
    path = Path(data.image_root).parent.parent / WORLD_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))["spec"]
        entry = spec["datasets"][data.name]
    except (OSError, ValueError, KeyError):
        raise CaptionsError(
            f"captions.captioner miniworld captions only the generated miniworld datasets, and {data.name} at "
            f"{data.image_root} is none ({path} does not list it): name the mllm or file captioner for it "
            "(docs/captions.md)") from None
    return {"style": entry["style"], "generator_sha256": spec["generator_sha256"]}


def colour_name(rgb: np.ndarray) -> str:
    """A colour word for an RGB colour in [0, 1]: black, white, grey, or a hue of COLOURS, dark or pale."""
    h, s, v = colorsys.rgb_to_hsv(*(float(c) for c in rgb))
    if v < 0.18:
        return "black"
    if s < 0.18:
        return "white" if v > 0.85 else "grey"
    hue = h * 360.0
    name = COLOURS[int(np.argmin([min(abs(hue - c), 360.0 - abs(hue - c)) for c in COLOUR_HUES]))]
    if v < 0.45:
        return f"dark {name}"
    return f"pale {name}" if s < 0.4 else name


def _background(pixels: np.ndarray, outside: np.ndarray, hue: bool) -> str | None:
    """"a blue and grey" for the darker and lighter third of the background pixels, None if hardly
    any background shows; without hue, only how light it is."""
    if outside.mean() < 0.05:
        return None
    colours = pixels[outside]
    order = np.argsort(colours.mean(axis=1), kind="stable")
    third = max(1, len(order) // 3)
    names = [colour_name(colours[order[:third]].mean(axis=0)), colour_name(colours[order[-third:]].mean(axis=0))]
    if not hue:
        light = float(colours.mean())
        return "a dark muted" if light < 0.35 else "a pale muted" if light > 0.7 else "a muted"
    named = names[0] if names[0] == names[1] else f"{names[0]} and {names[1]}"
    return f"{'an' if named[0] in 'aeiou' else 'a'} {named}"


def _near(covered: np.ndarray, pixels: int) -> np.ndarray:
    """`covered` grown by `pixels` in every direction: blur and anti-aliasing carry the object's
    colour a pixel or two past its mask, and the background's colour must not."""
    grown = covered.copy()
    for _ in range(pixels):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


def _light(pixels: np.ndarray) -> str:
    brightness = float(pixels.mean())
    if brightness < 0.2:
        return ", in the dark"
    if brightness < 0.35:
        return ", in dim light"
    return ", in bright light" if brightness > 0.7 else ""


def scene_caption(pixels: np.ndarray, mask: np.ndarray, style: str) -> str:
    """The caption of one image (H, W, 3 floats in [0, 1]) from its object mask (H, W in [0, 1])."""
    n = mask.shape[0]
    covered = mask > 0.5
    opener = OPENERS.get(style, "a picture of")
    if style == "aerial":  # four small copies spread over the frame: no single place
        thing, place = "four small shapes", "spread over the picture"
    elif mask.mean() > 0.6:
        thing, place = "a large shape", "filling the picture"
    elif not covered.any():
        thing, place = "a hidden shape", "in this picture"
    else:
        ys, xs = np.nonzero(covered)
        weights = mask[ys, xs]
        cy, cx = (np.average(ys, weights=weights) + 0.5) / n * 2 - 1, (np.average(xs, weights=weights) + 0.5) / n * 2 - 1
        radius = float(np.sqrt(((ys + 0.5) / n * 2 - 1 - cy) ** 2 + ((xs + 0.5) / n * 2 - 1 - cx) ** 2).max())
        size = size_word(radius)
        thing, place = f"a {size} shape" if size else "a shape", where_words(float(cx), float(cy))
    background = _background(pixels, ~_near(mask > 0, 2), style not in CLASS_COLOURED_BACKGROUND)
    text = f"{opener} {thing} {place}"
    if background:
        text += f", on {background} background"
    return f"{text}{_light(pixels)}."


class MiniworldCaptioner:
    """Captions a generated miniworld dataset from its scene facts (module docstring)."""

    name = "miniworld"

    def __init__(self, settings: dict[str, Any], config: dict[str, Any], data: Dataset) -> None:
        self.data = data
        self.world = _world(data)
        self.masks = mask_root(data)

    def provenance(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": "bmip.miniworld scene facts: world.json style, object mask, pixels",
            "revision": f"miniworld generator sha256 {self.world['generator_sha256']}",
            "instruction": INSTRUCTION,
            "generation": SETTINGS,
            "libraries": library_versions(("numpy", "pillow")),
            "code_sha256": code_sha256(__name__),
        }

    def caption(self, images: Sequence[ImageRef]) -> list[str]:
        out = []
        for image in images:
            mask_file = self.masks / image.path
            if not mask_file.is_file():
                raise CaptionsError(f"{mask_file}: the mask of {self.data.name}'s image {image.path} is missing: "
                                    "regenerate the world (`bmip miniworld-generate --force`)")
            with Image.open(image.file) as img:
                pixels = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
            with Image.open(mask_file) as img:  # at the image's size, should the image have been replaced
                img = img.convert("L")
                if img.size != (pixels.shape[1], pixels.shape[0]):
                    img = img.resize((pixels.shape[1], pixels.shape[0]), Image.BILINEAR)
                mask = np.asarray(img, dtype=np.float32) / 255.0
            out.append(scene_caption(pixels, mask, self.world["style"]))
        return out
