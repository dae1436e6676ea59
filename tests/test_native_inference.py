"""Native-resolution inference: a crop model reads tiles of the image as it is and averages their logits,
the same way in the Python API, batch scoring, the server and the ONNX backend."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from aivsreal import Detector
from aivsreal.data.crops import tiles
from aivsreal.models import build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.predict.batch import score_paths
from aivsreal.predict.detector import sigmoid


@pytest.fixture(scope="module")
def crop_model(tmp_path_factory):
    torch.manual_seed(0)
    config = default_config("fast")
    config.options["crop"] = 32  # reads 32 px native tiles, never a resized image
    path = tmp_path_factory.mktemp("native") / "model.pt"
    save_model(path, build_model(config))
    return path


def png(pixels):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_views_are_native_tiles(crop_model):
    det = Detector.load(crop_model, device="cpu", precision="fp32")
    image = np.random.default_rng(0).integers(0, 256, (100, 80, 3), dtype=np.uint8)
    views, size = det.decode(png(image))
    assert size == (80, 100) and views.shape == (9, 32, 32, 3)
    assert np.array_equal(views, tiles(image, 32))
    small, _ = det.decode(png(image[:32, :32]))
    assert small.shape == (1, 32, 32, 3) and np.array_equal(small[0], image[:32, :32])


def test_the_verdict_is_the_mean_logit_of_the_tiles(crop_model):
    det = Detector.load(crop_model, device="cpu", precision="fp32")
    image = np.random.default_rng(1).integers(0, 256, (100, 80, 3), dtype=np.uint8)
    per_tile = det.predict_proba(tiles(image, 32))
    logits = np.log(per_tile) - np.log1p(-per_tile)
    p = det.predict([png(image)])[0].p_fake
    assert p == pytest.approx(float(sigmoid(logits.mean())), abs=1e-6)


def test_batch_scoring_and_the_server_agree_with_the_python_api(crop_model, tmp_path):
    from aivsreal.serve.app import create_app

    det = Detector.load(crop_model, device="cpu", precision="fp32")
    rng = np.random.default_rng(2)
    paths = []
    for i, shape in enumerate([(100, 80, 3), (32, 32, 3), (250, 40, 3)]):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png(rng.integers(0, 256, shape, dtype=np.uint8)))
    expected = [p.p_fake for p in det.predict(paths)]
    for workers in (1, 2):
        got = [p.p_fake for p in score_paths(det, [str(p) for p in paths], workers=workers)]
        assert got == pytest.approx(expected, abs=1e-6)
    with TestClient(create_app(crop_model, device="cpu")) as c:
        r = c.post("/api/predict", files=[("files", (p.name, p.read_bytes())) for p in paths]).json()
    assert [e["p_fake"] for e in r["results"]] == pytest.approx(expected, abs=2e-2)  # the server runs bf16


def test_onnx_scores_the_same_tiles(crop_model, tmp_path):
    from aivsreal.predict.onnx import export_onnx

    onnx_path = export_onnx(crop_model, tmp_path / "m.onnx")
    image = tmp_path / "x.png"
    image.write_bytes(png(np.random.default_rng(3).integers(0, 256, (90, 70, 3), dtype=np.uint8)))
    torch_p = Detector.load(crop_model, device="cpu", precision="fp32").predict([image])[0].p_fake
    onnx_p = Detector.load(onnx_path, backend="onnx").predict([image])[0].p_fake
    assert onnx_p == pytest.approx(torch_p, abs=1e-4)
