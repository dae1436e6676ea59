"""Pictures of Grad-CAM maps: the view the model read under a jet heat map, as PNG bytes.

A whole-image model's picture is its one input, enlarged. A native-crop model's is its canvas (the image
as the model saw it, after any `rescale` and `reencode`), rebuilt at display size from the tiles
themselves, each tile's map put back where the tile was cut (overlaps averaged): the tiles hold every
pixel the model read, so a 64 MP photo's canvas is never held at full size. What no tile covered was
not read: it is drawn as grey hatching with no heat colour (its map is 0), never as "no evidence".
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aivsreal.data.crops import TileLayout

UNREAD = (112, 144)  # the two greys of the hatching where no tile was read


@dataclass
class Picture:
    image: np.ndarray  # (H, W, 3) uint8: the view as displayed
    heat: np.ndarray  # (H, W) float in [0, 1]: the map at the same size
    covered: np.ndarray | None = None  # (H, W) bool: read by some tile; None: all of it


def _enlarged(pixels: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST))


def display_shape(canvas: tuple[int, int], longest: int) -> tuple[int, int]:
    """(height, width) of a canvas shown with its longer side `longest` px, its aspect kept."""
    scale = longest / max(canvas)
    return max(round(canvas[0] * scale), 1), max(round(canvas[1] * scale), 1)


def stitch(views: np.ndarray, maps: np.ndarray, layout: TileLayout, shape: tuple[int, int]) -> Picture:
    """A tiled model's canvas at `shape` (height, width), from its (T, S, S, 3) tiles and (T, S, S) maps.

    Each tile, less its reflect padding, lands on its region of the canvas scaled to `shape`; where tiles
    overlap their maps are averaged (their pixels are the same canvas pixels); where none lies the map
    is 0, `covered` is False and the image is grey hatching (`UNREAD`)."""
    (height, width), (out_h, out_w) = layout.canvas, shape
    y, x = np.mgrid[:out_h, :out_w]
    image = np.where(((y + x) // 4 % 2 == 0)[..., None], *UNREAD).astype(np.uint8).repeat(3, axis=2)
    total = np.zeros(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.int32)
    for i, (view, cam) in enumerate(zip(views, maps, strict=True)):
        top, bottom, left, right = layout.region(i)
        y0, y1 = round(top * out_h / height), round(bottom * out_h / height)
        x0, x1 = round(left * out_w / width), round(right * out_w / width)
        if y1 <= y0 or x1 <= x0:
            continue  # a tile smaller than one display pixel
        box = (x1 - x0, y1 - y0)
        tile = Image.fromarray(np.ascontiguousarray(view[: bottom - top, : right - left]))
        enlarge = box[0] >= tile.width
        image[y0:y1, x0:x1] = tile.resize(box, Image.Resampling.NEAREST if enlarge else Image.Resampling.BOX)
        heat = Image.fromarray(np.ascontiguousarray(cam[: bottom - top, : right - left], dtype=np.float32))
        total[y0:y1, x0:x1] += np.asarray(heat.resize(box, Image.Resampling.BILINEAR))
        count[y0:y1, x0:x1] += 1
    covered = count > 0
    return Picture(image, np.divide(total, count, out=np.zeros_like(total), where=covered), covered)


def picture(views: np.ndarray, maps: np.ndarray, layout: TileLayout | None, size: int = 224) -> Picture:
    """What the model read of one image and its maps, at display size: a whole-image model's one view as
    a `size` px square (pixels enlarged as squares, so JPEG blocks stay visible), a tiled model's canvas
    with its longer side `size` px (`stitch`)."""
    if layout is not None:
        return stitch(views, maps, layout, display_shape(layout.canvas, size))
    heat = Image.fromarray(np.uint8(np.clip(maps[0], 0, 1) * 255)).resize((size, size), Image.Resampling.BILINEAR)
    return Picture(_enlarged(views[0], size), np.asarray(heat) / 255.0)


def blend(pic: Picture, alpha: float = 0.45) -> np.ndarray:
    """The picture's image under a jet heat map of its map; what was not read keeps its hatching."""
    from matplotlib import colormaps

    base = pic.image.astype(np.float32)
    colour = colormaps["jet"](pic.heat)[..., :3] * 255.0
    mixed = (1 - alpha) * base + alpha * colour
    if pic.covered is not None:
        mixed = np.where(pic.covered[..., None], mixed, base)
    return np.uint8(np.clip(mixed, 0, 255).round())


def panels(pic: Picture) -> np.ndarray:
    """Image | overlay, with a white gap: what `aivsreal explain` writes per image."""
    gap = np.full((pic.image.shape[0], 8, 3), 255, dtype=np.uint8)
    return np.concatenate([pic.image, gap, blend(pic)], axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return buf.getvalue()
