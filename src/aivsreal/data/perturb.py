"""Image degradations that happen to images in the wild: re-compression, blur, resizing, noise.

Used twice: by training augmentation (`--degrade`) and by `aivsreal robustness`, so the test
perturbations are exactly the ones training can learn to survive.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """Pillow's (libjpeg's) encoder at `quality`, with its default 4:2:0 chroma subsampling."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(jpeg_bytes(im, quality))).convert("RGB")) for im in images])


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each channel with a Gaussian of `sigma` pixels (kernel to 4 sigma, mirrored edges)."""
    blurred = gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect", truncate=4.0)
    return _to_uint8(blurred)


def rescale(images: np.ndarray, factor: float) -> np.ndarray:
    """Down to `factor` of the size and back up, both bicubic: detail finer than the small size is lost."""
    h, w = images.shape[1:3]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    bicubic = Image.Resampling.BICUBIC
    return np.stack([np.asarray(Image.fromarray(im).resize(small, bicubic).resize((w, h), bicubic))
                     for im in images])


def gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Add N(0, sigma^2) noise in 0..255 pixel units (sigma 5 = 5/255), fixed seed, clipped and rounded."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=images.shape)
    return _to_uint8(images.astype(np.float64) + noise)


def hflip(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images[:, :, ::-1])


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
