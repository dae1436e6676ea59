"""On the real CIFAKE data, where this machine has it: a short run must be far above chance."""

import json

import pytest
from conftest import SHARED_CIFAKE

from aivsreal.cli import main

pytestmark = pytest.mark.skipif(not (SHARED_CIFAKE / "train.zip").exists(),
                                reason=f"real CIFAKE not found at {SHARED_CIFAKE}")


def test_fast_model_on_a_real_subset(tmp_path, cache_dir):
    out = tmp_path / "run"
    code = main(["train", "--data", str(SHARED_CIFAKE), "--limit", "6000", "--epochs", "4",
                 "--out", str(out), "--cache-dir", str(cache_dir)])
    assert code == 0
    test = json.loads((out / "metrics.json").read_text())["metrics"]["test"]
    assert test["n"] == 6000 and test["accuracy"] > 0.8 and test["roc_auc"] > 0.9
