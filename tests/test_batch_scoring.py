"""Streaming, parallel, resumable scoring of large folders."""

import csv
import itertools

import pytest

from aivsreal.commands.predict import expand_inputs
from aivsreal.models import build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.predict.batch import score_paths, score_to_csv
from aivsreal.predict.detector import Detector


@pytest.fixture
def det(tmp_path):
    path = tmp_path / "model.pt"
    save_model(path, build_model(default_config("fast")))
    return Detector.load(path, device="cpu")


def test_parallel_decode_gives_the_same_rows_in_order(det, tiny_data):
    paths = list(expand_inputs([str(tiny_data / "test")]))
    serial = list(score_paths(det, paths, batch_size=8, workers=1))
    parallel = list(score_paths(det, iter(paths), batch_size=8, workers=2))
    assert [p.source for p in parallel] == paths
    assert [p.p_fake for p in parallel] == pytest.approx([p.p_fake for p in serial], abs=1e-6)


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
