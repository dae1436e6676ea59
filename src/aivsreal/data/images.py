"""Turn untrusted image bytes into the RGB uint8 arrays the models eat.

Every entry point (training data, `predict`, the API) goes through `decode_image` so that
an image is resized exactly the same way at training and at inference time.

Limits, the same everywhere (docs/serving.md, "Limits"):
- formats: JPEG (and MPO, the multi-picture JPEG phones write), PNG, WebP, BMP, GIF, TIFF, and
  nothing else, whatever the file is called: Pillow's other plugins (EPS, which runs
  Ghostscript; DDS, IM, PSD, ...) are never reached;
- at most MAX_PIXELS pixels, refused from the header before any pixel is decoded;
- at most MAX_FILE_BYTES bytes per file, refused from its size before it is read;
- any failure while decoding one file is that file's BadImageError, never a crash of a batch.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

from aivsreal.errors import AivsrealError

# 64 megapixels is more than any camera photo; a 30000x30000 PNG (900 MP) is refused from its header.
MAX_PIXELS = 64_000_000
MAX_FILE_BYTES = 64 * 2**20  # a 64 MP PNG of noise is ~190 MB raw, but real photos are far smaller
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # Pillow opens MPO through its JPEG plugin
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "RGBa", "La", "I", "F", "I;16")


class BadImageError(AivsrealError):
    """The bytes are not an image we can decode safely."""


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode bytes to an (size, size, 3) uint8 RGB array.

    JPEG bytes are decoded as they are, never re-encoded: compression artefacts are part of
    the signal that separates camera images from generated ones. Images already at `size`
    are not resampled at all (CIFAKE's 32x32), others are resized with a bicubic filter.
    Large images are reduced while decoding (JPEG's DCT scaling, then integer box reduction)
    so memory follows the output size, not the file's.
    """
    with _untrusted(data) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when possible
        im.load()
        factor = min(im.width, im.height) // (3 * size)  # keep >= 3x the output for the bicubic
        if factor >= 2 and im.mode in REDUCIBLE_MODES:
            im = im.reduce(factor)
        rgb = _upright_rgb(im)
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return np.asarray(rgb, dtype=np.uint8)


def decode_native(data: bytes) -> np.ndarray:
    """Decode bytes to an HxWx3 uint8 RGB array at the image's own resolution (native-crop models).

    The same allow-list, pixel limit, EXIF rotation and mode handling as `decode_image`; no resize.
    """
    with _untrusted(data) as im:
        return np.asarray(_upright_rgb(im), dtype=np.uint8)


def decode_rescaled(data: bytes, side: int, draft: bool = True,
                    reencode: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """HxWx3 uint8 RGB with its shorter side resized to `side` px (`shorter_side_to`), and the image's
    (width, height) as stored.

    An image whose shorter side is `side` px or less is returned at native resolution, never scaled
    up: upsampling would paint interpolation traces over the ones the model reads, and the tiles
    reflect-pad a side that is short. With `draft`, a JPEG whose shorter side is at least 2x `side`
    is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (the smallest that keeps the shorter side
    >= `side`), then resized the same way: a 12 MP photo costs a quarter of its full decode in time and
    1/16 in memory. The pixel limit is still checked on the declared size, before any decode. With
    `reencode` Q, the result is saved as JPEG at quality Q and decoded again (Pillow's encoder, 4:2:0),
    every image alike, as the same-size reduction does.
    """
    with _untrusted(data) as im:
        stored = im.size
        if draft and min(im.size) >= 2 * side:
            im.draft("RGB", (side, side))  # libjpeg's scale keeps each side >= side px; a no-op for other formats
        rgb = _upright_rgb(im)
        if min(rgb.size) > side:
            rgb = shorter_side_to(rgb, side)
        if reencode:
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=reencode)
            rgb = Image.open(buf).convert("RGB")
        return np.asarray(rgb, dtype=np.uint8), stored


def shorter_side_to(im: Image.Image, side: int) -> Image.Image:
    """`im` resized so its shorter side is `side` px, the longer in proportion, with Pillow's bicubic
    filter (antialiased: its support widens with the reduction). The one resize of the photoreal
    headline (evaluate/conditions.py `same_size`) and of a native-crop model's `rescale` view."""
    w, h = im.size
    scale = side / min(w, h)
    return im.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.Resampling.BICUBIC)


@contextmanager
def _untrusted(data: bytes) -> Iterator[Image.Image]:
    """The image opened with the format allow-list and the pixel limit checked from its header; any
    failure while it is open (decoding happens there) is this file's BadImageError, nothing else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise BadImageError(f"image is {im.width}x{im.height}, over the {MAX_PIXELS:,}-pixel limit")
                yield im
    except BadImageError:
        raise
    except Image.UnidentifiedImageError:
        raise BadImageError(f"not a readable image (not one of {', '.join(FORMATS)})") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure on untrusted bytes is this file's error
        raise BadImageError(f"not a readable image ({type(e).__name__}: {_short(e)})") from None


def stored_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as stored, from the header alone; None when unreadable.

    The server budgets decode memory with it before decoding, and the domain check compares it
    with the training images'. A file whose header cannot be read fails just as fast in
    `decode_image`, which gives the reason.
    """
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            return im.width, im.height
    except Exception:  # noqa: BLE001 - same untrusted bytes as decode_image
        return None


def declared_pixels(data: bytes) -> int:
    size = stored_size(data)
    return size[0] * size[1] if size else 0


def _short(e: BaseException) -> str:
    """The message without object reprs: they carry heap addresses and say nothing to a user."""
    text = str(e).split(" at 0x")[0].split("<")[0].strip()
    return text[:160] or type(e).__name__


def _upright_rgb(im: Image.Image) -> Image.Image:
    """`im` turned upright by its EXIF orientation, as 8-bit RGB, copied only where a step changes it.

    Pillow's `exif_transpose` and `convert` copy even when they change nothing: on an 8000x8000 RGB PNG
    that was two more 192 MB buffers beside the decoded one, the server's peak under giant uploads."""
    im.load()
    if im.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        im = ImageOps.exif_transpose(im)
    return im if im.mode == "RGB" else _to_rgb(im)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Flatten any mode (palette, alpha, 16-bit, CMYK) to 8-bit RGB, alpha over white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return Image.fromarray((arr / peak * 255.0).round().astype(np.uint8)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    return im.convert("RGB")


def check_size(n_bytes: int, where: str | Path) -> int:
    if n_bytes > MAX_FILE_BYTES:
        raise BadImageError(f"{where}: {n_bytes:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit per image")
    return n_bytes


def read_limited(path: str | Path) -> bytes:
    """A file's bytes, refusing what is not a regular file (a FIFO would hang the read) and what is
    over MAX_FILE_BYTES, by its stat before reading and by what was read after (it may have grown)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise BadImageError(f"{path}: not a regular file (a FIFO, device or folder); skipped")
        check_size(st.st_size, path)
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise BadImageError(f"{path}: cannot read ({e.strerror or e})") from None
    check_size(len(data), path)
    return data
