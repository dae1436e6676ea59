"""Random, truncated and mangled bytes never crash the loader or the API: a clear error or a verdict."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aivsreal.data.images import BadImageError, decode_image


def _seed_files() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_files()


@st.composite
def mangled(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    cut = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        data = data[:cut]  # truncated
    for _ in range(draw(st.integers(0, 8))):  # flipped bytes, headers included
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def check_decode(data: bytes) -> None:
    try:
        out = decode_image(data, 32)
    except BadImageError as e:
        assert str(e)
        return
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=4096), mangled()))
def test_loader_never_crashes(data):
    check_decode(data)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import save_model
    from aivsreal.serve.app import create_app

    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_model(path, build_model(default_config("fast")))
    with TestClient(create_app(path, max_upload_mb=0.01, device="cpu")) as c:
        yield c


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.one_of(st.binary(max_size=12_000), mangled()), min_size=1, max_size=4),
       names=st.text(max_size=30))
def test_api_never_answers_500(client, files, names):
    r = client.post("/api/predict", files=[("files", (names or "x", d, "application/octet-stream")) for d in files])
    assert r.status_code in (200, 400, 413), r.text
    results = r.json()["results"]
    assert len(results) == len(files)
    for res in results:
        assert res["status"] in (200, 400, 413)
        assert ("error" in res) == (res["status"] != 200)


def _every_pillow_format() -> dict[str, bytes]:
    """A small image written by each of Pillow's writers: the decoder sees every plugin's bytes."""
    rng = np.random.default_rng(1)
    Image.init()
    out = {}
    for fmt in sorted(Image.SAVE):
        for mode in ("RGB", "L", "1"):
            buf = io.BytesIO()
            try:
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).convert(mode).save(buf, format=fmt)
            except Exception:  # noqa: BLE001 - some writers need other modes or sizes
                continue
            out[fmt] = buf.getvalue()
            break
    return out


EVERY_FORMAT = _every_pillow_format()


def test_each_allowed_format_decodes_to_the_pixels_it_holds():
    """What the loader returns, not only that it returns: every allowed format gives back the pixels
    Pillow reads from it (lossless ones: the very pixels written), resized with bicubic; alpha lands
    on white. The fuzz corpus above has a file of each of these formats."""
    from aivsreal.data.images import FORMATS

    assert set(FORMATS) <= set(EVERY_FORMAT)
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:48, 0:48]
    pixels = np.clip(np.stack([xx * 5, yy * 5, (xx + yy) * 3], -1) + rng.integers(0, 40, (48, 48, 3)), 0, 255)
    pixels = pixels.astype(np.uint8)
    options = {"WEBP": {"lossless": True}, "JPEG": {"quality": 90}}
    for fmt in FORMATS:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt, **options.get(fmt, {}))
        stored = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        if fmt in ("PNG", "WEBP", "BMP", "TIFF"):
            assert np.array_equal(np.asarray(stored), pixels), fmt
        assert np.array_equal(decode_image(buf.getvalue(), 48), np.asarray(stored)), fmt
        if fmt != "JPEG":  # JPEG may shrink in its DCT first (draft mode)
            small = np.asarray(stored.resize((20, 20), Image.Resampling.BICUBIC))
            assert np.array_equal(decode_image(buf.getvalue(), 20), small), fmt
    rgba = np.dstack([pixels, np.where(xx < 24, 0, 255).astype(np.uint8)])  # left half fully transparent
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    out = decode_image(buf.getvalue(), 48)
    assert (out[:, :24] == 255).all() and np.array_equal(out[:, 24:], pixels[:, 24:])


@pytest.mark.parametrize("fmt", sorted(EVERY_FORMAT))
def test_every_pillow_format_is_decoded_or_refused(fmt):
    from aivsreal.data.images import FORMATS

    data = EVERY_FORMAT[fmt]
    if fmt in FORMATS or fmt == "MPO":  # MPO is JPEG's multi-picture variant, opened by the JPEG plugin
        assert decode_image(data, 32).shape == (32, 32, 3)
    else:
        with pytest.raises(BadImageError, match="not one of"):
            decode_image(data, 32)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(EVERY_FORMAT)), st.data())
def test_mangled_files_of_every_format_never_crash(fmt, data):
    raw = bytearray(EVERY_FORMAT[fmt])
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    for _ in range(data.draw(st.integers(0, 8))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    check_decode(bytes(raw))


def test_eps_renamed_jpg_never_reaches_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    from aivsreal.data.crops import read_views

    def no_ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript was reached")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    path = tmp_path / "photo.jpg"
    path.write_bytes(EVERY_FORMAT["EPS"])
    with pytest.raises(BadImageError, match="not one of"):
        read_views(path, 32)


@pytest.mark.parametrize("crafted", [
    b"DDS |" + bytes(120),  # a DDS header: Pillow raised NotImplementedError
    b"Image type: RGB image\r\nName: x\r\nImage size (x*y): 1.5*2\r\n\x1a" + bytes(600),  # IM, float size
    # TIFF whose StripOffsets tag (273) is typed ASCII: Pillow raised TypeError
    b"II*\x00\x08\x00\x00\x00\x03\x00\x00\x01\x03\x00\x01\x00\x00\x00\x04\x00\x00\x00"
    b"\x01\x01\x03\x00\x01\x00\x00\x00\x04\x00\x00\x00\x11\x01\x02\x00\x04\x00\x00\x00abc\x00\x00\x00\x00\x00",
])
def test_crafted_files_that_crashed_pillow_are_bad_images(crafted):
    with pytest.raises(BadImageError) as e:
        decode_image(crafted, 32)
    assert " at 0x" not in str(e.value) and str(e.value).count("not a readable image") == 1
