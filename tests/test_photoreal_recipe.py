"""The data recipe: labels measured from snapshots, images extracted byte for byte and refused on a wrong sha1."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks" / "photoreal"))
import build_labels  # noqa: E402
import extract  # noqa: E402

HEADER = "source\tcls\tgenerator\tfamily\trepo\tcommit\tpath\tout_name\tcrop\tnote\tcontent\n"


def encoded(fmt: str, size: tuple[int, int], seed: int, **kw) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def mirror(tmp_path):
    """A bare snapshot of owner/pics holding a camera-like JPEG, a render PNG and a 2x1 grid."""
    work = tmp_path / "work"
    work.mkdir()
    files = {"photo.jpg": encoded("JPEG", (64, 48), 0, quality=75), "render.png": encoded("PNG", (40, 40), 1),
             "grid.png": encoded("PNG", (64, 32), 2)}
    for name, data in files.items():
        (work / name).write_bytes(data)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "pics"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    root = tmp_path / "mirror"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(root / "owner+pics" / "repo")], check=True)
    return root, commit, files


def manifest(tmp_path, commit, rows) -> Path:
    path = tmp_path / "manifest.tsv"
    path.write_text(HEADER + "".join("\t".join([r[0], r[1], r[2], r[3], "owner/pics", commit, r[4], r[5], r[6],
                                                  "note", r[7]]) + "\n" for r in rows))
    return path


def build(tmp_path, mirror_dir, commit, rows, capsys) -> tuple[int, list[dict], str]:
    code = build_labels.main(["--mirror", str(mirror_dir), str(manifest(tmp_path, commit, rows))])
    captured = capsys.readouterr()
    return code, list(csv.DictReader(io.StringIO(captured.out))) if code == 0 else [], captured.err


ROWS = [("cam", "REAL", "-", "real", "photo.jpg", "cam_1.jpg", "-", "urban"),
        ("gen", "FAKE", "FLUX.1-dev", "FLUX", "render.png", "FLUX__a.png", "-", "animal"),
        ("gen", "FAKE", "SDXL", "SDXL", "grid.png", "SDXL__tile.png", "32,0,64,32", "food")]


def test_labels_are_measured_from_the_snapshot(mirror, tmp_path, capsys):
    root, commit, files = mirror
    code, labels, _ = build(tmp_path, root, commit, ROWS, capsys)
    assert code == 0 and [r["relpath"] for r in labels] == ["cam/REAL/cam_1.jpg", "gen/FAKE/FLUX__a.png",
                                                             "gen/FAKE/SDXL__tile.png"]
    photo, render, tile = labels
    assert (photo["format"], photo["width"], photo["height"], photo["jpeg_quality"], photo["jpeg_q_match"]) == \
        ("JPEG", "64", "48", "75", "ijg")
    assert photo["sha1"] == hashlib.sha1(files["photo.jpg"]).hexdigest() and photo["content"] == "urban"
    assert (render["format"], render["bytes"], render["chroma"]) == ("PNG", str(len(files["render.png"])), "")
    assert (tile["width"], tile["height"], tile["crop"]) == ("32", "32", "32,0,64,32")


@pytest.mark.parametrize("bad", [("content", "portrait"), ("cls", "AI"), ("duplicate", None)])
def test_labels_refuse_unknown_tags_and_repeated_images(mirror, tmp_path, capsys, bad):
    root, commit, _ = mirror
    rows = [list(r) for r in ROWS]
    if bad[0] == "content":
        rows[0][7] = bad[1]
    elif bad[0] == "cls":
        rows[0][1] = bad[1]
    else:
        rows.append([*rows[1][:5], "FLUX__same_bytes.png", "-", "animal"])
    code, _, err = build(tmp_path, root, commit, [tuple(r) for r in rows], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")


def test_extract_writes_byte_for_byte_and_refuses_a_wrong_sha1(mirror, tmp_path, capsys):
    root, commit, files = mirror
    _, labels, _ = build(tmp_path, root, commit, ROWS, capsys)
    labels[1]["sha1"] = "0" * 40  # the snapshot's render.png is not the file the labels describe
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(labels[0]))
        writer.writeheader()
        writer.writerows(labels)
    out = tmp_path / "out"
    assert extract.main(["--mirror", str(root), "--out", str(out), str(path)]) == 2
    err = capsys.readouterr().err
    assert "gen/FAKE/FLUX__a.png: sha1" in err and "not written" in err
    assert (out / "cam/REAL/cam_1.jpg").read_bytes() == files["photo.jpg"]
    assert not (out / "gen/FAKE/FLUX__a.png").exists() and not list(out.rglob("*.part"))
    tile = Image.open(out / "gen/FAKE/SDXL__tile.png")
    grid = Image.open(io.BytesIO(files["grid.png"]))
    assert np.array_equal(np.asarray(tile), np.asarray(grid)[:, 32:])  # cut losslessly

    labels[1]["sha1"] = hashlib.sha1(files["render.png"]).hexdigest()
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(labels[0]))
        writer.writeheader()
        writer.writerows(labels)
    (out / "cam/REAL/cam_1.jpg").write_bytes(b"damaged")  # a damaged copy is replaced, a good one kept
    assert extract.main(["--mirror", str(root), "--out", str(out), str(path)]) == 0
    assert (out / "gen/FAKE/FLUX__a.png").read_bytes() == files["render.png"]
    assert (out / "cam/REAL/cam_1.jpg").read_bytes() == files["photo.jpg"]


def test_extract_names_a_missing_snapshot(tmp_path, capsys):
    path = tmp_path / "labels.csv"
    path.write_text("relpath,repo,commit,orig_path,crop,sha1\nx/REAL/a.jpg,nobody/none," + "1" * 40
                    + ",a.jpg,-," + "2" * 40 + "\n")
    assert extract.main(["--mirror", str(tmp_path), "--out", str(tmp_path / "o"), str(path)]) == 2
    assert "no snapshot of nobody/none (bring github:nobody/none)" in capsys.readouterr().err
