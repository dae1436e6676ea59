"""Native-resolution crops: the pixels of a large image as they are, never resampled.

Generator traces live in the finest pixel structure; shrinking a 2000 px photo to a network's
224 px input erases them (and shrinks REAL and FAKE differently when their sizes differ: a
shortcut). So models for images in the wild read crops at native resolution: one random crop per
training view, a deterministic grid of crops at evaluation and inference, logits averaged.

An image smaller than the crop on a side is padded by reflection on that side (never scaled up).

A model may also set a scale on purpose (`rescale` S in its config): the image's shorter side is
first resized to S px, then tiled the same way, so that a 12 MP photo's verdict reads the whole
scene at one known scale rather than nine 224 px corners of it (1/250 of its pixels each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aivsreal.data.images import BadImageError, decode_image, decode_native, decode_rescaled, stored_size
from aivsreal.data.inputs import read_source

MAX_TILES = 9  # at inference: at most 3x3 crops per image, spread evenly over it


def pad_to(pixels: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad an HxWx3 array so both sides are at least `size` (a copy only when needed)."""
    h, w = pixels.shape[:2]
    if h >= size and w >= size:
        return pixels
    pad = ((0, max(size - h, 0)), (0, max(size - w, 0)), (0, 0))
    return np.pad(pixels, pad, mode="reflect" if min(h, w) > 1 else "edge")


def random_crop(pixels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    px = pad_to(pixels, size)
    h, w = px.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return px[y : y + size, x : x + size]


def centre_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    px = pad_to(pixels, size)
    h, w = px.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return px[y : y + size, x : x + size]


def tile_origins(height: int, width: int, size: int, max_tiles: int = MAX_TILES) -> list[tuple[int, int]]:
    """Top-left corners of crops that cover the image (evenly spread; at most `max_tiles`).

    Per axis: the fewest crops that cover it, capped at floor(sqrt(max_tiles)); the first touches
    one edge, the last the other. Past the cap the crops sample the image instead of covering it.
    """
    per_axis = max(int(np.sqrt(max_tiles)), 1)

    def axis(length: int) -> list[int]:
        if length <= size:
            return [0]
        n = min(int(np.ceil(length / size)), per_axis)
        return sorted({round(i * (length - size) / max(n - 1, 1)) for i in range(n)})

    return [(y, x) for y in axis(height) for x in axis(width)]


def tiles(pixels: np.ndarray, size: int, max_tiles: int = MAX_TILES) -> np.ndarray:
    """(T, size, size, 3) native crops covering the image, for the logits to be averaged."""
    px = pad_to(pixels, size)
    return np.stack([px[y : y + size, x : x + size] for y, x in tile_origins(*px.shape[:2], size, max_tiles)])


def decode_views(data: bytes, image_size: int, crop: int | None = None, max_tiles: int = MAX_TILES, *,
                 rescale: int | None = None, draft: bool = True,
                 reencode: int | None = None) -> tuple[np.ndarray, tuple[int, int] | None]:
    """What a model reads from one image, (V, S, S, 3) uint8, and the image's stored (width, height).

    A model with `crop` reads up to `max_tiles` native crops of that size covering the image; with
    `rescale` too, the crops are cut from the image resized to that shorter side (never scaled up;
    `draft`: JPEG DCT-domain decoding on the way, see `decode_rescaled`). Any other model reads the
    one image resized to `image_size` (V = 1). Only the views outlive the call: the tiles are copies,
    so the full decode is freed before the next image is read.
    """
    if crop is None:
        return decode_image(data, image_size)[None], stored_size(data)
    if rescale:
        pixels, size = decode_rescaled(data, rescale, draft, reencode)
        return tiles(pixels, crop, max_tiles), size
    pixels = decode_native(data)
    return tiles(pixels, crop, max_tiles), (pixels.shape[1], pixels.shape[0])


def read_views(path: str | Path, image_size: int, crop: int | None = None, max_tiles: int = MAX_TILES, *,
               rescale: int | None = None, draft: bool = True,
               reencode: int | None = None) -> tuple[np.ndarray, tuple[int, int] | None]:
    """`decode_views` for a listed image (a file, a zip member or a URL: `read_source`), with its name in the
    error message."""
    data = read_source(str(path))
    try:
        return decode_views(data, image_size, crop, max_tiles, rescale=rescale, draft=draft, reencode=reencode)
    except BadImageError as e:
        raise BadImageError(f"{path}: {e}") from None
