"""Each perturbation (aivsreal.data.perturb) does what its name says; `robustness` writes its table and plot."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from aivsreal.cli import main
from aivsreal.data import perturb
from aivsreal.evaluate import robustness as rb
from aivsreal.report.provenance import KEYS

# libjpeg's (IJG) standard luminance quantisation table (JPEG spec, Annex K), in natural order.
IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def ijg_table(quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((IJG_LUMA * scale + 50) // 100, 1, 255)


def photo(seed=0, n=4, size=32):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    smooth = (np.sin(xx / 3.0 + seed) * 60 + np.cos(yy / 4.0) * 50 + 128)[None, ..., None]
    return np.clip(smooth + rng.normal(0, 12, (n, size, size, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("quality", [95, 75, 50])
def test_jpeg_is_encoded_at_the_requested_quality(quality):
    images = photo()
    encoded = Image.open(io.BytesIO(perturb.jpeg_bytes(images[0], quality)))
    luma = np.array(encoded.quantization[0])
    # Pillow returns the table in zigzag order in some versions, natural in others: compare as sets of
    # (value, count) and check the DC term, which is first in both.
    assert luma[0] == ijg_table(quality)[0]
    assert sorted(luma.tolist()) == sorted(ijg_table(quality).tolist())
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(perturb.jpeg_bytes(im, quality))).convert("RGB"))
                        for im in images])
    assert np.array_equal(perturb.jpeg(images, quality), decoded)


def test_lower_jpeg_quality_loses_more():
    images = photo()
    errors = [np.abs(perturb.jpeg(images, q).astype(int) - images).mean() for q in (95, 75, 50)]
    assert errors[0] < errors[1] < errors[2]


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_blur_turns_a_point_into_the_gaussian_of_that_sigma(sigma):
    img = np.zeros((1, 33, 33, 3), dtype=np.uint8)
    img[0, 16, 16] = 255
    out = perturb.gaussian_blur(img, sigma)
    radius = int(4 * sigma + 0.5)  # the kernel reaches 4 sigma
    x = np.arange(-radius, radius + 1)
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    expected = np.zeros((33, 33))
    expected[16 - radius : 17 + radius, 16 - radius : 17 + radius] = 255 * np.outer(g, g)
    for c in range(3):
        assert np.array_equal(out[0, :, :, c], np.rint(expected).astype(np.uint8))
    flat = np.full((2, 8, 8, 3), 77, dtype=np.uint8)
    assert np.array_equal(perturb.gaussian_blur(flat, sigma), flat)


def test_downscale_upscale_removes_detail_finer_than_the_small_size():
    checker = (np.indices((32, 32)).sum(0) % 2 * 200 + 20).astype(np.uint8)
    checker = np.repeat(checker[None, ..., None], 3, axis=3)
    out = perturb.rescale(checker, 0.5)
    assert out.shape == checker.shape and checker.std() > 90 and out.std() < 5
    flat = np.full((1, 32, 32, 3), 140, dtype=np.uint8)
    assert np.array_equal(perturb.rescale(flat, 0.5), flat)


@pytest.mark.parametrize("sigma", [2, 5])
def test_noise_has_the_requested_sigma_in_pixel_units(sigma):
    grey = np.full((8, 32, 32, 3), 128, dtype=np.uint8)
    diff = perturb.gaussian_noise(grey, sigma).astype(float) - 128
    assert diff.std() == pytest.approx(sigma, rel=0.03) and abs(diff.mean()) < 0.1
    assert np.array_equal(perturb.gaussian_noise(grey, sigma), perturb.gaussian_noise(grey, sigma))  # seeded


def test_flip_mirrors_left_and_right():
    images = photo()
    assert np.array_equal(perturb.hflip(images), images[:, :, ::-1])
    assert np.array_equal(perturb.hflip(perturb.hflip(images)), images)


def test_measure_scores_every_perturbation_with_the_threshold():
    dark, bright = np.full((10, 32, 32, 3), 60, np.uint8), np.full((10, 32, 32, 3), 200, np.uint8)
    images, labels = np.concatenate([dark, bright]), np.array([0] * 10 + [1] * 10)

    def brightness(x):  # P(FAKE) = brightness: perfect on these images, whatever the perturbation
        return x.mean(axis=(1, 2, 3)) / 255

    rows = rb.measure(brightness, images, labels, threshold=0.5)
    assert [r.label for r in rows] == ["clean", *(p.label for p in rb.PERTURBATIONS)]
    assert all(r.accuracy == 1.0 and r.roc_auc == 1.0 and r.n == 20 for r in rows)
    rows = rb.measure(brightness, images, labels, threshold=0.9)  # now every image is called REAL
    assert rows[0].accuracy == 0.5 and rows[0].fake_recall == 0.0 and rows[0].real_flagged == 0.0


def borderline_test_set(root, train_from):
    """A test split the model is unsure about: blends of its REAL and FAKE training looks, the FAKE ones
    a little further along, so its scores sit around the threshold and perturbations move verdicts."""
    import shutil

    from conftest import jpeg_bytes, synthetic_image

    rng = np.random.default_rng(7)
    for cls, low, high in (("REAL", 0.45, 0.7), ("FAKE", 0.6, 0.85)):
        (root / "test" / cls).mkdir(parents=True)
        for i in range(16):
            a = rng.uniform(low, high)
            img = a * synthetic_image(1, rng) + (1 - a) * synthetic_image(0, rng)
            (root / "test" / cls / f"{i}.jpg").write_bytes(jpeg_bytes(np.clip(img, 0, 255).astype(np.uint8)))
    shutil.copytree(train_from / "train", root / "train")
    return root


def test_robustness_cli_writes_table_json_and_plot(trained_run, tmp_path, capsys):
    """Every number in robustness.json and robustness.md is what scoring the perturbed images directly gives."""
    from aivsreal.predict.detector import Detector

    data, run = trained_run
    data = borderline_test_set(tmp_path / "data", data)
    out = tmp_path / "rob"
    assert main(["robustness", "--model", str(run / "model.pt"), "--data", str(data), "--out", str(out),
                 "--no-cache"]) == 0
    written = json.loads((out / "robustness.json").read_text())
    rows = written["rows"]
    header = written["provenance"]
    assert tuple(header) == KEYS and header["versions"]["torch"] == torch.__version__.split("+")[0]
    det = Detector.load(run / "model.pt", device="cpu")
    # in the loader's order, REAL then FAKE, each by name: the noise is seeded per array, not per image
    paths = [*sorted((data / "test" / "REAL").glob("*.jpg")), *sorted((data / "test" / "FAKE").glob("*.jpg"))]
    images = np.stack([det.to_pixels(p) for p in paths])
    fake = np.array([p.parent.name == "FAKE" for p in paths])
    clean = rb.Perturbation("clean", 0, "clean", lambda x: x)
    table = (out / "robustness.md").read_text()
    expected_accuracy = []
    for row, pert in zip(rows, (clean, *rb.PERTURBATIONS), strict=True):
        p_fake = det.predict_proba(pert.apply(images))
        flagged = p_fake >= det.threshold
        auc = np.mean([(f > r) + 0.5 * (f == r) for f in p_fake[fake] for r in p_fake[~fake]])  # Mann-Whitney
        expected = {"family": pert.family, "strength": pert.strength, "label": pert.label, "n": 32,
                    "accuracy": np.mean(flagged == fake), "roc_auc": auc, "fake_recall": flagged[fake].mean(),
                    "real_flagged": flagged[~fake].mean()}
        assert row == pytest.approx(expected, abs=1e-9), pert.label
        change = "" if pert is clean else f"{(expected['accuracy'] - rows[0]['accuracy']) * 100:+.2f} pt"
        assert (f"| {pert.label} | {expected['accuracy']:.4f} | {change} | {auc:.4f} | "
                f"{expected['fake_recall']:.4f} | {expected['real_flagged']:.4f} |") in table.splitlines()
        expected_accuracy.append(expected["accuracy"])
    assert len(set(expected_accuracy)) >= 2 and 0.3 < min(expected_accuracy) < max(expected_accuracy) < 1  # not trivial
    assert any(r["fake_recall"] != r["real_flagged"] for r in rows)
    assert "| JPEG q50 |" in capsys.readouterr().out
    assert Image.open(out / "plots" / "robustness.png").size[0] > 500
