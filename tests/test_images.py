import io
import struct
import time
import zlib

import numpy as np
import pytest
from conftest import jpeg_bytes
from PIL import Image

from aivsreal.data.crops import read_views
from aivsreal.data.images import (
    MAX_PIXELS,
    BadImageError,
    _upright_rgb,
    decode_image,
    decode_native,
    decode_rescaled,
)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_jpeg_is_decoded_as_is_without_resampling():
    rng = np.random.default_rng(0)
    data = jpeg_bytes(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), quality=75)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(decode_image(data, 32), expected)


def test_resizes_any_size_to_square():
    out = decode_image(encode(Image.new("RGB", (640, 480), (10, 200, 30)), "PNG"), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert tuple(out[16, 16]) == (10, 200, 30)


def test_rgba_is_composited_over_white():
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    assert tuple(decode_image(encode(im, "PNG"), 8)[0, 0]) == (255, 255, 255)


def test_grayscale_palette_and_cmyk():
    assert tuple(decode_image(encode(Image.new("L", (8, 8), 77), "PNG"), 8)[3, 3]) == (77, 77, 77)
    pal = Image.new("RGB", (8, 8), (0, 0, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert tuple(decode_image(encode(pal, "PNG"), 8)[0, 0]) == (0, 0, 255)
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = decode_image(encode(cmyk, "JPEG", quality=95), 16)[8, 8]
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped():
    arr = np.full((8, 8), 32768, dtype=np.uint16)
    im = Image.fromarray(arr)  # mode I;16
    value = decode_image(encode(im, "PNG"), 8)[0, 0, 0]
    assert 125 <= value <= 130  # half of 65535 -> half of 255


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    out = decode_image(encode(im, "JPEG", quality=95, exif=exif.tobytes()), 40)
    # Displayed upright the image is 20 wide x 40 tall with the white half on top.
    assert out[5, 20].mean() > 200 and out[35, 20].mean() < 50


@pytest.mark.parametrize("decode", [decode_native, lambda data: decode_rescaled(data, 512)[0]])
def test_native_and_rescaled_decodes_turn_the_image_upright(decode):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode(encode(im, "PNG", exif=exif.tobytes()))
    assert out.shape == (40, 20, 3) and out[5, 10].min() == 255 and out[35, 10].max() == 0


def test_an_upright_rgb_image_is_not_copied_on_its_way_to_the_model():
    """Each copy of an 8000x8000 decode is 192 MB of server memory (issue 51's giant uploads)."""
    with Image.open(io.BytesIO(encode(Image.new("RGB", (64, 48), (1, 2, 3)), "PNG"))) as im:
        assert _upright_rgb(im) is im
    with Image.open(io.BytesIO(encode(Image.new("P", (64, 48), 3), "PNG"))) as im:
        assert _upright_rgb(im).mode == "RGB"


@pytest.mark.parametrize("payload", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 50])
def test_garbage_is_a_bad_image(payload):
    with pytest.raises(BadImageError):
        decode_image(payload, 32)


def test_truncated_jpeg_is_a_bad_image():
    data = jpeg_bytes(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(BadImageError):
        decode_image(data[: len(data) // 3], 32)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height 1-bit pixels, with a small zlib stream of zeros."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100_000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_fast():
    # A 30000x30000 PNG: tiny on disk, 2.7 GB decoded. Refused from its header.
    side = 30000
    assert side * side > MAX_PIXELS
    data = png_header_only(side, side)
    t = time.perf_counter()
    with pytest.raises(BadImageError, match="pixel"):
        decode_image(data, 32)
    assert time.perf_counter() - t < 5


def test_read_image_file_names_the_path(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(BadImageError, match="broken.jpg"):
        read_views(bad, 32)
    with pytest.raises(BadImageError, match="cannot read"):
        read_views(tmp_path / "missing.jpg", 32)
