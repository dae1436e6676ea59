"""The CLI end to end, and its error paths: one line, no traceback, non-zero exit."""

import csv
import json
import os
import subprocess
import sys

import pytest

from aivsreal.cli import main

TRAIN = ["train", "--epochs", "4", "--batch-size", "16", "--lr", "0.05"]


def run_cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "aivsreal", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


def test_train_evaluate_predict_end_to_end(tiny_data, tmp_path, cache_dir):
    out = tmp_path / "run"
    assert main([*TRAIN, "--data", str(tiny_data), "--out", str(out), "--cache-dir", str(cache_dir)]) == 0
    for name in ("model.pt", "history.csv", "metrics.json", "report.md", "predictions_test.csv",
                 "plots/confusion_test.png", "plots/roc_pr.png", "plots/training_curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert set(metrics) >= {"train", "val", "test"} and metrics["test"]["accuracy"] > 0.9
    report = (out / "report.md").read_text()
    assert "Positive class: REAL" in report and "plots/confusion_test.png" in report

    (out / "metrics.json").unlink()
    assert main(["evaluate", "--model", str(out / "model.pt"), "--data", str(tiny_data),
                 "--cache-dir", str(cache_dir)]) == 0
    again = json.loads((out / "metrics.json").read_text())["metrics"]
    assert again["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert again["val"]["n"] == metrics["val"]["n"]  # the same val split, rebuilt from the stored seed

    (tiny_data / "test" / "FAKE" / "junk.jpg").write_bytes(b"junk")
    result = run_cli("predict", tiny_data / "test", "--model", out / "model.pt",
                     "--csv", tmp_path / "p.csv", "--json", tmp_path / "p.json")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 65
    good = [r for r in rows if not r["error"]]
    right = sum(r["label"] == ("FAKE" if "/FAKE/" in r["path"] else "REAL") for r in good)
    assert right / len(good) > 0.9
    assert [r["path"] for r in rows if r["error"]] == [str(tiny_data / "test" / "FAKE" / "junk.jpg")]
    assert len(json.loads((tmp_path / "p.json").read_text())) == 65
    assert "could not be read" in result.stderr


def one_line_error(result, pattern):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("aivsreal: error:") and pattern in lines[-1], lines


def test_missing_data_path(tmp_path):
    one_line_error(run_cli(*TRAIN, "--data", tmp_path / "nope", "--out", tmp_path / "o"), "not found")


def test_wrong_layout_and_empty_class(tmp_path, tiny_data):
    (tmp_path / "flat").mkdir()
    one_line_error(run_cli(*TRAIN, "--data", tmp_path / "flat", "--out", tmp_path / "o"), "no REAL/ and FAKE/")
    for f in (tiny_data / "test" / "REAL").iterdir():
        f.unlink()
    one_line_error(run_cli(*TRAIN, "--data", tiny_data, "--out", tmp_path / "o"), "test/REAL has no images")


def test_model_file_missing_corrupt_and_wrong(tmp_path, tiny_data):
    import torch

    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import FORMAT_VERSION, save_model

    one_line_error(run_cli("predict", tiny_data, "--model", tmp_path / "none.pt"), "not found")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    one_line_error(run_cli("predict", tiny_data, "--model", tmp_path / "bad.pt"), "not a readable model file")
    save_model(tmp_path / "future.pt", build_model(default_config("fast")))
    obj = torch.load(tmp_path / "future.pt", weights_only=True)
    obj["format_version"] = FORMAT_VERSION + 1
    torch.save(obj, tmp_path / "future.pt")
    one_line_error(run_cli("evaluate", "--model", tmp_path / "future.pt", "--data", tiny_data), "upgrade aivsreal")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir(tmp_path, tiny_data):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    one_line_error(run_cli(*TRAIN, "--data", tiny_data, "--out", locked / "run"), "not writable")


def test_unwritable_output_dir_even_as_root(tmp_path, tiny_data):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    one_line_error(run_cli(*TRAIN, "--data", tiny_data, "--out", blocker / "run"), "not writable")


def test_verbose_shows_the_traceback(tmp_path):
    result = run_cli("-v", "predict", tmp_path, "--model", tmp_path / "none.pt")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_alternate_flip_from_the_command_line_is_recorded(tiny_data, tmp_path, cache_dir):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--cache-dir", str(cache_dir), "--epochs", "1",
                 "--batch-size", "16", "--alternate-flip"]) == 0
    config = json.loads((out / "metrics.json").read_text())["training"]["config"]
    assert config["alternate_flip"] is True and config["flip"] is True


def test_out_of_range_options_are_one_line_errors(tmp_path, tiny_data):
    one_line_error(run_cli("train", "--data", tiny_data, "--out", tmp_path / "run", "--degrade", "1.5"),
                   "--degrade: 1.5 must be <= 1")
    one_line_error(run_cli("train", "--data", tiny_data, "--out", tmp_path / "run", "--ema", "1"),
                   "--ema: 1.0 must be < 1")
    one_line_error(run_cli("train", "--data", tiny_data, "--out", tmp_path / "run", "--lookahead", "-1"),
                   "--lookahead: -1 must be >= 0")
    one_line_error(run_cli("train", "--data", tiny_data, "--out", tmp_path / "run", "--bias-lr-scale", "0"),
                   "--bias-lr-scale: 0.0 must be > 0")
    one_line_error(run_cli("train", "--data", tiny_data, "--out", tmp_path / "run", "--optimizer", "rmsprop"),
                   "invalid choice: 'rmsprop'")
    one_line_error(run_cli("report", "--model", tmp_path / "none.pt", "--examples", "-1"),
                   "--examples: -1 must be >= 0")


def test_train_with_an_unreadable_teacher(tmp_path, tiny_data):
    out = tmp_path / "o"
    one_line_error(run_cli(*TRAIN, "--data", tiny_data, "--out", out, "--teacher", tmp_path / "none.csv"),
                   "--teacher")
    assert not (out / "model.pt").exists()
