"""Pictures of Grad-CAM maps: the image under a jet heat map, side by side, as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _enlarged(pixels: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST))


def overlay(pixels: np.ndarray, cam: np.ndarray, size: int = 224, alpha: float = 0.45) -> np.ndarray:
    """The image (pixels enlarged as squares, so JPEG blocks stay visible) under a jet heat map."""
    from matplotlib import colormaps

    base = _enlarged(pixels, size).astype(np.float32)
    heat = Image.fromarray(np.uint8(np.clip(cam, 0, 1) * 255)).resize((size, size), Image.Resampling.BILINEAR)
    colour = colormaps["jet"](np.asarray(heat) / 255.0)[..., :3] * 255.0
    return np.uint8(np.clip((1 - alpha) * base + alpha * colour, 0, 255).round())


def side_by_side(pixels: np.ndarray, cam: np.ndarray, size: int = 224) -> np.ndarray:
    """Image | overlay, with a white gap: what `aivsreal explain` writes per image."""
    base = _enlarged(pixels, size)
    gap = np.full((size, 8, 3), 255, dtype=np.uint8)
    return np.concatenate([base, gap, overlay(pixels, cam, size)], axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return buf.getvalue()
