"""benchmarks/cifake_proxy.py: a contender's recipe and model options, cut to N epochs, scored on validation."""

import csv

from conftest import benchmark_script

from aivsreal.models.hub import load_model


def test_proxy_trains_the_contender_for_n_epochs_and_reports_its_last_validation(tiny_data, tmp_path, monkeypatch):
    script = benchmark_script("cifake_proxy")
    tiny = ("fast", {"batch_size": 16, "patience": 1}, {"options": {"widths": [8, 8, 8], "stem": "whiten"}}, False, "")
    monkeypatch.setitem(script.CONTENDERS, "tiny_whiten", tiny)
    row = script.proxy("tiny_whiten", epochs=3, seed=0, data=str(tiny_data), runs=tmp_path)
    out = tmp_path / "proxy_tiny_whiten_3ep_seed0"
    with open(out / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 3  # all N epochs: the proxy's own patience, not the contender's 1
    assert (row["epochs"], row["val_acc"], row["val_loss"]) == (3, float(history[-1]["val_acc"]),
                                                                float(history[-1]["val_loss"]))
    model, _ = load_model(out / "model.pt")
    assert model.config.options["stem"] == "whiten" and row["train_pflops"] > 0
