"""Vectorised numpy rendering of concepts in several styles.

Every function works on a whole batch at once (arrays of shape (N, S, S[, 3])); loops run over
shapes, patterns or object copies, never over pixels. Images are drawn at ``SUPERSAMPLE`` times the
output size and averaged down, which anti-aliases edges and thin stripes.

A style is a function ``(concepts, rng, size) -> (images, layout)`` in the ``STYLES`` registry:
``concepts`` is an (N, 3) int array of (colour, pattern, shape) indices, ``images`` is (N, size,
size, 3) uint8 and ``layout`` holds the main object's centre and scale (for caption words) and its
foreground mask: the share of each output pixel the main object covers (visible part: an occluding
bar is not foreground; distractors are not), averaged down from the supersampled object mask like
the image. The mask is computed from the same draws and takes none of its own from ``rng``, so
images are byte-identical with or without anyone reading it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from bmip.miniworld.world import COLOUR_HUES, COLOURS, PATTERNS, SHAPES

SUPERSAMPLE = 2
IMAGE_SIZE = 32


@dataclass(frozen=True)
class Layout:
    """Where the main object of each image sits: centre in [-1, 1] (y downwards) and radius."""

    cx: np.ndarray
    cy: np.ndarray
    scale: np.ndarray
    mask: np.ndarray  # (N, size, size) float32 in [0, 1]: the main object's pixel coverage


def coverage(mask: np.ndarray) -> np.ndarray:
    """(N, S, S) boolean supersampled mask -> (N, S / SUPERSAMPLE, ...) float32 pixel coverage."""
    return downsample(mask[..., None].astype(np.float32), SUPERSAMPLE)[..., 0]


Style = Callable[[np.ndarray, np.random.Generator, int], "tuple[np.ndarray, Layout]"]


# ----------------------------------------------------------------------------------------- helpers
def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]; v grows downwards like image rows."""
    t = (np.arange(s, dtype=np.float32) + 0.5) / s * 2.0 - 1.0
    v, u = np.meshgrid(t, t, indexing="ij")
    return u, v


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (hue in degrees) to RGB in [0, 1]; output has a trailing axis of 3."""
    h = np.mod(h, 360.0) / 60.0
    c = v * s
    x = c * (1.0 - np.abs(np.mod(h, 2.0) - 1.0))
    zero = np.zeros_like(c)
    sector = np.floor(h).astype(int) % 6
    options = [
        np.stack(rgb, axis=-1)
        for rgb in ((c, x, zero), (x, c, zero), (zero, c, x), (zero, x, c), (x, zero, c), (c, zero, x))
    ]
    rgb = np.choose(sector[..., None], options)
    return (rgb + (v - c)[..., None]).astype(np.float32)


def object_colours(
    colour: np.ndarray,
    rng: np.random.Generator,
    sat: tuple[float, float],
    val: tuple[float, float],
    hue_shift: float = 0.0,
) -> np.ndarray:
    """(N, 3) RGB colours: the named hue with a little jitter, so that colour names stay unambiguous.

    ``hue_shift`` is a style's palette shift (degrees): a systematic offset between what a colour
    is called and how it looks in that style, which few-shot adaptation can learn and zero-shot
    transfer from photos cannot.
    """
    n = len(colour)
    hue = np.asarray(COLOUR_HUES, dtype=np.float32)[colour] + hue_shift + rng.uniform(-8.0, 8.0, n)
    return hsv_to_rgb(hue, rng.uniform(*sat, n), rng.uniform(*val, n))


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    return a + (b - a) * t


def upsample_noise(n: int, s: int, rng: np.random.Generator, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth random fields (N, S, S, C) in [0, 1]: bilinear interpolation of a coarse random grid."""
    coarse = rng.random((n, cells + 1, cells + 1, channels), dtype=np.float32)
    pos = (np.arange(s, dtype=np.float32) + 0.5) / s * cells
    i0 = np.minimum(np.floor(pos).astype(int), cells - 1)
    w = (pos - i0)[None, :, None, None]
    rows = coarse[:, i0] * (1 - w) + coarse[:, i0 + 1] * w
    w = (pos - i0)[None, None, :, None]
    return rows[:, :, i0] * (1 - w) + rows[:, :, i0 + 1] * w


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift the last two axes by (dy, dx) pixels, replicating the edge."""
    if dy:
        edge = a[..., :1, :] if dy > 0 else a[..., -1:, :]
        body = a[..., :-dy, :] if dy > 0 else a[..., -dy:, :]
        parts = [edge] * abs(dy) + [body] if dy > 0 else [body] + [edge] * abs(dy)
        a = np.concatenate(parts, axis=-2)
    if dx:
        edge = a[..., :1] if dx > 0 else a[..., -1:]
        body = a[..., :-dx] if dx > 0 else a[..., -dx:]
        parts = [edge] * abs(dx) + [body] if dx > 0 else [body] + [edge] * abs(dx)
        a = np.concatenate(parts, axis=-1)
    return a


def edges(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` (N, S, S) within ``width`` pixels of its boundary (inner outline)."""
    eroded = mask.copy()
    for _ in range(width):
        eroded = eroded & _shift(eroded, 1, 0) & _shift(eroded, -1, 0) & _shift(eroded, 0, 1) & _shift(eroded, 0, -1)
    return mask & ~eroded


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the two spatial axes of (N, S, S, C)."""
    radius = max(1, int(round(2 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    chw = np.moveaxis(img, -1, 1)
    out = sum(k * _shift(chw, int(d), 0) for k, d in zip(kernel, offsets))
    out = sum(k * _shift(out, 0, int(d)) for k, d in zip(kernel, offsets))
    return np.moveaxis(out, 1, -1).astype(np.float32)


def downsample(img: np.ndarray, factor: int) -> np.ndarray:
    """Box-average (N, S, S, C) by an integer factor (sum of strided views: fast for small factors)."""
    out = sum(img[:, i::factor, j::factor] for i in range(factor) for j in range(factor))
    return (out * np.float32(1.0 / factor**2)).astype(np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------- objects
def _polygon(x: np.ndarray, y: np.ndarray, sides: int, inradius: float) -> np.ndarray:
    """Inside a regular polygon with a vertex pointing up."""
    phi = np.arctan2(x, -y)
    sector = 2 * np.pi / sides
    local = np.mod(phi + sector / 2, sector) - sector / 2
    return np.hypot(x, y) * np.cos(local) <= inradius


def _star(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    phi = np.arctan2(x, -y)
    sector = 2 * np.pi / 5
    d = np.abs(np.mod(phi, sector) / sector - 0.5) * 2.0
    return np.hypot(x, y) <= 0.42 + 0.58 * d**2


def _heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    hx, hy = x * 1.25, -(y * 1.25) + 0.25
    return (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0


SHAPE_MASKS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda x, y: x**2 + y**2 <= 0.92**2,
    "square": lambda x, y: np.maximum(np.abs(x), np.abs(y)) <= 0.75,
    "triangle": lambda x, y: _polygon(x, y + 0.15, 3, 0.5),
    "diamond": lambda x, y: np.abs(x) / 0.62 + np.abs(y) <= 1.0,
    "star": _star,
    "cross": lambda x, y: ((np.abs(x) <= 0.3) & (np.abs(y) <= 0.95)) | ((np.abs(y) <= 0.3) & (np.abs(x) <= 0.95)),
    "heart": _heart,
    "crescent": lambda x, y: (x**2 + y**2 <= 0.95**2) & ((x - 0.45) ** 2 + (y + 0.1) ** 2 > 0.7**2),
}


PATTERN_MASKS: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    1: lambda x, y: np.mod(x, 0.64) < 0.32,
    2: lambda x, y: (np.mod(x, 0.6) - 0.3) ** 2 + (np.mod(y, 0.6) - 0.3) ** 2 < 0.16**2,
    3: lambda x, y: (np.floor(x / 0.45) + np.floor(y / 0.45)) % 2 == 1,
}


def pattern_map(pattern: np.ndarray, x: np.ndarray, y: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Where the secondary colour goes (stripes, dots, checks); nowhere for plain (index 0)."""
    out = np.zeros(x.shape, dtype=bool)
    for index, draw in PATTERN_MASKS.items():
        pick = pattern == index
        if pick.any():
            shift = phase[pick, None, None]
            out[pick] = draw(x[pick] + shift, y[pick] + shift)
    return out


