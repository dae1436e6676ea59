"""Test conditions that take file format and image size away from a benchmark, and the content-only view.

In real-world sets REAL and FAKE differ in how they are stored: camera photos are large JPEGs,
renders 1024 px PNGs or WebPs. A detector scored on the files as stored can win by reading the
size or the codec. So every test image is reduced the same way, REAL and FAKE alike:

- `same_size` (the photoreal headline): shorter side resized to 512 px, centre-cropped to 512x512,
  saved as JPEG q90. Every image ends up with the same shape and codec; what survives of the
  original size is how much it was shrunk (a 4,000 px photo loses its sensor noise, a 512 px
  render keeps its traces);
- `native_crop`: a 512x512 centre crop at native resolution, saved the same way. Nothing is
  resampled, so generation traces survive, but a crop of a 12 MP photo shows 1/46 of the scene.
  Images under 512 px on a side are left out (never padded: padding would mark them).

Each reduction leaves a different trace of the original size, which is why a benchmark reports
both. `thumbnail` is the other control: what a content-only classifier sees. At 32x32, what is
pictured, its colours and layout survive and generation traces do not; a probe that scores well
on thumbnails is reading content, and so may a detector that agrees with it.

Images are decoded fully and resized with Pillow's antialiased bicubic filter, never with JPEG
draft (DCT-domain) decoding: draft applies to JPEGs only, which are mostly REAL, and would treat
the classes differently.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from aivsreal.data.crops import centre_crop
from aivsreal.data.images import shorter_side_to
from aivsreal.data.perturb import jpeg_bytes

SIDE = 512  # px, both reductions
QUALITY = 90  # JPEG quality of both reductions
THUMB = 32  # px, the content-only view


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC))


def same_size(pixels: np.ndarray, side: int = SIDE, quality: int = QUALITY) -> bytes:
    """HxWx3 uint8 -> JPEG bytes of the image scaled so its shorter side is `side`, centre-cropped square."""
    scaled = np.asarray(shorter_side_to(Image.fromarray(pixels), side))
    return jpeg_bytes(np.ascontiguousarray(centre_crop(scaled, side)), quality)


def native_crop(pixels: np.ndarray, side: int = SIDE, quality: int = QUALITY) -> bytes | None:
    """JPEG bytes of the native `side` x `side` centre crop; None when the image is smaller than that."""
    h, w = pixels.shape[:2]
    if min(h, w) < side:
        return None
    return jpeg_bytes(np.ascontiguousarray(centre_crop(pixels, side)), quality)


def thumbnail(pixels: np.ndarray, side: int = THUMB) -> np.ndarray:
    """The central square of the image shrunk to `side` x `side`: content, colour and layout, no traces.

    The square crop first, so that the aspect ratio (a size cue) does not reach the classifier."""
    h, w = pixels.shape[:2]
    s = min(h, w)
    square = pixels[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return _resize(np.ascontiguousarray(square), side, side)


def decode_jpeg(data: bytes) -> np.ndarray:
    """The pixels a detector reads from a reduced image (RGB uint8)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
