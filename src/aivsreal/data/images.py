"""Turn untrusted image bytes into the RGB uint8 arrays the models eat.

Every entry point (training data, `predict`, the API) goes through `decode_image` so that
an image is resized exactly the same way at training and at inference time.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from aivsreal.errors import AivsrealError

# Refuse decompression bombs before any pixel is decoded: 64 megapixels is more than any
# camera photo, and a 30000x30000 PNG (900 MP) is refused from its header alone.
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class BadImageError(AivsrealError):
    """The bytes are not an image we can decode safely."""


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode bytes to an (size, size, 3) uint8 RGB array.

    JPEG bytes are decoded as they are, never re-encoded: compression artefacts are part of
    the signal that separates camera images from generated ones. Images already at `size`
    are not resampled at all (CIFAKE's 32x32), others are resized with a bicubic filter.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise BadImageError(
                        f"image is {im.width}x{im.height}, over the {MAX_PIXELS:,}-pixel limit"
                    )
                im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when possible
                im = ImageOps.exif_transpose(im)
                rgb = _to_rgb(im)
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
                return np.asarray(rgb, dtype=np.uint8)
    except BadImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise BadImageError(f"not a readable image ({type(e).__name__}: {e})") from None


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


def read_image_file(path: str | Path, size: int) -> np.ndarray:
    """`decode_image` for a file on disk, with the path in the error message."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadImageError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return decode_image(data, size)
    except BadImageError as e:
        raise BadImageError(f"{path}: {e}") from None
