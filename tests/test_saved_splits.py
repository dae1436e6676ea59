"""Every verb that scores a saved model on data rebuilds that model's own splits (issue 10's seed bug).

On a plain REAL/ FAKE/ folder the test split is drawn by the seed, so a model trained with
`--seed 7` and scored on a seed-0 "test" would be scored mostly on its own train and val images.
"""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
from conftest import make_dataset

from aivsreal.cli import main
from aivsreal.data.splits import SplitRecipe, prepare
from aivsreal.evaluate import robustness


def digests(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(im.tobytes()).hexdigest() for im in images}


@pytest.fixture(scope="module")
def seed7_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed7")
    data = make_dataset(root / "data", {"": 60}, seed=3)  # root/REAL, root/FAKE: no test split of its own
    out = root / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--no-cache", "--seed", "7",
                 "--epochs", "1", "--batch-size", "16"]) == 0
    held_out = prepare(data, 32, None, SplitRecipe(seed=7))
    return data, out, held_out


def test_the_seed_decides_the_test_split(seed7_run):
    data, _, held_out = seed7_run
    seed0 = prepare(data, 32, None, SplitRecipe(seed=0))
    assert set(seed0.test.names) != set(held_out.test.names)  # the bug would be visible
    assert set(seed0.test.names) & (set(held_out.train.names) | set(held_out.val.names))


def test_evaluate_scores_only_unseen_images(seed7_run, tmp_path):
    data, run, held_out = seed7_run
    assert main(["evaluate", "--model", str(run / "model.pt"), "--data", str(data), "--no-cache",
                 "--out", str(tmp_path)]) == 0
    with open(tmp_path / "predictions_test.csv") as f:
        scored = {row["path"] for row in csv.DictReader(f)}
    assert scored == set(held_out.test.names)


def test_robustness_and_report_stress_only_unseen_images(seed7_run, tmp_path, monkeypatch):
    data, run, held_out = seed7_run
    seen: list[np.ndarray] = []
    measure = robustness.measure

    def spy(scorer, images, *args, **kwargs):
        seen.append(images)
        return measure(scorer, images, *args, **kwargs)

    monkeypatch.setattr(robustness, "measure", spy)
    assert main(["robustness", "--model", str(run / "model.pt"), "--data", str(data), "--no-cache",
                 "--out", str(tmp_path / "rob")]) == 0
    assert main(["report", "--model", str(run / "model.pt"), "--data", str(data), "--no-cache",
                 "--out", str(tmp_path / "rep"), "--examples", "1"]) == 0
    trained_on = digests(held_out.train.images) | digests(held_out.val.images)
    assert len(seen) == 2
    for images in seen:
        assert digests(images) == digests(held_out.test.images) and not digests(images) & trained_on
    with open(tmp_path / "rep" / "predictions_test.csv") as f:
        assert {row["path"] for row in csv.DictReader(f)} == set(held_out.test.names)


def test_a_limit_on_a_saved_model_only_subsamples_its_test_split(seed7_run, tmp_path):
    data, run, held_out = seed7_run
    assert main(["evaluate", "--model", str(run / "model.pt"), "--data", str(data), "--no-cache",
                 "--out", str(tmp_path), "--limit", "10"]) == 0
    with open(tmp_path / "predictions_test.csv") as f:
        scored = {row["path"] for row in csv.DictReader(f)}
    assert len(scored) == 10 and scored < set(held_out.test.names)