@dataclass(frozen=True)
class Placement:
    """Per-object pose: centre, radius (half-image units) and rotation."""

    cx: np.ndarray
    cy: np.ndarray
    scale: np.ndarray
    angle: np.ndarray

    @staticmethod
    def sample(n: int, rng: np.random.Generator, scale: tuple[float, float], offset: float) -> "Placement":
        s = rng.uniform(*scale, n).astype(np.float32)
        room = np.maximum(0.0, 1.0 - s) * offset
        return Placement(
            cx=(rng.uniform(-1, 1, n) * room).astype(np.float32),
            cy=(rng.uniform(-1, 1, n) * room).astype(np.float32),
            scale=s,
            angle=rng.uniform(0, 2 * np.pi, n).astype(np.float32),
        )


def draw_object(
    concepts: np.ndarray, place: Placement, rng: np.random.Generator, s: int
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Masks (N, S, S) of the object and of its pattern, plus the object-frame coordinates."""
    u, v = _grid(s)
    du = u[None] - place.cx[:, None, None]
    dv = v[None] - place.cy[:, None, None]
    c, sn = np.cos(place.angle)[:, None, None], np.sin(place.angle)[:, None, None]
    inv = 1.0 / place.scale[:, None, None]
    x = (du * c + dv * sn) * inv
    y = (-du * sn + dv * c) * inv
    mask = np.zeros(x.shape, dtype=bool)
    shape = concepts[:, 2]
    for index, name in enumerate(SHAPES):
        pick = shape == index
        if pick.any():
            mask[pick] = SHAPE_MASKS[name](x[pick], y[pick])
    phase = rng.uniform(0, 1, len(concepts)).astype(np.float32)
    pattern = pattern_map(concepts[:, 1], x, y, phase) & mask
    return mask, pattern, (x, y)


def paint(
    canvas: np.ndarray, mask: np.ndarray, pattern: np.ndarray, colour: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """Composite a flat two-colour object onto an (N, S, S, 3) canvas, in place."""
    np.copyto(canvas, colour[:, None, None, :], where=mask[..., None])
    np.copyto(canvas, second[:, None, None, :], where=pattern[..., None])
    return canvas


def random_concepts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random (colour, pattern, shape) triples, for distractor objects."""
    return np.stack(
        [rng.integers(len(COLOURS), size=n), rng.integers(len(PATTERNS), size=n), rng.integers(len(SHAPES), size=n)],
        axis=1,
    )


def gradient_background(
    n: int, s: int, rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]
) -> np.ndarray:
    """A linear blend between two random colours along a random direction."""
    a = hsv_to_rgb(rng.uniform(0, 360, n), rng.uniform(*sat, n), rng.uniform(*val, n))
    b = hsv_to_rgb(rng.uniform(0, 360, n), rng.uniform(*sat, n), rng.uniform(*val, n))
    u, v = _grid(s)
    theta = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    t = ((u[None] * np.cos(theta) + v[None] * np.sin(theta)) * 0.5 + 0.5)[..., None]
    return a[:, None, None, :] + (b - a)[:, None, None, :] * t


