"""Hardening II (issue 51): any file name survives predict's CSV, JSON and --resume; model files are
checked against their family's bounds at load (predict and serve alike); a constant model is called out."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from conftest import jpeg_bytes, synthetic_image
from test_cli import one_line_error, run_cli

from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.predict.batch import already_scored


def write_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        path = os.path.join(os.fsencode(folder), name) if isinstance(name, bytes) else folder / name
        with open(path, "wb") as f:
            f.write(jpeg_bytes(synthetic_image(0, rng)))
    return sorted(os.path.join(str(folder), os.fsdecode(n)) for n in names)


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:  # strict: the CSV stays valid UTF-8
        return list(csv.DictReader(f))


def test_a_non_utf8_file_name_round_trips_through_csv_json_and_resume(tmp_path, untrained_model):
    try:
        files = write_images(tmp_path / "in", [b"a.jpg", b"caf\xe9.jpg", b"\xff\xfe.jpg", b"z.jpg"])
    except (OSError, UnicodeError) as e:
        pytest.skip(f"this file system refuses a non-UTF-8 file name ({e})")
    out, js = tmp_path / "o.csv", tmp_path / "o.json"
    r = run_cli("predict", tmp_path / "in", "--model", untrained_model, "--csv", out, "--json", js, "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert len(csv_rows(out)) == 4 and already_scored(out) == {os.path.realpath(f) for f in files}
    assert sorted(row["source"] for row in json.loads(js.read_text())) == files
    r = run_cli("predict", tmp_path / "in", "--model", untrained_model, "--csv", out, "--json", js, "--resume",
                "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert len(csv_rows(out)) == 4 and len(json.loads(js.read_text())) == 4


ODD = ["new\nline.jpg", 'qu"ote.jpg', "=x.jpg", "'=x.jpg", "'plain.jpg", "back\\nslash.jpg", "cr\rname.jpg",
       "tab\tname.jpg", "@at.jpg"]


def test_odd_names_resume_after_a_partial_csv_without_loss_or_duplicates(tmp_path, untrained_model, monkeypatch):
    """Relative names, so that a cell starts with the name itself (a leading ' or = included)."""
    files = write_images(tmp_path / "in", ODD)
    monkeypatch.chdir(tmp_path / "in")
    out = tmp_path / "o.csv"
    r = run_cli("predict", *ODD[:5], "--model", untrained_model, "--csv", out, "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert already_scored(out) == {os.path.realpath(n) for n in ODD[:5]}
    r = run_cli("predict", *ODD, "--model", untrained_model, "--csv", out, "--resume", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert len(csv_rows(out)) == len(ODD) and already_scored(out) == {os.path.realpath(f) for f in files}


def test_a_row_torn_inside_a_name_with_a_newline_is_cut_cleanly(tmp_path, untrained_model):
    """A power cut mid-row: the torn row is dropped and rescored, the next rows are not swallowed."""
    files = write_images(tmp_path / "in", ["a.jpg", "b\nc.jpg", "d.jpg"])
    out = tmp_path / "o.csv"
    assert run_cli("predict", *files, "--model", untrained_model, "--csv", out, "--workers", "1").returncode == 0
    data = out.read_bytes()
    out.write_bytes(data[: data.index(b"c.jpg") + 2])  # torn just after the name's newline
    r = run_cli("predict", *files, "--model", untrained_model, "--csv", out, "--resume", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert len(csv_rows(out)) == 3 and already_scored(out) == {os.path.realpath(f) for f in files}


def saved_with(tmp_path, name="m.pt", config=None, weights=None):
    model = build_model(default_config("fast"))
    if weights is not None:
        with torch.no_grad():
            weights(model)
    path = tmp_path / name
    save_model(path, model)
    if config:
        obj = torch.load(path, weights_only=True)
        obj["config"].update(config)
        torch.save(obj, path)
    return path


BAD_CONFIGS = [
    ({"image_size": 5000}, "image_size 5000 is outside"),  # the 60000 took 6 GB before refusing
    ({"input_size": 0}, "input_size 0 is outside"),
    ({"options": {"crop": 3}}, "crop 3"),
    ({"mean": [0.5, 0.5]}, "mean"),
    ({"std": [0.2, 0.0, 0.2]}, "std"),
]


@pytest.mark.parametrize("config,message", BAD_CONFIGS)
def test_an_out_of_bounds_config_is_refused_by_predict(tmp_path, untrained_model, config, message):
    path = saved_with(tmp_path, config=config)
    folder = tmp_path / "in"
    write_images(folder, ["a.jpg"])
    one_line_error(run_cli("predict", folder, "--model", path, "--workers", "1"), message)


@pytest.mark.parametrize("config,message", BAD_CONFIGS[:2])
def test_an_out_of_bounds_config_is_refused_by_serve_at_start(tmp_path, config, message):
    from aivsreal.serve.app import create_app

    with pytest.raises(AivsrealError, match=message):
        create_app(saved_with(tmp_path, config=config), device="cpu")


def test_nan_weights_are_refused_by_serve_at_start(tmp_path):
    from aivsreal.serve.app import create_app

    path = saved_with(tmp_path, weights=lambda m: m.network[-1].weight.fill_(float("nan")))
    with pytest.raises(AivsrealError, match="non-finite"):
        create_app(path, device="cpu")


def test_a_model_file_with_a_corrupted_zip_member_is_refused(tmp_path):
    path = saved_with(tmp_path)
    with zipfile.ZipFile(path) as zf:
        member = max(zf.infolist(), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = (int.from_bytes(raw[member.header_offset + k: member.header_offset + k + 2], "little")
                           for k in (26, 28))
    start = member.header_offset + 30 + name_len + extra_len
    raw[start + member.file_size // 2] ^= 0x10  # one weight changes; the member's CRC no longer matches
    path.write_bytes(bytes(raw))
    folder = tmp_path / "in"
    write_images(folder, ["a.jpg"])
    one_line_error(run_cli("predict", folder, "--model", path, "--workers", "1"), "checksum")


def test_a_pickle_payload_is_refused_in_one_line_without_torch_warnings(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"x": 1}, buf)  # a real torch zip, then a payload (pickle protocol 4) in its pickle
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, pickle.dumps(Boom()) if item.filename.endswith("data.pkl") else zin.read(item))
    folder = tmp_path / "in"
    write_images(folder, ["a.jpg"])
    r = run_cli("predict", folder, "--model", path)
    one_line_error(r, "refused: it contains code")
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr


@pytest.fixture
def identical_data(tmp_path):
    """REAL and FAKE images that are one flat grey but for one pixel (distinct files, so that none is
    dropped as a duplicate): nothing tells the classes apart, so the trained model is constant."""
    from PIL import Image

    root = tmp_path / "same"
    k = 0
    for split, n in (("train", 24), ("test", 4)):
        for cls in ("REAL", "FAKE"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = np.full((32, 32, 3), 128, np.uint8)
                pixels[k // 32, k % 32] = 129
                k += 1
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("strict", [False, True])
def test_a_constant_model_is_warned_and_strict_fails(tmp_path, identical_data, strict):
    out = tmp_path / "run"
    r = run_cli("train", "--data", identical_data, "--out", out, "--epochs", "1", "--batch-size", "8",
                "--no-cache", "--val-fraction", "0.25", *(["--strict"] if strict else []))
    warned = [line for line in r.stderr.splitlines() if "constant model" in line]
    assert len(warned) == 1, r.stderr
    assert (out / "model.pt").is_file()
    if strict:
        one_line_error(r, "constant model")
    else:
        assert r.returncode == 0, r.stderr
