"""The domain check: fitted at training time, stored in the model, applied to every verdict everywhere."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import jpeg_bytes
from fastapi.testclient import TestClient
from PIL import Image
from test_cli import run_cli

from aivsreal import Detector
from aivsreal.models.domain import DomainCheck
from aivsreal.models.file import update_model_meta
from aivsreal.models.hub import load_model


def gaussian_features(n, d=16, away=False, seed=0):
    """Features in two cones (REAL along the first half of the axes, FAKE the second), or, `away`,
    along a direction neither class points in (what an unseen kind of image does to the features)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    half = np.arange(d) < d // 2
    means = np.stack([half, ~half]).astype(float) * 4.0
    centre = np.where(np.arange(d) % 2 == 0, 4.0, -4.0)[None] if away else means[labels]
    return rng.normal(size=(n, d)) + centre, labels


def fitted(sizes=((32, 32),) * 50):
    train, labels = gaussian_features(4000)
    val, _ = gaussian_features(2000, seed=1)
    return DomainCheck.fit(train, labels, val, np.array(sizes))


def test_threshold_flags_about_one_percent_of_in_domain_data_and_far_data_all():
    check = fitted()
    assert 0.005 <= check.val_flagged <= 0.015
    fresh, _ = gaussian_features(4000, seed=2)  # same distribution, never seen
    assert 0.003 <= np.mean(check.distance(fresh) > check.threshold) <= 0.03
    far, _ = gaussian_features(500, away=True, seed=3)
    assert np.mean(check.distance(far) > check.threshold) > 0.99


def test_geometry_flags_large_small_and_stretched_images():
    check = fitted()
    assert check.geometry_reason(32, 32) is None and check.geometry_reason(48, 40) is None
    assert "4032x3024" in check.geometry_reason(4032, 3024)
    assert check.geometry_reason(8, 8) is not None
    assert "aspect" in check.geometry_reason(200, 40)  # a shorter side of 40 px is fine, 5:1 is not
    typical = np.r_[np.full(8, 4.0), np.zeros(8)]  # the REAL class mean: features in domain
    verdicts = check.assess(np.stack([typical, typical, typical]), [(4000, 3000), None, (32, 32)])
    assert not verdicts[0].in_domain and "4000x3000" in verdicts[0].reason
    assert verdicts[0].score == pytest.approx(3000 / 64)  # the geometry's own scale: 1 is its limit
    assert verdicts[1].in_domain and verdicts[1].reason is None and verdicts[1].score < 1
    assert verdicts[2].in_domain and verdicts[2].score == verdicts[1].score  # in range: the feature score ranks


def test_round_trip_keeps_the_check_exactly():
    check = fitted()
    again = DomainCheck.from_dict(json.loads(json.dumps(check.to_dict())))
    x, _ = gaussian_features(50, seed=5)
    assert np.array_equal(check.distance(x), again.distance(x)) and again.threshold == check.threshold
    broken = {**check.to_dict(), "dim": 17}
    with pytest.raises(ValueError):
        DomainCheck.from_dict(broken)


@pytest.fixture(scope="module")
def model_and_data(trained_run):
    data, run = trained_run
    return run / "model.pt", data


def test_training_stores_the_check_fitted_on_its_own_train_and_val_splits(model_and_data):
    """The stored check is the one its own splits give: class means and covariance from train, the
    threshold the 99th percentile of val. With n < 100 val images that percentile lies between the two
    farthest, so exactly one val image (1/n) is past it."""
    import torch

    from aivsreal.commands.evaluate import load_saved
    from aivsreal.data.splits import DataOptions
    from aivsreal.train.domain import fit_domain

    model, data = model_and_data
    run = load_saved(model, DataOptions(path=str(data), no_cache=True), "cpu")
    stored = run.meta.domain
    assert stored is not None and stored.short_side == (32.0, 32.0) and 10 <= len(run.data.val) < 100
    again = fit_domain(run.network, run.data.train, run.data.val, run.data.train_sizes, torch.device("cpu"))
    np.testing.assert_allclose(stored.means, again.means, rtol=1e-4, atol=1e-5)
    assert stored.threshold == pytest.approx(again.threshold, rel=1e-4)
    assert stored.val_flagged == pytest.approx(1 / len(run.data.val))


