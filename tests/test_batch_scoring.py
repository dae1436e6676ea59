"""Streaming, parallel, resumable scoring of large folders."""

import csv
import itertools

import numpy as np
import pytest
import torch

from aivsreal.data.inputs import expand_inputs
from aivsreal.models import build_model, default_config
from aivsreal.models.file import ModelMeta, save_model
from aivsreal.predict.batch import score_paths, score_to_csv
from aivsreal.predict.detector import Detector


@pytest.fixture
def det(tmp_path, tiny_data):
    """A `fast` network whose head reads the test images' main direction of feature variation, scaled to
    logits of spread ~2: its P(fake) differs from image to image, so a row scored from the wrong pixels
    or put in the wrong place shows (an untrained head gives ~0.509 for every image)."""
    torch.manual_seed(0)
    net = build_model(default_config("fast")).eval()
    images = sorted((tiny_data / "test").rglob("*.jpg"))
    probe = Detector.from_network(net, ModelMeta(), "cpu", precision="fp32")
    _, features = probe.score(np.stack([probe.to_pixels(p) for p in images]))
    centred = features.astype(np.float64) - features.mean(0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    weight = direction * 2.0 / (centred @ direction).std()
    head = net.network[-1]
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight[None]).float())
        head.bias.fill_(float(-features.mean(0) @ weight))
    path = tmp_path / "model.pt"
    save_model(path, net)
    return Detector.load(path, device="cpu")


def test_parallel_decode_gives_the_same_rows_in_order(det, tiny_data):
    paths = list(expand_inputs([str(tiny_data / "test")]))
    direct = np.array([p.p_fake for p in det.predict(paths)])  # the Python API, one path at a time in order
    assert np.ptp(direct) > 0.5 and len(np.unique(direct.round(3))) > len(paths) // 2  # they differ
    for workers in (1, 2):
        rows = list(score_paths(det, iter(paths), batch_size=8, workers=workers))
        assert [p.source for p in rows] == paths
        np.testing.assert_allclose([p.p_fake for p in rows], direct, atol=1e-6, rtol=0)
        assert [p.label for p in rows] == [det.label(p) for p in direct]


def test_never_needs_the_whole_list(det, tiny_data):
    one = str(next((tiny_data / "test" / "REAL").glob("*.jpg")))
    endless = itertools.repeat(one)  # a million files or an endless stream: same code path
    first = list(itertools.islice(score_paths(det, endless, batch_size=4, workers=2), 10))
    assert len(first) == 10 and len({p.p_fake for p in first}) == 1


def test_resume_skips_what_the_csv_already_has(det, tiny_data, tmp_path):
    (tiny_data / "test" / "REAL" / "bad.jpg").write_bytes(b"garbage")
    paths = list(expand_inputs([str(tiny_data / "test")]))
    out = tmp_path / "scores.csv"
    # A job that stops after 20 rows (killed), then a resumed one.
    list(itertools.islice(score_to_csv(det, iter(paths), out, batch_size=8, workers=1), 20))
    assert len(list(csv.DictReader(open(out)))) == 20
    resumed = list(score_to_csv(det, iter(paths), out, resume=True, batch_size=8, workers=1))
    assert len(resumed) == len(paths) - 20
    rows = list(csv.DictReader(open(out)))
    assert sorted(r["path"] for r in rows) == sorted(paths)  # each exactly once
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("bad.jpg") and bad[0]["label"] == ""