def _finish(
    img: np.ndarray, rng: np.random.Generator, noise: tuple[float, float], blur_sigma: float = 0.0
) -> np.ndarray:
    """Downsample to the output size, optionally blur (sigma in output pixels), add Gaussian noise, quantise."""
    img = downsample(img, SUPERSAMPLE)
    if blur_sigma > 0:
        img = blur(img, blur_sigma)
    sigma = rng.uniform(*noise, len(img)).astype(np.float32)[:, None, None, None]
    return to_uint8(img + sigma * rng.standard_normal(img.shape, dtype=np.float32))


def _shading(xy: tuple[np.ndarray, np.ndarray], rng: np.random.Generator, strength: float) -> np.ndarray:
    """A soft directional light across the object, so that colour is not a single flat value."""
    x, y = xy
    theta = rng.uniform(0, 2 * np.pi, len(x)).astype(np.float32)[:, None, None]
    return (1.0 + strength * np.clip(x * np.cos(theta) + y * np.sin(theta), -1, 1) * 0.5)[..., None]


def _add_distractors(
    canvas: np.ndarray, rng: np.random.Generator, count: int, scale: tuple[float, float], hue_shift: float = 0.0
) -> np.ndarray:
    n, s = canvas.shape[0], canvas.shape[1]
    for _ in range(count):
        others = random_concepts(n, rng)
        place = Placement.sample(n, rng, scale, 1.0)
        mask, pattern, _ = draw_object(others, place, rng, s)
        colour = object_colours(others[:, 0], rng, (0.5, 1.0), (0.6, 1.0), hue_shift)
        canvas = paint(canvas, mask, pattern, colour, _lerp(colour, np.ones_like(colour), 0.7))
    return canvas


