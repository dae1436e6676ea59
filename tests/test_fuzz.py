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
