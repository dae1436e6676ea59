"""Hostile inputs to the batch jobs (issue 11): each is one bad file or one clear line, and nothing is lost."""

from __future__ import annotations

import csv
import json
import os
import zipfile

import numpy as np
import pytest
import torch
from conftest import jpeg_bytes, make_dataset, synthetic_image
from test_cli import one_line_error, run_cli

from aivsreal.data.crops import read_views
from aivsreal.data.images import MAX_FILE_BYTES, BadImageError
from aivsreal.data.sources import find_splits
from aivsreal.models import build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.predict.batch import safe_cell, truncate_torn_line


def images_folder(root, n=3):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / f"{i}.jpg").write_bytes(jpeg_bytes(synthetic_image(i % 2, rng)))
    return root


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_fifo_is_skipped_not_read(tmp_path, untrained_model):
    folder = images_folder(tmp_path / "in")
    os.mkfifo(folder / "x.jpg")  # reading it would block forever
    with pytest.raises(BadImageError, match="not a regular file"):
        read_views(folder / "x.jpg", 32)
    r = run_cli("predict", folder, "--model", untrained_model, "--workers", "1")
    assert r.returncode == 0 and "not a regular file" in r.stdout and r.stdout.count("\tREAL\t") + \
        r.stdout.count("\tFAKE\t") == 3


def test_a_fifo_in_training_data_is_skipped(tmp_path):
    data = make_dataset(tmp_path / "d", {"train": 4, "test": 2})
    os.mkfifo(data / "train" / "REAL" / "pipe.jpg")
    assert all(not ref.name.endswith("pipe.jpg") for ref in find_splits(data)["train"].refs)


def test_an_oversized_zip_member_is_refused_before_reading(tmp_path):
    from aivsreal.data.cache import load_split

    data = make_dataset(tmp_path / "d", {"train": 4, "test": 2})
    zpath = tmp_path / "data.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(data.rglob("*.jpg")):
            zf.write(p, p.relative_to(data).as_posix())
        zf.writestr("train/REAL/bomb.jpg", b"\0" * (MAX_FILE_BYTES + 10))  # compresses to ~70 KB
    split = find_splits(zpath)["train"]
    decoded = load_split(split, 32, None, workers=1)
    assert len(decoded) == 8 and any("bomb.jpg" in s and "byte limit" in s for s in decoded.skipped)


@pytest.mark.parametrize("args,message", [
    (("--batch-size", "0"), "--batch-size: 0 must be >= 1"),
    (("--batch-size", "-3"), "--batch-size: -3 must be >= 1"),
    (("--workers", "0"), "--workers: 0 must be >= 1"),
    (("--threshold", "nan"), "not a finite number"),
])
def test_numeric_options_are_validated(tmp_path, untrained_model, args, message):
    folder = images_folder(tmp_path / "in")
    one_line_error(run_cli("predict", folder, "--model", untrained_model, *args), message)


def test_outputs_into_missing_or_read_only_folders_are_one_line_errors(tmp_path, untrained_model):
    folder = images_folder(tmp_path / "in")
    one_line_error(run_cli("predict", folder, "--model", untrained_model, "--csv", tmp_path / "nope" / "o.csv"),
                   "does not exist")
    one_line_error(run_cli("predict", folder, "--model", untrained_model, "--json", tmp_path / "nope" / "o.json"),
                   "does not exist")
    one_line_error(run_cli("predict", folder, "--model", untrained_model, "--csv", folder), "is a folder")


def test_resume_truncates_a_torn_line_and_matches_resolved_paths(tmp_path, untrained_model):
    folder = images_folder(tmp_path / "in", n=4)
    out = tmp_path / "o.csv"
    model = untrained_model
    assert run_cli("predict", folder / "0.jpg", folder / "1.jpg", "--model", model, "--csv", out).returncode == 0
    with open(out, "a") as f:
        f.write(f"{folder / '2.jpg'},FA")  # a row torn by a power cut
    rel = os.path.relpath(folder / "0.jpg")  # the same file, spelled differently
    r = run_cli("predict", rel, folder / "2.jpg", folder / "3.jpg", "--model", model, "--csv", out, "--resume")
    assert r.returncode == 0, r.stderr
    got = rows(out)
    assert [os.path.basename(row["path"]) for row in got] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert all(row["label"] in ("REAL", "FAKE") for row in got)


