"""`predict` on zips, path lists and fsspec URLs (data/inputs.py), with the default engine; the Ray engine's
rows on the same inputs are compared in test_ray_engine.py."""

import csv
import importlib.util
import os
import zipfile
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from conftest import jpeg_bytes, synthetic_image

from aivsreal.cli import main
from aivsreal.data import images, inputs
from aivsreal.data.inputs import expand_inputs, resolved
from aivsreal.predict.batch import read_cell, score_to_csv
from aivsreal.predict.detector import Detector

HAVE_FSSPEC = importlib.util.find_spec("fsspec") is not None


def image(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return jpeg_bytes(synthetic_image(seed % 2, rng))


def predict_rows(tmp_path: Path, *args: str) -> tuple[int, list[dict]]:
    """Exit code and CSV rows (cells read back) of `predict ARGS` on the bundled detector, in this process."""
    out = tmp_path / "scores.csv"
    code = main(["predict", *args, "--csv", str(out), "-q", "--device", "cpu", "--workers", "1"])
    with open(out, newline="") as f:
        rows = [{k: read_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return code, rows


def p_fake_of(data: bytes, tmp_path: Path) -> float:
    """P(fake) of the same bytes as a plain file: a member or URL must be scored from exactly its bytes."""
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(data)
    return Detector.load("cifake", device="cpu").predict([plain])[0].p_fake


def test_a_zip_is_scored_member_by_member_and_a_broken_one_is_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_FILE_BYTES", 50_000)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 50_000)
    archive = tmp_path / "in.zip"
    members = {"a/one.jpg": image(1), "../up.jpg": image(2), "/abs.jpg": image(3), "broken.jpg": b"not an image",
               "notes.txt": b"not listed", "bomb.png": bytes(60_000)}  # inflates past the limit
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    code, rows = predict_rows(tmp_path, str(archive), str(tmp_path / "bad.zip"))
    assert code == 0
    assert [r["path"] for r in rows] == [f"{archive}!{n}" for n in members if n != "notes.txt"] + \
        [str(tmp_path / "bad.zip")]  # the zip's own order; a corrupt zip is one row
    by_name = {r["path"].split("!")[-1]: r for r in rows}
    for name in ("a/one.jpg", "../up.jpg", "/abs.jpg"):
        assert by_name[name]["error"] == ""
        assert float(by_name[name]["p_fake"]) == pytest.approx(p_fake_of(members[name], tmp_path), abs=1e-6)
    assert "not a readable image" in by_name["broken.jpg"]["error"]
    assert "over the 50,000-byte limit" in by_name["bomb.png"]["error"]
    assert "not a readable zip file" in by_name[str(tmp_path / "bad.zip")]["error"]
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before  # nothing extracted beside it
    assert not (tmp_path / "a").exists()


def test_a_path_list_names_files_zips_and_folders_and_a_missing_line_is_a_row(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "one.jpg").write_bytes(image(1))
    (data / "sub" / "two.jpg").write_bytes(image(2))
    with zipfile.ZipFile(data / "more.zip", "w") as zf:
        zf.writestr("three.jpg", image(3))
    (data / "list.txt").write_text(f"one.jpg\n\nmissing.jpg\n{data / 'sub'}\nmore.zip\nmore.zip!three.jpg\r\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative lines are relative to the list, not to the working folder
    code, rows = predict_rows(tmp_path, str(data / "list.txt"))
    assert code == 0
    assert [r["path"] for r in rows] == [str(data / "one.jpg"), str(data / "missing.jpg"),
                                         str(data / "sub" / "two.jpg"), f"{data / 'more.zip'}!three.jpg",
                                         f"{data / 'more.zip'}!three.jpg"]
    assert [bool(r["error"]) for r in rows] == [False, True, False, False, False]
    assert "cannot read" in rows[1]["error"]
    assert rows[3]["p_fake"] == rows[4]["p_fake"] != rows[0]["p_fake"]


def test_a_missing_list_or_zip_on_the_command_line_is_one_line(tmp_path, capsys):
    for missing, said in ((tmp_path / "nope.txt", "no such file or folder"),
                          (tmp_path / "no.zip!x.jpg", "no such zip")):
        assert main(["predict", str(missing), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err


@pytest.mark.skipif(not HAVE_FSSPEC, reason="fsspec is not installed (it comes with huggingface_hub and the ray extra)")
def test_an_fsspec_url_is_listed_and_read(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"memory://{tmp_path.name}"  # the in-memory file system is one per process: a name of its own
    fs.pipe({f"{root}/d/a.jpg": image(1), f"{root}/d/s/b.jpg": image(2), f"{root}/d/broken.jpg": b"junk",
             f"{root}/d/notes.md": b"not an image"})
    with zipfile.ZipFile(tmp_path / "u.zip", "w") as zf:
        zf.writestr("c.jpg", image(3))
    fs.pipe(f"{root}/u.zip", (tmp_path / "u.zip").read_bytes())
    try:
        code, rows = predict_rows(tmp_path, f"{root}/d", f"{root}/u.zip")
    finally:
        fs.rm(f"{root}", recursive=True)
    assert code == 0
    assert [r["path"] for r in rows] == [f"{root}/d/a.jpg", f"{root}/d/broken.jpg", f"{root}/d/s/b.jpg",
                                         f"{root}/u.zip!c.jpg"]
    assert "not a readable image" in rows[1]["error"]
    assert float(rows[0]["p_fake"]) == pytest.approx(p_fake_of(image(1), tmp_path), abs=1e-6)
    assert float(rows[3]["p_fake"]) == pytest.approx(p_fake_of(image(3), tmp_path), abs=1e-6)
    assert [resolved(r["path"]) for r in rows] == [r["path"] for r in rows]  # a URL is its own resume key


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed: this would go online")
def test_an_s3_url_without_s3fs_is_one_line(capsys):
    assert main(["predict", "s3://bucket/photos/", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s3fs" in err[0], err


def test_resume_on_a_zip_writes_every_member_once(tmp_path, monkeypatch):
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(7):
            zf.writestr(f"d/{i}.jpg", image(i))
        zf.writestr("d/broken.jpg", b"junk")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "scores.csv"
    run = score_to_csv(Detector.load("cifake", device="cpu"), expand_inputs(["in.zip"]), out, batch_size=2,
                       workers=1)
    assert len(list(islice(run, 3))) == 3
    run.close()  # killed after three rows; the rerun spells the zip another way
    assert main(["predict", str(archive), "--csv", str(out), "--resume", "-q", "--device", "cpu",
                 "--workers", "1"]) == 0
    with open(out, newline="") as f:
        written = [read_cell(r["path"]) for r in csv.DictReader(f)]
    members = zipfile.ZipFile(archive).namelist()
    assert Counter(resolved(p) for p in written) == Counter(resolved(f"{archive}!{n}") for n in members)
    assert written[:3] == [f"in.zip!d/{i}.jpg" for i in range(3)] and os.path.isabs(written[3])


def test_a_store_that_refuses_is_one_line_on_the_command_line_and_a_row_in_a_list(tmp_path, monkeypatch, capsys):
    class Denied:  # a bucket this machine may not read, in the words of the store's own package
        def isdir(self, path):
            raise PermissionError(13, "Access Denied")

        exists = size = open = find = isdir

    monkeypatch.setattr(inputs, "url_fs", lambda url: (Denied(), url.split("://", 1)[1]))
    assert main(["predict", "s3://bucket/photos", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["aivsreal: error: s3://bucket/photos: cannot list (Access Denied)"]
    (tmp_path / "one.jpg").write_bytes(image(1))
    (tmp_path / "list.txt").write_text("s3://bucket/x.jpg\none.jpg\n")
    code, rows = predict_rows(tmp_path, str(tmp_path / "list.txt"))
    assert code == 0 and [r["path"] for r in rows] == ["s3://bucket/x.jpg", str(tmp_path / "one.jpg")]
    assert rows[0]["error"] == "s3://bucket/x.jpg: cannot read (Access Denied)" and rows[1]["label"]
