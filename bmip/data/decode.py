"""Reading one image file as RGB the way CoOp/Dassl do (PIL `convert("RGB")`), and saying in words
what is wrong with a file that cannot be read.

Every image the package decodes (training, evaluation, the data check, miniworld) goes through
`read_rgb`, so a broken file is always named, with what is wrong and what to do. Odd but valid
files load as Dassl loads them: CMYK, 16-bit grayscale, palette (with or without transparency),
grayscale and RGBA are converted by PIL's `convert("RGB")` (16-bit values above 255 clip to 255,
transparency is dropped), exactly as `dassl.data.transforms` sees them through `read_image`.
"""
from __future__ import annotations

import codecs
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import ImageDecodeError

FIX = ("replace it with a good copy (a registry dataset: `bmip download <name> --root <data_root>` fetches it "
       "again) or remove it from the dataset's folder and split file; `bmip check-data <config>` lists every "
       "unreadable file at once")
# Leading bytes of the formats datasets ship: a file that starts like one but cannot be identified
# is a damaged (usually truncated) file of that format, not a file of another kind.
MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
         b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _decode(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")  # decodes every pixel: a truncated file raises here


def read_rgb(path: Path, where: str = "") -> Image.Image:
    """The fully decoded image at `path` as RGB; ImageDecodeError names the file (and `where`, e.g.
    "eurosat test images"), says what is wrong with it and what to do."""
    try:
        return _decode(path)
    except _DECODE_ERRORS as err:
        context = f" ({where})" if where else ""
        raise ImageDecodeError(f"{path}{context}: {problem(path, err)}; {FIX}") from err


def image_problem(path: Path) -> str | None:
    """None if the file decodes fully and converts to RGB, else what is wrong with it, in words."""
    try:
        _decode(path)
    except _DECODE_ERRORS as err:
        return problem(path, err)
    return None


def problem(path: Path, err: BaseException) -> str:
    """What is wrong with an image file that PIL could not read: missing, empty, not an image
    (text or HTML saved under an image name), truncated, or a format or mode PIL cannot decode."""
    if isinstance(err, (FileNotFoundError, NotADirectoryError)):
        return "missing: no such file"
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(48)
    except OSError as stat_err:
        return f"unreadable ({stat_err.strerror or stat_err})"
    if size == 0:
        return "empty (0 bytes): an interrupted copy or download"
    if isinstance(err, UnidentifiedImageError):
        kind = next((name for magic, name in MAGIC.items() if head.startswith(magic)), None)
        if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            kind = "WebP"
        if kind is not None:
            return f"truncated or damaged: a {kind} file whose header PIL cannot read ({size} bytes)"
        if _is_text(head):
            start = head.decode("utf-8", "replace").split("\n")[0][:40]
            return f"not an image: a text file ({size} bytes, begins {start!r}), e.g. an error page saved as an image"
        return f"not an image format PIL can read ({size} bytes, begins {head[:8].hex(' ')})"
    message = str(err)
    if "truncated" in message or isinstance(err, EOFError):
        return f"truncated: the image data ends early ({size} bytes; {message})"
    if isinstance(err, Image.DecompressionBombError):
        return f"too large to decode safely ({message})"
    if any(word in message for word in ("decoder", "not supported", "unsupported", "mode")):
        return f"unsupported format or mode ({message})"
    return f"cannot be decoded ({type(err).__name__}: {message})"


def _is_text(head: bytes) -> bool:
    try:  # incremental: a character cut at the end of `head` is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)
