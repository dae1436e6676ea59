"""ECE, temperature scaling and the threshold chooser, on cases whose answers are known."""

import json
import shutil

import numpy as np
import pytest
import torch

from aivsreal.cli import main
from aivsreal.errors import AivsrealError
from aivsreal.evaluate.calibration import (
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    operating_point,
    rescale_threshold,
    sigmoid,
)
from aivsreal.models.hub import load_model
from aivsreal.models.network import logits_and_features
from aivsreal.predict.detector import Detector


def test_ece_on_a_hand_made_case():
    # Bin of 0.1: mean p 0.1, half are FAKE -> gap 0.4; bin of 0.9: mean 0.9, all FAKE -> gap 0.1.
    labels, p = np.array([0, 1, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(labels, p) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    # p = 1.0 falls in the last bin, not past it.
    assert expected_calibration_error(np.array([1, 1]), np.array([1.0, 0.98])) == pytest.approx(0.01)


def test_temperature_scaling_undoes_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20_000)
    labels = (rng.random(20_000) < sigmoid(true_logits)).astype(int)
    overconfident = 3.0 * true_logits
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.08)
    before = expected_calibration_error(labels, sigmoid(overconfident))
    after = expected_calibration_error(labels, sigmoid(overconfident / t))
    assert after < 0.02 < before
    with pytest.raises(AivsrealError, match="both classes"):
        fit_temperature(overconfident[:10], np.zeros(10))


def test_rescaled_threshold_takes_the_same_decisions():
    z = np.random.default_rng(1).normal(0, 4, 5000)
    for t_old, t_new, thr in ((1.0, 2.5, 0.8), (2.0, 0.7, 0.3), (1.0, 3.0, 0.5)):
        new_thr = rescale_threshold(thr, t_old, t_new)
        assert np.array_equal(sigmoid(z / t_old) >= thr, sigmoid(z / t_new) >= new_thr)


def synthetic_scores(seed=0, n=4000):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * labels, 0.18), 0, 1).round(3)  # overlapping classes, with ties
    return labels, p


@pytest.mark.parametrize("target", [0.9, 0.95, 0.99])
def test_threshold_meets_the_target_precision_and_catches_the_most_fakes(target):
    labels, p = synthetic_scores()
    point = choose_threshold(labels, p, target_precision=target)
    assert point.precision >= target
    assert point == operating_point(labels, p, point.threshold, point.target)
    # Every lower threshold that still meets the target would have to catch more fakes: none does.
    for lower in np.unique(p[p < point.threshold]):
        other = operating_point(labels, p, lower)
        assert other.precision < target or other.recall <= point.recall


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2])
def test_threshold_meets_the_target_fpr_and_no_lower_one_does(target):
    labels, p = synthetic_scores(seed=1)
    point = choose_threshold(labels, p, target_fpr=target)
    assert point.fpr <= target and point.recall > 0
    next_lower = np.unique(p[p < point.threshold])
    if len(next_lower):
        assert operating_point(labels, p, next_lower[-1]).fpr > target


def test_unreachable_or_ambiguous_targets_are_clear_errors():
    labels, p = np.array([0, 1]), np.array([0.9, 0.1])  # the only FAKE scores below the REAL
    with pytest.raises(AivsrealError, match="no threshold reaches precision >= 0.9"):
        choose_threshold(labels, p, target_precision=0.9)
    with pytest.raises(AivsrealError, match="exactly one"):
        choose_threshold(labels, p, target_precision=0.9, target_fpr=0.1)
    with pytest.raises(AivsrealError, match="both classes"):
        choose_threshold(np.ones(3), np.ones(3), target_fpr=0.1)


def test_evaluate_calibrate_stores_temperature_and_threshold_used_everywhere(trained_run, tmp_path, capsys):
    data, run = trained_run
    model_path = tmp_path / "model.pt"
    shutil.copy(run / "model.pt", model_path)
    assert main(["evaluate", "--model", str(model_path), "--data", str(data), "--out", str(tmp_path / "eval"),
                 "--no-cache", "--calibrate", "--target-fpr", "0.05"]) == 0
    network, meta = load_model(model_path)
    t, thr = meta.temperature, meta.threshold
    # The tiny validation split is separable, so the fitted temperature sharpens (T < 1).
    assert 0 < t < 1 and 0 < thr <= 1 and meta.operating_point["target"] == "FPR <= 0.05"
    assert meta.operating_point["val"]["fpr"] <= 0.05
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert summary["temperature"] == t and summary["operating_point"]["test"]["threshold"] == thr
    assert "ece_before_temperature" in summary["metrics"]["test"]
    assert (tmp_path / "eval" / "plots" / "reliability.png").stat().st_size > 0
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "Temperature scaling (fitted on val)" in report and "chosen on val for FPR <= 0.05" in report

    # The Python API (and so predict and the server) applies both.
    pixels = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    det = Detector.load(model_path, device="cpu", precision="fp32")
    z = logits_and_features(network, pixels, torch.device("cpu"), tta=meta.tta, amp=False)[0]
    np.testing.assert_allclose(det.predict_proba(pixels), sigmoid(z / t), atol=1e-6)
    assert det.threshold == thr
