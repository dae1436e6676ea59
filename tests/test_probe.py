"""The probe families (frozen backbone, linear head), the domain check's projection for wide
features, and the bundled `wild` detector built from them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from aivsreal.cli import main
from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config
from aivsreal.models.domain import MAX_DIM, DomainCheck
from aivsreal.models.lite_probe import StageProbe
from aivsreal.models.spectrum_probe import FEATURES as SPECTRUM
from aivsreal.models.spectrum_probe import GRID, RINGS
from aivsreal.predict.detector import Detector
from aivsreal.train.loop import TrainConfig, train

FEATURES = 16 + 24 + 40 + 80 + 112 + 192 + 320 + 1280  # Lite0's stage widths and head: 2,064
LITE2_FEATURES = 16 + 24 + 48 + 88 + 120 + 208 + 352 + 1280  # 2,136


@pytest.fixture(scope="module")
def probe():
    torch.manual_seed(0)
    return build_model(default_config("lite0_probe"), pretrained=True)


def test_only_the_head_learns_and_the_backbone_keeps_its_statistics(probe, tmp_path):
    from aivsreal.data.cache import DecodedSplit

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 8)
    split = DecodedSplit(images, labels, [str(i) for i in range(16)], [])
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    train(probe, split, split, TrainConfig(epochs=1, batch_size=8, optimizer="adam", lr=1e-2), tmp_path,
          torch.device("cpu"), progress=False)
    changed = {k for k, v in probe.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"network.head.weight", "network.head.bias"}  # BN running stats included: unchanged
    probe.train()
    assert not probe.network.backbone.training and probe.network.head.training
    probe.load_state_dict(before)


def test_a_fitted_linear_classifier_folds_into_the_head(probe):
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=FEATURES), 0.3
    mean, scale = rng.normal(size=FEATURES), rng.uniform(0.5, 2, FEATURES)
    probe.network.set_head(w, b, mean, scale)
    x = torch.from_numpy(rng.integers(0, 256, (3, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        features = probe.network.features(probe.normalize(x)).numpy().astype(np.float64)
        logits = probe(x).numpy()
    assert features.shape == (3, FEATURES)
    np.testing.assert_allclose(logits, ((features - mean) / scale) @ w + b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("family", "expected"), [("lite0_probe", FEATURES), ("lite1_probe", FEATURES),
                                                  ("lite2_probe", LITE2_FEATURES)])
def test_each_probe_reads_every_stage_of_a_frozen_backbone(family, expected):
    net = build_model(default_config(family))
    with torch.no_grad():
        features = net.network.features(net.normalize(torch.rand(1, 3, 64, 64) * 255))
    assert features.shape == (1, expected) and net.network.head.in_features == expected
    assert not any(p.requires_grad for p in net.network.backbone.parameters())


def test_stats_probe_pools_each_stage_by_its_mean_and_its_spread():
    net = build_model(default_config("lite2_probe_stats")).eval()
    x = net.normalize(torch.rand(2, 3, 64, 64) * 255)
    with torch.no_grad():
        features = net.network.features(x)
        b = net.network.backbone
        stage0 = b.blocks[0](b.bn1(b.conv_stem(x)))  # 16 channels
    assert features.shape == (2, 2 * LITE2_FEATURES) and net.network.head.in_features == 2 * LITE2_FEATURES
    torch.testing.assert_close(features[:, :16], stage0.mean((2, 3)))
    torch.testing.assert_close(features[:, 16:32], stage0.std((2, 3), correction=0))
    with pytest.raises(AivsrealError, match="mean_std"):
        StageProbe(b, pool="max")


def smooth_photo(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """Stand-ins for photographs: blurred random fields plus a little sensor noise, (n, 3, 224, 224)."""
    field = torch.from_numpy(rng.normal(128, 20, (n, 3, 224, 224)).astype(np.float32))
    smooth = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(field, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    return (smooth + torch.from_numpy(rng.normal(0, 3, smooth.shape).astype(np.float32))).numpy()


def test_spectrum_probe_sees_an_upsampler_s_periodic_trace_and_nothing_where_there_is_none():
    """An 8 px periodic pattern (a decoder upsampling 8x prints one) raises the peak features at the
    multiples of 1/8 cycle per pixel, and only there; a brightness offset changes no feature."""
    net = build_model(default_config("spectrum_probe")).eval()
    photo = smooth_photo(np.random.default_rng(0))
    columns = (np.arange(224) % 8 == 0) * 4.0  # a faint stripe every 8 px
    x = torch.from_numpy(np.concatenate([photo, photo + columns, photo + 30]).astype(np.float32))
    with torch.no_grad():
        f = net.network.features(net.normalize(x)).numpy()
    assert f.shape == (3, SPECTRUM) and net.network.head.in_features == SPECTRUM
    peaks = f[:, -GRID * GRID:].reshape(3, GRID, GRID)
    gain = peaks[1] - peaks[0]
    on = gain[0, 2::2]  # vertical frequency 0, horizontal k/8 for k = 1..7
    off = np.concatenate([gain[0, 1::2], gain[1:].ravel()])
    assert on.min() > 3 and np.abs(off).max() < 1.5
    np.testing.assert_allclose(f[2], f[0], atol=1e-3)  # the high-pass residual ignores the level
    assert f[:, 7 : 7 + RINGS].mean(1) == pytest.approx(0, abs=1e-4)  # the profile is its shape only


def test_spectrum_probe_folds_a_fitted_classifier_and_refuses_a_size_it_cannot_grid():
    net = build_model(default_config("spectrum_probe")).eval()
    rng = np.random.default_rng(2)
    w, mean, scale = rng.normal(size=SPECTRUM), rng.normal(size=SPECTRUM), rng.uniform(0.5, 2, SPECTRUM)
    net.network.set_head(w, -0.2, mean, scale)
    x = torch.from_numpy(smooth_photo(rng, 2))
    with torch.no_grad():
        features = net.network.features(net.normalize(x)).numpy().astype(np.float64)
        logits = net(x).numpy()
    np.testing.assert_allclose(logits, ((features - mean) / scale) @ w - 0.2, rtol=1e-4, atol=1e-3)
    with pytest.raises(AivsrealError, match="multiple of 16"):
        net.network.features(torch.zeros(1, 3, 100, 100))


def test_spectrum_probe_trains_from_the_command_line_on_native_crops_and_refuses_an_off_grid_crop(tmp_path, capsys):
    rng = np.random.default_rng(3)
    for cls in ("REAL", "FAKE"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(12):  # 12 per class: 1 test, 1 validation and 10 training images each
            image = Image.fromarray(rng.integers(0, 256, (150, 170, 3), dtype=np.uint8))
            image.save(tmp_path / "data" / cls / f"{i}.png")
    args = ["train", "--model", "spectrum_probe", "--data", str(tmp_path / "data"), "--epochs", "1",
            "--batch-size", "4", "--no-cache", "--out"]
    assert main([*args, str(tmp_path / "run"), "--crop", "64"]) == 0
    det = Detector.load(tmp_path / "run" / "model.pt", device="cpu", precision="fp32")
    data = jpeg(structured_photo(150, 170, rng))
    [pred] = det.predict([data])
    # 64 px tiles at native resolution: 3 per axis, the first at one edge, the last at the other
    expected = p_fake_by_hand(det, tiles_by_hand(data, 64, ys=(0, 43, 86), xs=(0, 53, 106)))
    assert pred.p_fake == pytest.approx(expected, abs=1e-5)
    capsys.readouterr()
    assert main([*args, str(tmp_path / "bad"), "--crop", "100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "multiple of 16" in err[0] and "--crop 224" in err[0]


def wide_features(rng: np.random.Generator, n: int, d: int = 600, rank: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Two classes living in a rank-40 subspace of 600 dimensions, plus a little isotropic noise."""
    mix = np.random.default_rng(99).normal(size=(rank, d))
    labels = rng.integers(0, 2, n)
    latent = rng.normal(size=(n, rank)) + labels[:, None] * 1.5
    return latent @ mix + 5.0 + rng.normal(0, 0.05, (n, d)), labels


