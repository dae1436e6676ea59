"""The benchmark's test conditions: REAL and FAKE reduced alike, and a content-only view that sees 32 px."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from aivsreal.data.crops import centre_crop
from aivsreal.data.perturb import jpeg_bytes
from aivsreal.evaluate.conditions import QUALITY, SIDE, decode_jpeg, native_crop, same_size, thumbnail


def photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def stored(pixels: np.ndarray, fmt: str, **kw) -> np.ndarray:
    """The pixels after a round trip through `fmt`, as a file in the wild would be decoded."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **kw)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def codec(data: bytes) -> tuple:
    im = Image.open(io.BytesIO(data))
    return im.format, im.size, im.mode, tuple(tuple(t) for t in im.quantization.values()), im.layer


@pytest.mark.parametrize("source", [
    ("JPEG", 1500, 2000, {"quality": 97}),  # a camera photo
    ("PNG", 1024, 1024, {}),  # a render
    ("WEBP", 600, 896, {"quality": 80}),
    ("PNG", 300, 200, {}),  # smaller than 512: scaled up, the same way
])
def test_same_size_gives_every_image_one_shape_and_one_codec(source):
    fmt, h, w, kw = source
    reference = codec(same_size(photo(1024, 768, 0)))
    out = same_size(stored(photo(h, w, 1), fmt, **kw))
    assert codec(out) == reference
    assert codec(out)[:2] == ("JPEG", (SIDE, SIDE))
    assert out == same_size(stored(photo(h, w, 1), fmt, **kw))  # deterministic


def test_same_size_keeps_the_centre_of_the_scene():
    img = np.zeros((1000, 3000, 3), np.uint8)
    img[:, 1000:2000] = (200, 30, 30)  # the central third, a square
    out = decode_jpeg(same_size(img))
    assert np.abs(out[:, 40:-40].astype(int) - (200, 30, 30)).max() < 12


def test_native_crop_is_the_centre_at_native_resolution_or_nothing():
    img = photo(700, 900, 2)
    out = native_crop(img)
    assert out == jpeg_bytes(np.ascontiguousarray(centre_crop(img, SIDE)), QUALITY)
    assert codec(out) == codec(same_size(img))
    assert native_crop(img[:511]) is None and native_crop(img[:, :500]) is None


def test_a_fine_checkerboard_survives_the_native_crop_but_not_the_reduction():
    checker = (np.indices((2048, 2048)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
    native = decode_jpeg(native_crop(checker)).astype(float)
    reduced = decode_jpeg(same_size(checker)).astype(float)
    assert np.abs(np.diff(native[..., 0], axis=1)).mean() > 150  # pixel-to-pixel flips kept
    assert np.abs(np.diff(reduced[..., 0], axis=1)).mean() < 20  # averaged away by the 4x shrink


def test_the_thumbnail_sees_32_px_of_content_and_no_aspect_ratio():
    img = photo(900, 900, 3)
    thumb = thumbnail(img)
    assert thumb.shape == (32, 32, 3) and thumb.dtype == np.uint8
    wide = np.concatenate([photo(900, 300, 4), img, photo(900, 300, 5)], axis=1)  # same centre, 5:3
    assert np.array_equal(thumbnail(wide), thumb)
    traced = img.copy()
    traced[::2, ::2] ^= 8  # a periodic trace at the finest scale, as an upsampler leaves
    assert np.abs(thumbnail(traced).astype(int) - thumb).max() <= 3  # gone at 32 px
    assert np.abs(thumbnail(photo(900, 900, 6)[::-1]).astype(int) - thumb).mean() > 20  # content still shows