# ------------------------------------------------------------------------------------------ styles
def photo(
    concepts: np.ndarray,
    rng: np.random.Generator,
    size: int = IMAGE_SIZE,
    scale: tuple[float, float] = (0.45, 0.75),
    offset: float = 0.6,
    noise: tuple[float, float] = (0.01, 0.04),
    distractors: int = 0,
    camouflage: bool = False,
    occluder: bool = False,
    saturation: tuple[float, float] = (0.65, 1.0),
    hue_shift: float = 0.0,
) -> tuple[np.ndarray, Layout]:
    """The pretraining's main style: one shaded object on a smooth two-colour background.

    The keyword arguments make the harder variants (clutter, ImageNet-A-like hard nuisances).
    """
    n, s = len(concepts), size * SUPERSAMPLE
    colour = object_colours(concepts[:, 0], rng, saturation, (0.7, 1.0), hue_shift)
    if camouflage:
        hue = np.asarray(COLOUR_HUES, dtype=np.float32)[concepts[:, 0]] + rng.uniform(-25, 25, n)
        canvas = np.broadcast_to(
            hsv_to_rgb(hue, rng.uniform(0.25, 0.55, n), rng.uniform(0.45, 0.9, n))[:, None, None, :], (n, s, s, 3)
        ).copy()
    else:
        canvas = gradient_background(n, s, rng, (0.0, 0.35), (0.25, 0.95))
    if distractors:
        canvas = _add_distractors(canvas, rng, distractors, (0.2, 0.35), hue_shift)
    place = Placement.sample(n, rng, scale, offset)
    mask, pattern, xy = draw_object(concepts, place, rng, s)
    shade = _shading(xy, rng, 0.35)
    second = _lerp(colour, np.ones_like(colour), 0.75)
    paint(canvas, mask, pattern, colour, second)
    canvas *= np.where(mask[..., None], shade, np.float32(1.0))
    if occluder:
        u, v = _grid(s)
        theta = rng.uniform(0, np.pi, n)[:, None, None]
        dist = u[None] * np.cos(theta) + v[None] * np.sin(theta) - rng.uniform(-0.4, 0.4, n)[:, None, None]
        bar = np.abs(dist) < rng.uniform(0.08, 0.16, n)[:, None, None]
        grey = rng.uniform(0.1, 0.9, n).astype(np.float32)[:, None, None, None]
        np.copyto(canvas, grey, where=bar[..., None])
        mask = mask & ~bar
    return _finish(canvas, rng, noise), Layout(place.cx, place.cy, place.scale, coverage(mask))