def test_wide_features_are_projected_and_an_image_off_the_subspace_is_caught():
    rng = np.random.default_rng(0)
    train_f, train_y = wide_features(rng, 2000)
    val_f, _ = wide_features(rng, 400)
    check = DomainCheck.fit(train_f, train_y, val_f, np.array([[512, 512]] * 10))
    assert check.basis.shape == (MAX_DIM - 1, 600) and check.precision.shape == (MAX_DIM, MAX_DIM)
    again = DomainCheck.from_dict(check.to_dict())  # what a model file or ONNX metadata gives back
    test_f, _ = wide_features(rng, 300)
    np.testing.assert_allclose(again.feature_score(test_f), check.feature_score(test_f), rtol=1e-4)
    assert np.mean(check.feature_score(test_f) > 1) < 0.05
    # the same images pushed along a direction the projection discards: only the residual sees it
    off = np.linalg.svd(np.random.default_rng(5).normal(size=(600, 600)))[0][:, 0]
    off -= check.basis.T.astype(np.float64) @ (check.basis.astype(np.float64) @ off)
    shifted = test_f + 3.0 * off / np.linalg.norm(off) * np.linalg.norm(test_f, axis=1, keepdims=True) * 0.05
    assert np.mean(check.feature_score(shifted) > 1) > 0.9