def fresh_split(n_per_class, seed):
    """In-domain images the model never saw, decoded as at training: the trained_run's generator and size."""
    from conftest import synthetic_image

    from aivsreal.data.cache import DecodedSplit
    from aivsreal.data.images import decode_image

    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per_class)
    blobs = [jpeg_bytes(synthetic_image(int(label), rng)) for label in labels]
    return DecodedSplit(np.stack([decode_image(b, 32) for b in blobs]), labels, [], []), blobs


def test_in_domain_images_are_flagged_at_the_designed_one_percent(model_and_data):
    """With a validation split large enough to place the 99th percentile, about 1% of fresh in-domain
    images are flagged, through Detector.predict. Margin, exact: with 2,000 val images the threshold
    sits between the 20th and 21st farthest, so the share of in-domain images past it is Beta(20, 1981)
    (or (21, 1980)), and the count flagged among 2,000 test images beta-binomial: 5 to 44 (0.25% to
    2.2%) holds with probability 0.998. A 95th-percentile threshold (~100 flagged), a threshold set on
    the train features, or none reached (0) fails."""
    import torch

    from aivsreal.commands.evaluate import load_saved
    from aivsreal.data.splits import DataOptions
    from aivsreal.train.domain import fit_domain

    model, data = model_and_data
    run = load_saved(model, DataOptions(path=str(data), no_cache=True), "cpu")
    val, _ = fresh_split(1000, seed=11)
    check = fit_domain(run.network, run.data.train, val, run.data.train_sizes, torch.device("cpu"))
    assert check.val_flagged == pytest.approx(0.01, abs=1 / 2000)
    run.meta.domain, run.meta.tta = check, False  # no flips: the check reads the unflipped view's features anyway
    _, test_blobs = fresh_split(1000, seed=12)
    preds = Detector.from_network(run.network, run.meta, "cpu").predict(test_blobs)
    flagged = np.mean([not p.in_domain for p in preds])
    assert 5 / 2000 <= flagged <= 44 / 2000, flagged
    assert all("features" in p.domain_reason for p in preds if not p.in_domain)  # never the geometry


def test_large_photos_and_synthetic_patterns_are_out_of_domain(model_and_data):
    from skimage import data as samples

    det = Detector.load(model_and_data[0], device="cpu")
    rng = np.random.default_rng(0)
    photo = det.predict([samples.astronaut()])[0]
    assert photo.in_domain is False and "512x512" in photo.domain_reason
    patterns = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), np.full((32, 32, 3), 128, np.uint8),
                np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))]
    for p in det.predict(patterns):
        assert p.in_domain is False and p.domain_score > 1 and "features" in p.domain_reason


def test_the_stored_threshold_is_the_one_applied(model_and_data, tmp_path):
    model = tmp_path / "model.pt"
    shutil.copy(model_and_data[0], model)
    images = sorted((model_and_data[1] / "test").rglob("*.jpg"))[:8]
    _, meta = load_model(model)
    meta.domain.threshold *= 1e-3
    update_model_meta(model, domain=meta.domain)
    assert not any(p.in_domain for p in Detector.load(model, device="cpu").predict(images))
    meta.domain.threshold *= 1e6
    update_model_meta(model, domain=meta.domain)
    assert all(p.in_domain for p in Detector.load(model, device="cpu").predict(images))


def an_in_domain_test_image(model_and_data):
    """One of the model's own test images that the Python API calls in domain (most are)."""
    model, data = model_and_data
    images = sorted((data / "test").rglob("*.jpg"))
    preds = Detector.load(model, device="cpu").predict(images)
    return next(path for path, p in zip(images, preds, strict=True) if p.in_domain)