def test_truncate_torn_line_keeps_complete_rows(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,2\n3,")
    truncate_torn_line(path)
    assert path.read_bytes() == b"a,b\n1,2\n"
    truncate_torn_line(path)
    assert path.read_bytes() == b"a,b\n1,2\n"


def test_json_resume_keeps_earlier_rows(tmp_path, untrained_model):
    folder = images_folder(tmp_path / "in", n=3)
    out, js = tmp_path / "o.csv", tmp_path / "o.json"
    model = untrained_model
    assert run_cli("predict", folder / "0.jpg", "--model", model, "--csv", out, "--json", js).returncode == 0
    assert run_cli("predict", folder, "--model", model, "--csv", out, "--json", js, "--resume").returncode == 0
    assert sorted(os.path.basename(r["source"]) for r in json.loads(js.read_text())) == ["0.jpg", "1.jpg", "2.jpg"]


def test_dangling_symlink_is_an_error_row(tmp_path, untrained_model):
    folder = images_folder(tmp_path / "in", n=1)
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    r = run_cli("predict", folder / "0.jpg", tmp_path / "gone.jpg", "--model", untrained_model)
    assert r.returncode == 0 and "gone.jpg\tERROR\t" in r.stdout


def test_formula_cells_are_neutralised_and_odd_names_keep_the_table(tmp_path, untrained_model):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("=cmd.jpg", "tab\tname.jpg", "new\nline.jpg"):
        (folder / name).write_bytes(jpeg_bytes(synthetic_image(0, rng)))
    out = tmp_path / "o.csv"
    r = run_cli("predict", folder, "--model", untrained_model, "--csv", out)
    assert r.returncode == 0
    table = r.stdout.strip().splitlines()
    assert len(table) == 4 and all(line.count("\t") == 3 for line in table)
    assert safe_cell("=SUM(A1)") == "'=SUM(A1)" and safe_cell("@x") == "'@x" and safe_cell("a=b") == "a=b"
    assert len(rows(out)) == 3


def test_relative_formula_path_is_neutralised(tmp_path, untrained_model):
    rng = np.random.default_rng(0)
    (tmp_path / "=cmd.jpg").write_bytes(jpeg_bytes(synthetic_image(0, rng)))
    out = tmp_path / "o.csv"
    r = run_cli_in(tmp_path, "predict", "=cmd.jpg", "--model", untrained_model, "--csv", out)
    assert r.returncode == 0, r.stderr
    assert rows(out)[0]["path"] == "'=cmd.jpg"


def run_cli_in(cwd, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "aivsreal", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_nan_weights_are_refused(tmp_path):
    model = build_model(default_config("fast"))
    with torch.no_grad():
        model.network[-1].weight.fill_(float("nan"))
    path = tmp_path / "nan.pt"
    save_model(path, model)
    folder = images_folder(tmp_path / "in", n=1)
    one_line_error(run_cli("predict", folder, "--model", path), "non-finite")


@pytest.mark.parametrize("change,message", [
    ({"threshold": "high"}, "threshold is not a number"),
    ({"format_version": "1"}, "not a whole number"),
    ({"config": None}, "no config"),
])
def test_damaged_model_metadata_is_one_line(tmp_path, change, message):
    path = tmp_path / "m.pt"
    save_model(path, build_model(default_config("fast")))
    obj = torch.load(path, weights_only=True)
    obj.update(change)
    torch.save(obj, path)
    one_line_error(run_cli("predict", images_folder(tmp_path / "in", n=1), "--model", path), message)


def test_unknown_extra_config_key_still_loads(tmp_path):
    from aivsreal.models.hub import load_model

    path = tmp_path / "m.pt"
    save_model(path, build_model(default_config("fast")))
    obj = torch.load(path, weights_only=True)
    obj["config"]["added_in_a_later_version"] = 1
    obj["another_new_key"] = {"x": 1}
    torch.save(obj, path)
    assert load_model(path)[0].config.name == "fast"


def test_too_few_images_for_a_validation_split_is_one_line_before_training(tmp_path):
    """6 per class: 1 test image each, then 10% of 5 rounds to no validation image of either class."""
    data = make_dataset(tmp_path, {"data": 6}) / "data"  # data/REAL, data/FAKE: the user's own folders
    result = run_cli("train", "--data", data, "--out", tmp_path / "run", "--epochs", "1", "--batch-size", "4",
                     "--no-cache")
    one_line_error(result, "--val-fraction")
    assert "0 REAL and 0 FAKE" in result.stderr and not (tmp_path / "run" / "model.pt").exists()
