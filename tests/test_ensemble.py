"""`aivsreal ensemble`: one model file whose P(FAKE) is the mean of its members', through every verb."""

import shutil

import numpy as np
import pytest
import torch

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