def test_cli_table_csv_and_json_carry_the_flag(model_and_data, tmp_path):
    model = model_and_data[0]
    big = tmp_path / "big.jpg"
    big.write_bytes(jpeg_bytes(np.asarray(Image.new("RGB", (640, 480), (90, 120, 60)))))
    own = an_in_domain_test_image(model_and_data)
    r = run_cli("predict", big, own, "--model", model, "--csv", tmp_path / "o.csv", "--json", tmp_path / "o.json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("\tdomain") and "\tOUT: image is 640x480 px" in lines[1] and lines[2].endswith("\tin")
    assert "unlike this model's training data" in r.stderr
    rows = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert rows[0]["in_domain"] == "false" and "640x480" in rows[0]["domain_reason"] and rows[1]["in_domain"] == "true"
    assert float(rows[0]["domain_score"]) >= 0
    items = json.loads((tmp_path / "o.json").read_text())
    assert items[0]["in_domain"] is False and {"domain_score", "domain_reason"} <= set(items[0])


def test_api_answers_carry_the_flag_and_the_model_its_domain(model_and_data):
    from aivsreal.serve.app import create_app

    big = jpeg_bytes(np.asarray(Image.new("RGB", (640, 480), (90, 120, 60))))
    own = an_in_domain_test_image(model_and_data).read_bytes()
    with TestClient(create_app(model_and_data[0], device="cpu")) as c:
        results = c.post("/api/predict", files=[("files", ("big.jpg", big)), ("files", ("own.jpg", own))]).json()
        info = c.get("/api/model").json()
    big_r, own_r = results["results"]
    assert big_r["in_domain"] is False and "640x480" in big_r["domain_reason"]
    assert own_r["in_domain"] is True and own_r["domain_reason"] is None and own_r["domain_score"] <= 1
    assert info["domain"]["short_side_px"] == [32.0, 32.0] and "## Domain" in info["card"]


def test_a_threshold_set_on_held_out_sources_keeps_their_share_and_says_so():
    """Four sources, each shifted its own way: a check fitted without a source finds it farther than its
    validation threshold; recalibrated, the shipped threshold keeps the quantile of those held-out
    scores (in units of the validation threshold), the reason and the stored form say so."""
    from aivsreal.models.domain import held_out_scores

    rng = np.random.default_rng(4)
    parts = [gaussian_features(600, seed=10 + s) for s in range(4)]
    features = np.concatenate([f + rng.normal(0, 1.5, 16) for f, _ in parts])  # each source its own offset
    labels = np.concatenate([y for _, y in parts])
    folds = np.repeat(np.arange(4), 600)
    sizes = np.full((len(labels), 2), 512)
    scores = held_out_scores(features, labels, folds, sizes)
    assert np.median(scores) > 1.0  # a never-seen source is beyond an in-sample threshold
    fit, val = np.arange(0, 2000), np.arange(2000, 2400)
    check = DomainCheck.fit(features[fit], labels[fit], features[val], sizes[fit])
    before = check.threshold
    check.recalibrate(scores, features[val], quantile=0.9)
    assert check.threshold == pytest.approx(before * np.quantile(scores, 0.9))
    assert check.val_flagged == pytest.approx(np.mean(check.distance(features[val]) > check.threshold))
    far, _ = gaussian_features(50, away=True, seed=3)
    reason = check.assess(far * 100, [None] * 50)[0].reason
    assert "90% of images from sources held out of training" in reason
    again = DomainCheck.from_dict(json.loads(json.dumps(check.to_dict())))
    assert again.held_out_quantile == 0.9 and again.describe_threshold() == check.describe_threshold()
    assert "validation images" in fitted().describe_threshold()
    with pytest.raises(ValueError, match="between 0 and 1"):
        DomainCheck.from_dict({**check.to_dict(), "held_out_quantile": 1.5})
