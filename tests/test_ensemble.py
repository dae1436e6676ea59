"""`aivsreal ensemble`: one model file whose P(FAKE) is the mean of its members', through every verb."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import benchmark_script

from aivsreal.cli import main
from aivsreal.models import build_model, default_config
from aivsreal.models.file import load_model_file, save_model, update_model_meta
from aivsreal.predict.detector import Detector
from aivsreal.predict.onnx import export_onnx


@pytest.fixture
def members(trained_run, tmp_path):
    """The session's trained `fast` twice, read differently: A with TTA, B without TTA at temperature 2."""
    data, run = trained_run
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    shutil.copy(run / "model.pt", a)
    shutil.copy(run / "model.pt", b)
    update_model_meta(a, tta=True, temperature=1.0)
    update_model_meta(b, tta=False, temperature=2.0)
    return data, a, b


def p_fake(model, images):
    return np.array([p.p_fake for p in Detector.load(model, device="cpu", precision="fp32").predict(images)])


def test_ensemble_scores_the_mean_of_its_members(members, tmp_path, capsys):
    data, a, b = members
    out = tmp_path / "e.pt"
    assert main(["ensemble", str(a), str(b), "--out", str(out)]) == 0
    assert "aivsreal evaluate --model" in capsys.readouterr().out  # same split: says how to measure it
    images = [p.read_bytes() for p in sorted(data.rglob("*.jpg"))[:24]]
    pa, pb, pe = p_fake(a, images), p_fake(b, images), p_fake(out, images)
    assert np.abs(pa - pb).max() > 1e-3  # the members really differ
    assert np.abs(pe - (pa + pb) / 2).max() <= 1e-4
    network, meta = load_model_file(out)
    assert network.config.name == "ensemble" and meta.split is not None and meta.domain is not None
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--cache-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "report.md").is_file()


def test_ensemble_exports_to_onnx_and_explains(members, tmp_path):
    data, a, b = members
    out = tmp_path / "e.pt"
    assert main(["ensemble", str(a), str(b), "--out", str(out)]) == 0
    images = [p.read_bytes() for p in sorted(data.rglob("*.jpg"))[:16]]
    onnx_p = np.array([p.p_fake for p in Detector.load(export_onnx(out, tmp_path / "e.onnx"), backend="onnx")
                       .predict(images)])
    assert np.abs(onnx_p - p_fake(out, images)).max() <= 1e-3
    assert main(["explain", str(data / "test" / "FAKE"), "--model", str(out), "--out", str(tmp_path / "x"),
                 "--device", "cpu"]) == 0
    assert len(list((tmp_path / "x").glob("*.png"))) == len(list((data / "test" / "FAKE").glob("*.jpg"))) > 0


def test_members_trained_on_other_data_keep_no_split(members, tmp_path, capsys):
    _, a, b = members
    update_model_meta(b, data_fingerprint="another dataset")
    assert main(["ensemble", str(a), str(b), "--out", str(tmp_path / "e.pt")]) == 0
    assert "different data" in capsys.readouterr().out
    assert load_model_file(tmp_path / "e.pt")[1].split is None


def test_bad_ensembles_are_one_line_errors_and_lose_nothing(members, tmp_path, capsys):
    _, a, b = members
    wide = tmp_path / "wide.pt"
    save_model(wide, build_model(default_config("fast", image_size=64, input_size=64)))
    cases = [(["ensemble", str(a), str(wide), "--out", str(tmp_path / "e.pt")], "must read the same pixels"),
             (["ensemble", str(a), "--out", str(tmp_path / "e.pt")], "at least two"),
             (["ensemble", str(a), str(b), "--out", str(b)], "one of the members"),
             (["train", "--model", "ensemble", "--data", str(tmp_path)], "invalid choice")]
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    assert main(["ensemble", str(a), str(b), "--out", str(good)]) == 0
    stored = torch.load(good, weights_only=True)
    stored["config"]["options"]["members"][1]["temperature"] = -1.0
    torch.save(stored, bad)
    cases.append((["predict", str(a), "--model", str(bad)], "ensemble member 2 is damaged"))
    capsys.readouterr()
    before = b.read_bytes()
    for argv, message in cases:
        err = capsys.readouterr().err.strip() if exit_code(argv) == 2 else "exit code not 2"
        assert message in err and len(err.splitlines()) == 1, (argv, err)
    assert b.read_bytes() == before and not (tmp_path / "e.pt").exists() and good.is_file()


