"""benchmarks/cifake.py: a contender that outlasts one sitting resumes where the last one stopped."""

import argparse
import csv

import pytest
from conftest import benchmark_script


def _history(run) -> list[dict]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_resume_continues_a_capped_run_and_adds_up_its_minutes(tiny_data, tmp_path, monkeypatch):
    script = benchmark_script("cifake")
    recipe, model_over = {"epochs": 3, "batch_size": 16, "patience": 3}, {"options": {"widths": [8, 8, 8]}}
    args = argparse.Namespace(models=["tiny"], seeds=[0], runs=str(tmp_path), data=str(tiny_data),
                              budget_minutes=20.0, resume=True)
    run = tmp_path / "tiny_seed0"
    # First sitting: a wall-time cap that ends it after one epoch (the loop always runs the first).
    monkeypatch.setitem(script.CONTENDERS, "tiny", ("fast", {**recipe, "time_budget_s": 1e-9}, model_over, False, ""))
    first = script.train_contenders(args)[0]
    first_epoch = _history(run)
    assert first["epochs"] == 1 and "resumed_after_epoch" not in first

    monkeypatch.setitem(script.CONTENDERS, "tiny", ("fast", recipe, model_over, False, ""))
    second = script.train_contenders(args)[0]
    history = _history(run)
    assert (second["epochs"], second["resumed_after_epoch"], len(history)) == (3, 1, 3)
    assert history[0] == first_epoch[0]  # continued, not retrained
    assert second["train_minutes"] * 60 == pytest.approx(sum(float(h["seconds"]) for h in history))
    # The table's wall-clock note says it covers the last sitting only.
    assert script.sitting(first).startswith("whole run")
    assert script.sitting(second).startswith("last sitting (resumed after epoch 1)")

    args.resume = False  # without --resume a run starts over
    again = script.train_contenders(args)[0]
    assert again["epochs"] == 3 and "resumed_after_epoch" not in again
    assert _history(run)[0]["seconds"] != first_epoch[0]["seconds"]