def sketch(concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Coloured-pencil outlines of the shape and its pattern on paper; no fill."""
    n, s = len(concepts), size * SUPERSAMPLE
    paper = rng.uniform(0.88, 1.0, n).astype(np.float32)[:, None, None, None]
    canvas = np.broadcast_to(paper, (n, s, s, 3)).copy()
    canvas -= 0.05 * upsample_noise(n, s, rng, 8)
    place = Placement.sample(n, rng, (0.5, 0.8), 0.5)
    mask, pattern, _ = draw_object(concepts, place, rng, s)
    pencil = object_colours(concepts[:, 0], rng, (0.5, 0.9), (0.45, 0.75))
    lines = edges(mask, 2) | edges(pattern, 1) | (edges(~pattern & mask, 1) & ~edges(mask, 3))
    np.copyto(canvas, pencil[:, None, None, :], where=lines[..., None])
    return _finish(canvas, rng, (0.0, 0.02)), Layout(place.cx, place.cy, place.scale, coverage(mask))


def cartoon(concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Flat saturated fill in a shifted "sticker" palette, white pattern, thick black outline, pastel background."""
    n, s = len(concepts), size * SUPERSAMPLE
    bg = hsv_to_rgb(rng.uniform(0, 360, n), rng.uniform(0.1, 0.3, n), np.ones(n, dtype=np.float32))
    canvas = np.broadcast_to(bg[:, None, None, :], (n, s, s, 3)).copy()
    place = Placement.sample(n, rng, (0.55, 0.8), 0.4)
    mask, pattern, _ = draw_object(concepts, place, rng, s)
    colour = object_colours(concepts[:, 0], rng, (0.9, 1.0), (0.9, 1.0), hue_shift=-32.0)
    canvas = paint(canvas, mask, pattern, colour, np.ones_like(colour))
    np.copyto(canvas, np.float32(0.05), where=edges(mask, 3)[..., None])
    return _finish(canvas, rng, (0.0, 0.005)), Layout(place.cx, place.cy, place.scale, coverage(mask))


def night(concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Low light: dark bluish scene, dim hue-shifted object, strong sensor noise and a slight blur."""
    n, s = len(concepts), size * SUPERSAMPLE
    canvas = gradient_background(n, s, rng, (0.2, 0.6), (0.03, 0.18))
    place = Placement.sample(n, rng, (0.45, 0.75), 0.6)
    mask, pattern, xy = draw_object(concepts, place, rng, s)
    colour = object_colours(concepts[:, 0], rng, (0.6, 1.0), (0.45, 0.65), hue_shift=40.0)
    second = _lerp(colour, np.full_like(colour, 0.6), 0.6)
    paint(canvas, mask, pattern, colour, second)
    canvas *= np.where(mask[..., None], _shading(xy, rng, 0.5), np.float32(1.0))
    canvas *= np.array([0.75, 0.85, 1.2], dtype=np.float32)
    return _finish(canvas, rng, (0.03, 0.06), blur_sigma=0.5), Layout(place.cx, place.cy, place.scale, coverage(mask))


def pixel(concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Pixel art: flat, hue-shifted colours on a plain background, rendered blocky with a small palette."""
    n, s = len(concepts), size * SUPERSAMPLE
    bg = hsv_to_rgb(rng.uniform(0, 360, n), rng.uniform(0.0, 0.5, n), rng.uniform(0.2, 0.9, n))
    canvas = np.broadcast_to(bg[:, None, None, :], (n, s, s, 3)).copy()
    place = Placement.sample(n, rng, (0.55, 0.8), 0.4)
    mask, pattern, _ = draw_object(concepts, place, rng, s)
    colour = object_colours(concepts[:, 0], rng, (0.8, 1.0), (0.8, 1.0), hue_shift=30.0)
    canvas = paint(canvas, mask, pattern, colour, _lerp(colour, np.ones_like(colour), 0.8))
    block = 2 * SUPERSAMPLE
    coarse = downsample(canvas, block)
    canvas = np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)
    canvas = np.round(canvas * 4.0) / 4.0
    return _finish(canvas, rng, (0.0, 0.0)), Layout(place.cx, place.cy, place.scale, coverage(mask))


def aerial(concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Top-down view: four small copies of the object on a textured terrain, in a cooler palette."""
    n, s = len(concepts), size * SUPERSAMPLE
    terrain = upsample_noise(n, s, rng, 6, 3)
    base = hsv_to_rgb(rng.uniform(60, 140, n), rng.uniform(0.2, 0.5, n), rng.uniform(0.3, 0.6, n))
    canvas = base[:, None, None, :] * (0.7 + 0.6 * terrain)
    colour = object_colours(concepts[:, 0], rng, (0.7, 1.0), (0.75, 1.0), hue_shift=-32.0)
    second = _lerp(colour, np.ones_like(colour), 0.75)
    first, union = None, np.zeros((n, s, s), dtype=bool)
    for gx, gy in ((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)):
        place = Placement.sample(n, rng, (0.24, 0.32), 0.0)
        place = Placement(
            cx=(gx + rng.uniform(-0.12, 0.12, n)).astype(np.float32),
            cy=(gy + rng.uniform(-0.12, 0.12, n)).astype(np.float32),
            scale=place.scale,
            angle=place.angle,
        )
        mask, pattern, _ = draw_object(concepts, place, rng, s)
        canvas = paint(canvas, mask, pattern, colour, second)
        union |= mask
        if first is None:
            first = place
    return _finish(canvas, rng, (0.02, 0.05)), Layout(np.zeros(n), np.zeros(n), first.scale, coverage(union))


def closeup(concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Macro shot of faded material: the object overfills the frame, colours are washed out and shifted."""
    return photo(
        concepts, rng, size, scale=(1.2, 1.8), offset=0.5, noise=(0.01, 0.03), saturation=(0.3, 0.55), hue_shift=-20.0
    )


def painting(concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Painterly: blotchy saturated background, brush-textured object, warm varnish, soft edges."""
    n, s = len(concepts), size * SUPERSAMPLE
    blotches = upsample_noise(n, s, rng, 5, 3)
    canvas = 0.25 + 0.6 * blotches
    place = Placement.sample(n, rng, (0.5, 0.78), 0.5)
    mask, pattern, _ = draw_object(concepts, place, rng, s)
    colour = object_colours(concepts[:, 0], rng, (0.7, 1.0), (0.7, 1.0))
    strokes = 0.8 + 0.4 * upsample_noise(n, s, rng, 12)
    paint(canvas, mask, pattern, colour, _lerp(colour, np.ones_like(colour), 0.7))
    canvas *= np.where(mask[..., None], strokes, np.float32(1.0))
    canvas *= np.array([1.08, 1.0, 0.85], dtype=np.float32)
    return _finish(canvas, rng, (0.0, 0.02), blur_sigma=0.6), Layout(place.cx, place.cy, place.scale, coverage(mask))


def rendition(concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Art renditions (ImageNet-R-like): each image is a painting, a cartoon or pixel art."""
    kind = rng.integers(3, size=len(concepts))
    images = np.zeros((len(concepts), size, size, 3), dtype=np.uint8)
    cx, cy, scale = (np.zeros(len(concepts), dtype=np.float32) for _ in range(3))
    mask = np.zeros((len(concepts), size, size), dtype=np.float32)
    for index, style in enumerate((painting, cartoon, pixel)):
        pick = kind == index
        if pick.any():
            images[pick], layout = style(concepts[pick], rng, size)
            cx[pick], cy[pick], scale[pick], mask[pick] = layout.cx, layout.cy, layout.scale, layout.mask
    return images, Layout(cx, cy, scale, mask)


STYLES: dict[str, Style] = {
    "photo": photo,
    "photo_v2": partial(photo, scale=(0.38, 0.72), noise=(0.02, 0.06)),
    "clutter": partial(photo, scale=(0.4, 0.6), distractors=2),
    "indoor": partial(photo, scale=(0.4, 0.6), distractors=2, hue_shift=25.0),
    "hard": partial(photo, scale=(0.3, 0.45), offset=1.0, noise=(0.04, 0.08), distractors=2, camouflage=True, occluder=True),
    "sketch": sketch,
    "cartoon": cartoon,
    "night": night,
    "pixel": pixel,
    "aerial": aerial,
    "closeup": closeup,
    "painting": painting,
    "rendition": rendition,
}


def render(style: str, concepts: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, Layout]:
    """Render (N, 3) concept indices in a registered style; returns uint8 (N, size, size, 3) and layout."""
    concepts = np.asarray(concepts, dtype=np.int64).reshape(-1, 3)
    return STYLES[style](concepts, rng, size)
