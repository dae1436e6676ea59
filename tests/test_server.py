"""The REST API with FastAPI's TestClient: good and bad inputs, limits, concurrency."""

import base64
import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from aivsreal.explain.gradcam import Explainer
from aivsreal.explain.overlays import blend, picture
from aivsreal.models import build_model, default_config
from aivsreal.models.file import ModelMeta, save_model
from aivsreal.predict.detector import Detector
from aivsreal.serve.app import create_app


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = build_model(default_config("fast"))
    with torch.no_grad():  # untrained logits vary less than bf16 resolves: spread them out
        model.network[-1].weight.mul_(200)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, model, ModelMeta(summary={"metrics": {"test": {
        "n": 10, "accuracy": 0.9, "precision": 0.8, "recall": 0.7, "f1": 0.75, "roc_auc": 0.95,
        "confusion_matrix": [[4, 1], [0, 5]]}}}))
    return path


@pytest.fixture(scope="module")
def client(model_path):
    with TestClient(create_app(model_path, max_upload_mb=0.5, device="cpu")) as c:
        yield c


def png(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(size=(48, 40), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8))


def test_health_model_docs_and_page(client):
    assert client.get("/api/health").json()["status"] == "ok"
    info = client.get("/api/model").json()
    assert info["name"] == "fast" and info["image_size"] == 32 and info["metrics"]["test"]["accuracy"] == 0.9
    assert client.get("/docs").status_code == 200
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text


def test_one_image_matches_the_python_api(client, model_path):
    data = png(noise())
    r = client.post("/api/predict", files={"files": ("a.png", data, "image/png")})
    assert r.status_code == 200
    body = r.json()
    (result,) = body["results"]
    expected = Detector.load(model_path, device="cpu").predict([data])[0]
    assert result["p_fake"] == pytest.approx(expected.p_fake, abs=1e-6) and result["label"] == expected.label
    assert body["model"] == "fast" and body["version"] and body["time_ms"] > 0


def test_every_mode_and_size_is_accepted(client):
    exif = Image.Exif()
    exif[0x0112] = 6
    files = [
        ("rgba.png", png(Image.new("RGBA", (31, 17), (1, 2, 3, 100)))),
        ("gray.png", png(Image.new("L", (300, 200), 128))),
        ("sixteen.png", png(Image.fromarray(np.full((20, 20), 40000, np.uint16)))),
        ("cmyk.jpg", png(Image.new("CMYK", (64, 64), (10, 200, 30, 0)), "JPEG")),
        ("rotated.jpg", png(noise((60, 30)), "JPEG", exif=exif.tobytes())),
        ("palette.gif", png(noise().convert("P"), "GIF")),
        ("big.jpg", png(noise((40, 30)).resize((2000, 1500)), "JPEG", quality=70)),  # smooth: ~100 kB
    ]
    r = client.post("/api/predict", files=[("files", (n, d, "application/octet-stream")) for n, d in files])
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == [200] * len(files)
    assert all(0.0 <= x["p_fake"] <= 1.0 for x in r.json()["results"])


def test_bad_file_gets_an_error_and_the_others_an_answer(client):
    files = [("files", ("good.png", png(noise()), "image/png")),
             ("files", ("bad.jpg", b"this is text", "image/jpeg")),
             ("files", ("good2.png", png(noise(seed=2)), "image/png"))]
    r = client.post("/api/predict", files=files)
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["status"] for x in res] == [200, 400, 200]
    assert "not a readable image" in res[1]["error"] and "label" not in res[1]
    assert res[0]["label"] in ("REAL", "FAKE") and res[2]["label"] in ("REAL", "FAKE")


def test_only_bad_files_is_a_400(client):
    r = client.post("/api/predict", files={"files": ("x.png", b"\x89PNG\r\n\x1a\n broken", "image/png")})
    assert r.status_code == 400 and r.json()["results"][0]["error"]


def test_oversized_upload_is_a_413(client):
    big = np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8).tobytes()
    r = client.post("/api/predict", files={"files": ("big.bmp", big, "image/bmp")})
    assert r.status_code == 413 and "0.5 MB" in r.json()["results"][0]["error"]


def test_huge_request_is_refused_before_parsing(client):
    r = client.post("/api/predict", content=b"x" * 100, headers={
        "content-type": "multipart/form-data; boundary=b", "content-length": str(10**10)})
    assert r.status_code == 413


def test_decompression_bomb_is_refused(client):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10000)) + chunk(b"IEND", b""))
    r = client.post("/api/predict", files={"files": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 400 and "pixel" in r.json()["results"][0]["error"]


def test_no_files_is_a_validation_error(client):
    assert client.post("/api/predict").status_code == 422


def test_concurrent_requests_get_their_own_answers(client):
    images = [png(Image.new("RGB", (40, 40), (20 * s, 255 - 20 * s, 10 * s))) for s in range(12)]
    sequential = [client.post("/api/predict", files={"files": ("i.png", d, "image/png")}).json()
                  ["results"][0]["p_fake"] for d in images]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(lambda d: client.post("/api/predict", files={"files": ("i.png", d, "image/png")})
                                 .json()["results"][0]["p_fake"], images))
    assert parallel == pytest.approx(sequential, abs=1e-6)
    assert len(set(np.round(sequential, 6))) > 1  # the images really got different scores


def test_confusion_png_missing_is_404(client):
    assert client.get("/api/model/confusion.png").status_code == 404


def test_explain_returns_the_grad_cam_overlay(client, model_path):
    files = [("files", ("a.png", png(noise(seed=1)), "image/png")), ("files", ("bad.jpg", b"nope", "image/jpeg"))]
    r = client.post("/api/predict?explain=1", files=files)
    assert r.status_code == 200
    good, bad = r.json()["results"]
    overlay = Image.open(io.BytesIO(base64.b64decode(good["gradcam_png"])))
    assert overlay.format == "PNG" and overlay.size == (224, 224) and overlay.mode == "RGB"
    assert "gradcam_png" not in bad and r.json()["gradcam"]["layer"]
    # The overlay is the Python API's map for the same verdict.
    det = Detector.load(model_path, device="cpu")
    px = det.to_pixels(png(noise(seed=1)))[None]
    expected = blend(picture(px[:1], Explainer(det).explain(px, p_fake=np.array([good["p_fake"]])), None))
    assert np.abs(np.asarray(overlay).astype(int) - expected.astype(int)).max() <= 1
    assert "gradcam_png" not in client.post("/api/predict", files=files[:1]).json()["results"][0]