def structured_photo(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Coloured waves, a noisy right half and an 8 px stripe in the top half: each native tile of it
    scores differently, so a wrong tile grid, resampling or way of averaging changes P(fake)."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = 120 + 60 * np.sin(xx / (width / 20))[..., None] * np.array([1, 0.5, -0.5])
    img = img + 40 * np.cos(yy / (height / 12))[..., None]
    img = img + rng.normal(0, 1, (height, width, 3)) * np.where(xx > width // 2, 30, 3)[..., None]
    img[: height // 2, ::8] += 16
    return np.clip(img, 0, 255).astype(np.uint8)


def tiles_by_hand(data: bytes, size: int, ys: tuple[int, ...], xs: tuple[int, ...]) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.stack([rgb[y : y + size, x : x + size] for y in ys for x in xs])


def p_fake_by_hand(det: Detector, tiles: np.ndarray) -> float:
    """P(FAKE) from the network itself in fp32: each tile's logit (flip-averaged when the model uses
    TTA), over the temperature, averaged over tiles, then the sigmoid. The tiles must disagree, or
    averaging probabilities instead of logits would pass too."""
    x = torch.from_numpy(tiles.astype(np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = det.network.float().eval()(x).reshape(-1).double()
        if det.tta:
            logits = (logits + det.network(torch.flip(x, dims=[3])).reshape(-1).double()) / 2
    logits = logits.numpy() / det.meta.temperature
    p = 1 / (1 + np.exp(-logits.mean()))
    assert np.ptp(logits) > 0.5 and abs(p - np.mean(1 / (1 + np.exp(-logits)))) > 1e-3
    return float(p)


def jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_the_bundled_wild_detector_reads_its_512_px_view_and_checks_its_domain(capsys):
    """The photoreal `wild` reads what it was fitted on: the image's shorter side resized to 512 px,
    saved as JPEG q90, then 2x2 native 224 px tiles, logits averaged; and it says it is experimental."""
    det = Detector.load("wild", device="cpu")
    assert det.config.name == "lite2_probe" and det.crop == 224 and det.meta.domain.basis is not None
    assert (det.config.rescale, det.config.reencode, det.max_views) == (512, 90, 4) and det.experimental
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(120, 40, (700, 900, 3)), 0, 255).astype(np.uint8)
    views, size, _ = det.decode(jpeg(photo))
    assert views.shape == (4, 224, 224, 3) and size == (900, 700)
    [pred] = det.predict([jpeg(photo)])
    assert pred.label in ("REAL", "FAKE") and pred.in_domain is not None and pred.experimental is True
    data = jpeg(structured_photo(700, 900, rng))
    [exact] = Detector.from_network(det.network, det.meta, "cpu", precision="fp32").predict([data])
    resized = Image.open(io.BytesIO(data)).convert("RGB").resize((658, 512), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    resized.save(buf, format="JPEG", quality=90)
    expected = p_fake_by_hand(det, tiles_by_hand(buf.getvalue(), 224, ys=(0, 288), xs=(0, 434)))
    assert exact.p_fake == pytest.approx(expected, abs=1e-5)
    assert det.predict([data])[0].p_fake == pytest.approx(expected, abs=3e-2)  # the default precision
    [tiny] = det.predict([jpeg(photo[:32, :32])])  # far below the training sizes: flagged, with the reason
    assert tiny.in_domain is False and "32x32" in tiny.domain_reason
    assert main(["models", "wild"]) == 0
    card = capsys.readouterr().out
    assert "non-commercial" in card and "stargan_v2_assets" in card and "Locked external set" in card
