"""Grad-CAM: checked against its definition on a model where it can be worked out by hand."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from aivsreal.cli import main
from aivsreal.errors import AivsrealError
from aivsreal.explain.gradcam import default_layer, grad_cam
from aivsreal.explain.overlays import blend, panels, picture
from aivsreal.models import DetectorNet, ModelConfig, build_model, default_config


def linear_cam_model() -> DetectorNet:
    """pixels -> 1x1 conv (2 maps) -> global average -> linear: logit = mean over cells of sum_k w_k A_k.

    So d logit / d A_k = w_k / cells at every cell, and Grad-CAM for FAKE is relu(sum_k w_k A_k) / cells,
    the model's own evidence map, min-max scaled.
    """
    torch.manual_seed(0)
    config = ModelConfig(name="fast", image_size=8, input_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
    return DetectorNet(config, net).eval()


def by_hand(model: DetectorNet, pixels: np.ndarray, sign: float) -> np.ndarray:
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        acts = model.network[0](model.normalize(x))
        evidence = sign * (model.network[3].weight[0].view(1, 2, 1, 1) * acts).sum(1)
    cam = torch.relu(evidence).numpy()
    low, high = cam.min(axis=(1, 2), keepdims=True), cam.max(axis=(1, 2), keepdims=True)
    return (cam - low) / (high - low + 1e-7)


def test_grad_cam_equals_its_definition_on_a_linear_model():
    model = linear_cam_model()
    pixels = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    assert default_layer(model) == "network.0"
    for fake, sign in ((True, 1.0), (False, -1.0)):
        cams = grad_cam(model, pixels, [fake] * 3)
        np.testing.assert_allclose(cams, by_hand(model, pixels, sign), atol=1e-5)
        # A 1x1 conv commutes with mirroring: the mirrored view's map, mirrored back, is the same map.
        np.testing.assert_allclose(grad_cam(model, pixels, [fake] * 3, tta=True), cams, atol=1e-5)


def test_the_map_follows_the_evidence_when_the_input_moves():
    model = linear_cam_model()
    model.network[0].bias.data.zero_()  # an empty cell carries no evidence either way
    w = model.network[3].weight[0] @ model.network[0].weight[:, :, 0, 0]  # per-channel evidence for FAKE
    channel = int(torch.argmax(w.abs()))
    left = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    left[0, 2:4, 0:2, channel] = 255
    right = left[:, :, ::-1].copy()
    target = [bool(w[channel] > 0)]  # explain the class the bright patch argues for
    cam_left, cam_right = grad_cam(model, left, target)[0], grad_cam(model, right, target)[0]
    assert cam_left[2:4, 0:2].min() == pytest.approx(1.0, abs=1e-5)
    assert cam_right[2:4, 6:8].min() == pytest.approx(1.0, abs=1e-5)
    assert cam_left[:, 4:].max() < 1e-5 and cam_right[:, :4].max() < 1e-5


@pytest.mark.parametrize("name", ["fast", "resnet50v2", "efficientnet_lite0", "efficientnet_lite2"])
def test_every_shipped_model_gives_maps_in_range_that_depend_on_the_image(name):
    torch.manual_seed(0)
    model = build_model(default_config(name)).eval()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    cams = grad_cam(model, pixels, [True, False], tta=True)
    assert cams.shape == (2, 32, 32) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    for cam in cams:  # an all-zero map would mean no evidence at all; a flat one, no localisation
        assert cam.max() == pytest.approx(1.0, abs=1e-4) and cam.std() > 0.01
    other = grad_cam(model, rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), [True, False], tta=True)
    assert np.abs(cams - other).max() > 0.1
    layer = dict(model.named_modules())[default_layer(model)]
    seen = []
    hook = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    hook.remove()
    assert min(seen[0][2:]) >= 4


def test_unknown_layer_is_one_clear_error():
    with pytest.raises(AivsrealError, match="no layer 'nope'"):
        grad_cam(linear_cam_model(), np.zeros((1, 8, 8, 3), np.uint8), [True], layer="nope")


def test_overlay_is_the_image_under_the_heat_map():
    pixels = np.full((8, 8, 3), 200, dtype=np.uint8)
    cam = np.zeros((8, 8), dtype=np.float32)
    out = blend(picture(pixels[None], cam[None], None, size=64), alpha=0.5)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # jet(0) is dark blue (0, 0, 127.5): half of it over grey 200.
    np.testing.assert_allclose(out[0, 0], [100, 100, 164], atol=1)
    assert panels(picture(pixels[None], cam[None], None, size=64)).shape == (64, 136, 3)


def test_explain_cli_writes_one_png_per_readable_image(trained_run, tmp_path, capsys):
    data, run = trained_run
    images = sorted((data / "test" / "FAKE").glob("*.jpg"))[:2] + sorted((data / "test" / "REAL").glob("*.jpg"))[:1]
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    out = tmp_path / "cams"
    assert main(["explain", *map(str, images), str(tmp_path / "junk.jpg"), "--model", str(run / "model.pt"),
                 "--out", str(out), "--size", "96"]) == 0
    rows = list(csv.DictReader(open(out / "explanations.csv")))
    assert [r["source"] for r in rows] == [*map(str, images), str(tmp_path / "junk.jpg")]
    assert rows[-1]["label"] == "ERROR" and rows[-1]["error"] and not rows[-1]["file"]
    for r in rows[:-1]:
        assert r["explained"] == r["label"] and Image.open(out / r["file"]).size == (96 * 2 + 8, 96)
    assert len({r["file"] for r in rows[:-1]}) == 3  # 0.jpg from FAKE and from REAL do not collide
    assert "3 Grad-CAM image(s)" in capsys.readouterr().out
