"""Native-resolution inference: a crop model reads tiles of the image as it is and averages their logits,
the same way in the Python API, batch scoring, the server and the ONNX backend.

The fixture's tiles must really disagree: an untrained network gives every tile P(fake) ~ 0.509, and
then scoring one tile, resizing the image or averaging probabilities all pass as well. So its head
is hand-set to spread the tile logits over several units, and `test_the_fixture_can_tell_the_variants_apart`
checks that each wrong variant lands far outside the tolerances the other tests use.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from aivsreal import Detector
from aivsreal.data.crops import tiles
from aivsreal.data.images import decode_image
from aivsreal.models import build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.models.network import sigmoid
from aivsreal.predict.batch import score_paths

CROP = 32
SHAPES = [(100, 80), (32, 32), (250, 40), (70, 90)]  # (height, width): 3x3, 1, 3x2 (capped) and 3x3 tiles
FAR = 0.02  # every wrong variant moves P(fake) by more than this: far outside the 1e-6 and 1e-4 below


def structured(height: int, width: int, seed: int) -> np.ndarray:
    """Regions that differ tile to tile: a dark gradient, bright noise, stripes and a flat patch."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    img = np.zeros((height, width, 3), np.float64)
    img[..., 0] = 40 * x / max(width - 1, 1)
    img[..., 1] = 30 * y / max(height - 1, 1)
    noisy = (y < height // 2) & (x >= width // 2)
    img[noisy] = rng.integers(120, 256, (int(noisy.sum()), 3))
    stripes = (y >= height // 2) & (x < width // 2)
    img[stripes] = np.where((x[stripes] // 2 % 2)[:, None] == 1, 230.0, 20.0)
    img[(y >= height // 2) & (x >= width // 2)] = (200, 180, 60)
    return img.astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def crop_model(tmp_path_factory):
    """A `fast` 32 px crop model whose head is rescaled so that tile logits have a spread of ~5 around 0."""
    torch.manual_seed(0)
    config = default_config("fast")
    config.options["crop"] = CROP  # reads 32 px native tiles, never a resized image
    net = build_model(config).eval()
    head = net.network[-1]
    calibration = np.concatenate([tiles(structured(h, w, 100 + i), CROP) for i, (h, w) in enumerate(SHAPES)])
    with torch.no_grad():
        logits = net(torch.from_numpy(calibration).permute(0, 3, 1, 2).float()).flatten().numpy()
        scale = 5.0 / logits.std()
        head.weight.mul_(scale)
        head.bias.mul_(scale).sub_(float(logits.mean() * scale))
    path = tmp_path_factory.mktemp("native") / "model.pt"
    save_model(path, net)
    return path


@pytest.fixture(scope="module")
def det(crop_model):
    return Detector.load(crop_model, device="cpu", precision="fp32")


def tile_logits(det: Detector, image: np.ndarray) -> np.ndarray:
    p = det.predict_proba(tiles(image, CROP))
    return np.log(p) - np.log1p(-p)


def wrong_variants(det: Detector, image: np.ndarray) -> dict[str, float]:
    """What a broken pipeline would answer instead of the mean tile logit."""
    p = sigmoid(tile_logits(det, image))
    return {"mean of probabilities": float(p.mean()), "first tile only": float(p[0]),
            "resized, not tiled": float(det.predict_proba(decode_image(png(image), CROP)[None])[0])}


def test_views_are_native_tiles(det):
    image = np.random.default_rng(0).integers(0, 256, (100, 80, 3), dtype=np.uint8)
    views, size, _ = det.decode(png(image))
    assert size == (80, 100) and views.shape == (9, 32, 32, 3)
    assert np.array_equal(views, tiles(image, 32))
    small, _, _ = det.decode(png(image[:32, :32]))
    assert small.shape == (1, 32, 32, 3) and np.array_equal(small[0], image[:32, :32])


@pytest.mark.parametrize("first_seed", [0, 10, 20])  # the seeds the tests below draw their images with
def test_the_fixture_can_tell_the_variants_apart(det, first_seed):
    for i, (h, w) in enumerate(SHAPES):
        if (h, w) == (CROP, CROP):
            continue  # one tile: every variant is the same image
        image = structured(h, w, first_seed + i)
        assert tile_logits(det, image).std() > 1.0
        right = det.predict([png(image)])[0].p_fake
        for name, p in wrong_variants(det, image).items():
            assert abs(p - right) > FAR, f"{name} gives {p:.4f}, the mean logit {right:.4f}: too close to tell"


def test_the_verdict_is_the_mean_logit_of_the_tiles(det):
    for i, (h, w) in enumerate(SHAPES):
        image = structured(h, w, i)
        p = det.predict([png(image)])[0].p_fake
        assert p == pytest.approx(float(sigmoid(tile_logits(det, image).mean())), abs=1e-6)


def test_batch_scoring_and_the_server_agree_with_the_python_api(crop_model, det, tmp_path):
    from aivsreal.serve.app import create_app

    paths = []
    for i, (h, w) in enumerate(SHAPES):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png(structured(h, w, 10 + i)))
    expected = [p.p_fake for p in det.predict(paths)]
    by_mean_logit = [float(sigmoid(tile_logits(det, structured(h, w, 10 + i)).mean())) for i, (h, w) in
                     enumerate(SHAPES)]
    assert expected == pytest.approx(by_mean_logit, abs=1e-6)
    for workers in (1, 2):
        got = [p.p_fake for p in score_paths(det, [str(p) for p in paths], workers=workers)]
        assert got == pytest.approx(expected, abs=1e-6)
    with TestClient(create_app(crop_model, device="cpu", precision="fp32")) as c:
        r = c.post("/api/predict", files=[("files", (p.name, p.read_bytes())) for p in paths]).json()
    assert [e["p_fake"] for e in r["results"]] == pytest.approx(expected, abs=1e-6)


def test_onnx_scores_the_same_tiles(crop_model, det, tmp_path):
    from aivsreal.predict.onnx import export_onnx

    onnx_path = export_onnx(crop_model, tmp_path / "m.onnx")
    paths = []
    for i, (h, w) in enumerate(SHAPES):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png(structured(h, w, 20 + i)))
    torch_p = [p.p_fake for p in det.predict(paths)]
    onnx_p = [p.p_fake for p in Detector.load(onnx_path, backend="onnx").predict(paths)]
    assert onnx_p == pytest.approx(torch_p, abs=1e-4)
