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

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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
    return cut(pixels, tile_layout(*pixels.shape[:2], size, max_tiles))


def cut(pixels: np.ndarray, layout: TileLayout) -> np.ndarray:
    """The tiles of `layout` from its canvas's pixels (reflect-padded where a tile runs past it)."""
    px, size = pad_to(pixels, layout.crop), layout.crop
    return np.stack([px[y : y + size, x : x + size] for y, x in layout.origins])


@dataclass(frozen=True)
class TileLayout:
    """Where a native-crop model's tiles were cut: the canvas they came from and each one's top-left corner.

    The canvas is the image as the model saw it (as stored, or after `rescale` and `reencode`), before
    the reflect padding, which only ever extends its bottom and right: a tile's corner is a canvas
    coordinate, and what of the tile lies past the canvas is padding. Kept beside the views so that
    whoever explains them (Grad-CAM) can put each tile back where it came from without the canvas's
    pixels, and without re-deriving the canvas from the stored size (EXIF rotation, JPEG draft decoding).
    """

    canvas: tuple[int, int]  # (height, width)
    crop: int
    origins: tuple[tuple[int, int], ...]  # (y, x) per tile, in the order of the views

    def region(self, i: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of tile i on the canvas: its padding left out."""
        y, x = self.origins[i]
        return y, min(y + self.crop, self.canvas[0]), x, min(x + self.crop, self.canvas[1])


def tile_layout(height: int, width: int, crop: int, max_tiles: int = MAX_TILES) -> TileLayout:
    """The layout `tiles` cuts from a height x width canvas (one home for both)."""
    origins = tile_origins(max(height, crop), max(width, crop), crop, max_tiles)
    return TileLayout((height, width), crop, tuple(origins))


class Views(NamedTuple):
    """What a model reads from one image: its views, its stored (width, height) for the domain check, and
    for a native-crop model where its tiles lie on the canvas (None for a whole-image model)."""

    pixels: np.ndarray  # (V, S, S, 3) uint8
    size: tuple[int, int] | None
    layout: TileLayout | None = None


def decode_views(data: bytes, image_size: int, crop: int | None = None, max_tiles: int = MAX_TILES, *,
                 rescale: int | None = None, draft: bool = True,
                 reencode: int | None = None) -> Views:
    """What a model reads from one image, (V, S, S, 3) uint8, the image's stored (width, height) and
    the tiles' layout.

    A model with `crop` reads up to `max_tiles` native crops of that size covering the image; with
    `rescale` too, the crops are cut from the image resized to that shorter side (never scaled up;
    `draft`: JPEG DCT-domain decoding on the way, see `decode_rescaled`). Any other model reads the
    one image resized to `image_size` (V = 1). Only the views outlive the call: the tiles are copies,
    so the full decode is freed before the next image is read.
    """
    if crop is None:
        return Views(decode_image(data, image_size)[None], stored_size(data))
    if rescale:
        pixels, size = decode_rescaled(data, rescale, draft, reencode)
    else:
        pixels = decode_native(data)
        size = (pixels.shape[1], pixels.shape[0])
    layout = tile_layout(*pixels.shape[:2], crop, max_tiles)
    return Views(cut(pixels, layout), size, layout)


def read_views(path: str | Path, image_size: int, crop: int | None = None, max_tiles: int = MAX_TILES, *,
               rescale: int | None = None, draft: bool = True,
               reencode: int | None = None) -> Views:
    """`decode_views` for a listed image (a file, a zip member or a URL: `read_source`), with its name in the
    error message."""
    data = read_source(str(path))
    try:
        return decode_views(data, image_size, crop, max_tiles, rescale=rescale, draft=draft, reencode=reencode)
    except BadImageError as e:
        raise BadImageError(f"{path}: {e}") from None
