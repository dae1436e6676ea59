"""benchmarks/cifake.py: a contender that outlasts one sitting resumes where the last one stopped; and
benchmarks/precision.py keeps every CPU's figures."""

import argparse
import csv
import json

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


def test_precision_results_keep_one_section_per_cpu(tmp_path):
    """Which precision pays is the CPU's property, so a run on a new CPU must not erase the old one's."""
    script = benchmark_script("precision")
    path = tmp_path / "precision.json"

    def run(cpu: str, date: str, speed: float) -> dict:
        meta = {"cpu": cpu, "date": date, "cpus": 2, "torch": "t", "command": "c", "cpu_bf16_native": False,
                "rounds": 3, "min_seconds": 3.0, "train_batch": 64, "infer_batch": 256}
        rows = [{"model": "fast", "pass": phase, "precision": p, "img_per_s": speed}
                for phase in ("train", "inference") for p in ("fp32", "bf16")]
        return {"meta": meta, "rows": rows}

    path.write_text(json.dumps({"machines": [run("AMD", "2026-11-29", 1.0), run("Intel", "2026-11-30", 2.0)]}))
    machines = script.merged(path, run("AMD", "2026-12-06", 3.0))
    assert [(m["meta"]["cpu"], m["rows"][0]["img_per_s"]) for m in machines] == [("Intel", 2.0), ("AMD", 3.0)]
    assert "| `fast` | train | 3.0 | 3.0 | 1.00x |" in script.section(**machines[1])