def exit_code(argv: list[str]) -> int:
    """main's return value, or argparse's exit code for a usage error."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_member_selection_follows_validation_and_keeps_the_budget():
    """Greedy selection starts from the best member alone, adds members only while the validation log
    loss falls, never exceeds the compute budget, and says so when nothing fits."""
    from aivsreal.evaluate.metrics import binary_metrics

    select_members = benchmark_script("cifake_ensemble").select_members
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)

    def member(margin: float) -> np.ndarray:  # independent errors, so averaging two helps
        return 1 / (1 + np.exp(-(margin * (2 * labels - 1) + rng.normal(0, 2, labels.size))))

    candidates = [member(2.0), member(3.0), np.full(labels.size, 0.5), member(2.0)]
    pflops = [1.0, 3.0, 0.1, 1.0]

    def loss(idx: list[int]) -> float:
        return binary_metrics(labels, np.mean([candidates[i] for i in idx], axis=0))["log_loss"]

    for budget in (4.5, 2.5, 10.0):
        chosen, steps = select_members(candidates, labels, pflops, budget=budget)
        assert sum(pflops[i] for i in chosen) <= budget
        fits = [i for i in range(4) if pflops[i] <= budget]
        assert chosen[0] == min(fits, key=lambda i: loss([i]))
        assert [s["val_log_loss"] for s in steps] == sorted({s["val_log_loss"] for s in steps}, reverse=True)
        assert steps[-1]["val_log_loss"] == pytest.approx(loss(chosen))
        left = [i for i in fits if i not in chosen and sum(pflops[j] for j in chosen) + pflops[i] <= budget]
        assert all(loss(chosen + [i]) >= loss(chosen) for i in left)  # it stopped because nothing helps
        assert 2 not in chosen  # a coin-flip member
    assert len(select_members(candidates, labels, pflops, budget=2.5)[0]) == 2  # the two fair ones
    with pytest.raises(SystemExit):
        select_members(candidates, labels, pflops, budget=0.05)


def test_ensemble_benchmark_refuses_a_results_name_that_is_a_path(monkeypatch, tmp_path, capsys):
    """--name names a row (a heading in cifake_ensembles.md); a path is no such name, so it is refused
    (exit 2, one line saying the rule) before any model is loaded."""
    script = benchmark_script("cifake_ensemble")
    monkeypatch.setattr("sys.argv", ["cifake_ensemble.py", "--runs", str(tmp_path), "--members", "x_seed0",
                                     "--name", "../elsewhere"])
    with pytest.raises(SystemExit) as e:
        script.main()
    assert e.value.code == 2
    assert "--name '../elsewhere': a row name" in capsys.readouterr().err
    assert not (script.RESULTS.parent / "elsewhere.json").exists()


def test_ensemble_benchmark_refuses_one_member_before_scoring(monkeypatch, tmp_path, capsys):
    """One member without --select-within is no ensemble: refused (exit 2, one line) before the
    member is scored, not after minutes of scoring with a traceback."""
    script = benchmark_script("cifake_ensemble")
    monkeypatch.setattr("sys.argv", ["cifake_ensemble.py", "--runs", str(tmp_path), "--members", "x_seed0"])
    with pytest.raises(SystemExit) as e:
        script.main()
    assert e.value.code == 2
    assert "--members x_seed0: an ensemble needs at least two members" in capsys.readouterr().err


def test_seed_ensemble_scores_test_only_and_chooses_nothing(members, tmp_path, monkeypatch, capsys):
    """Members from different seeds have different validation sets, each partly another member's
    training images. The benchmark refuses them unless told (--across-seeds); then it scores test
    alone, writes no validation figure, and refuses to choose members or label training images."""
    data, a, b = members
    script = benchmark_script("cifake_ensemble")
    runs, results = tmp_path / "runs", tmp_path / "results"
    for name, source, seed in (("fast_seed0", a, 0), ("fast_seed1", b, 1)):
        (runs / name).mkdir(parents=True)
        shutil.copy(source, runs / name / "model.pt")
        update_model_meta(runs / name / "model.pt", split=replace(load_model_file(source)[1].split, seed=seed))
    results.mkdir()
    rows = [{"model": "fast", "seed": s, "train_pflops": 0.1, "train_minutes": 1.0, "machine": "test, 2 cores",
             "date": "2026-11-29"} for s in (0, 1)]
    (results / "cifake.json").write_text(json.dumps({"meta": {"budget_pflops": 0.454}, "rows": rows}))
    monkeypatch.setattr(script, "RESULTS", results)
    monkeypatch.setenv("AIVSREAL_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["cifake_ensemble.py", "--data", str(data), "--runs", str(runs), "--members", "fast_seed0", "fast_seed1",
            "--out", str(tmp_path / "e.pt"), "--name", "seeds"]
    for extra, message in (([], "fast_seed1 was scored on other splits than fast_seed0"),
                           (["--across-seeds", "--select-within", "1"], "--across-seeds scores test only")):
        monkeypatch.setattr("sys.argv", argv + extra)
        with pytest.raises(SystemExit) as e:
            script.main()
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (results / "cifake_ensembles.json").exists()

    monkeypatch.setattr("sys.argv", argv + ["--across-seeds"])
    script.main()
    [result] = json.loads((results / "cifake_ensembles.json").read_text())["rows"]
    assert result["name"] == "seeds"
    assert result["across_seeds"] and result["val_accuracy"] is None
    assert all(m["val_accuracy"] is None and m["val_log_loss"] is None for m in result["members"].values())
    assert result["max_abs_difference_from_members_mean"] <= 1e-4 and result["train_pflops"] == pytest.approx(0.2)
    test = sorted((data / "test").rglob("*.jpg"))
    labels = np.array([p.parent.name == "FAKE" for p in test])
    images = [p.read_bytes() for p in test]
    mean = (p_fake(a, images) + p_fake(b, images)) / 2
    assert abs(result["test_accuracy"] - ((mean >= 0.5) == labels).mean()) <= 1 / len(test)
    assert "## seeds" in (text := (results / "cifake_ensembles.md").read_text()) and "| `fast_seed1` | – | – |" in text


def test_ensemble_rows_share_one_file_and_a_rerun_replaces_only_its_own(monkeypatch, tmp_path):
    """Every ensemble is a row of cifake_ensembles.json with its own header; writing a row of a name
    already there replaces that row and keeps the others; the file's header is the last writer's."""
    script = benchmark_script("cifake_ensemble")
    row = json.loads((script.RESULTS / "cifake_ensembles.json").read_text())["rows"][0]  # a committed row
    monkeypatch.setattr(script, "RESULTS", tmp_path)
    script.write_row({**row, "name": "a"})
    script.write_row({**row, "name": "b", "test_accuracy": 0.5})
    script.write_row({**row, "name": "a", "test_accuracy": 0.25, "provenance": {**row["provenance"], "date": "x"}})
    written = json.loads((tmp_path / "cifake_ensembles.json").read_text())
    assert [(r["name"], r["test_accuracy"]) for r in written["rows"]] == [("b", 0.5), ("a", 0.25)]
    assert written["provenance"]["date"] == "x"
    text = (tmp_path / "cifake_ensembles.md").read_text()
    assert text.index("## b") < text.index("## a") and "**0.2500**" in text and "**0.5000**" in text
