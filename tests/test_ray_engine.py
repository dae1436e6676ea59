"""`predict --engine ray` against the default engine, on a local Ray of 2 CPUs started and stopped here."""

import importlib.util
import io
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import zip_folder
from PIL import Image

from aivsreal.cli import main
from aivsreal.data.images import MAX_PIXELS
from aivsreal.data.inputs import expand_inputs
from aivsreal.predict.batch import score_paths
from aivsreal.predict.spec import DetectorSpec

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="the `ray` extra is not installed (pip install 'aivsreal[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def png(path: Path, width: int, height: int, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def mixed_folder(root: Path, n: int = 10, sizes=((32, 32), (48, 40))) -> Path:
    """n images of a few sizes (JPEG and PNG), and three broken files among them."""
    root.mkdir()
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        png(root / f"img{i:02d}.png", w, h, i)
        if i % 3 == 0:
            buf = io.BytesIO()
            Image.open(root / f"img{i:02d}.png").save(buf, format="JPEG", quality=85)
            (root / f"img{i:02d}.jpg").write_bytes(buf.getvalue())
    (root / "broken.jpg").write_bytes(b"not an image at all")
    (root / "empty.png").write_bytes(b"")
    (root / "truncated.png").write_bytes((root / "img00.png").read_bytes()[:60])
    return root


def add_hostile(folder: Path) -> set[str]:
    """Files built to hang, crash or mislead a reader, and images with names that break naive CSVs
    (newline, tab, formula, not UTF-8); returns the hostile files' names (the rest are images)."""
    for i, name in enumerate(["new\nline.png", "=cmd|' -C calc'!A0.png", "tab\tname.png"]):
        png(folder / name, 32, 32, 100 + i)
    png(Path(os.fsdecode(os.fsencode(str(folder)) + b"/latin1-\xe9.png")), 32, 32, 200)
    os.mkfifo(folder / "pipe.jpg")  # reading it would block forever
    os.symlink(folder / "nowhere.png", folder / "dangling.png")
    (folder / "eps.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")  # Ghostscript
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    header = bytearray(buf.getvalue())
    header[16:24] = (int(MAX_PIXELS**0.5) + 100).to_bytes(4, "big") * 2  # IHDR: over the pixel limit
    (folder / "bomb.png").write_bytes(bytes(header))
    return {"pipe.jpg", "dangling.png", "eps.jpg", "bomb.png"}


def rows_by_path(preds) -> dict:
    out = {}
    for p in preds:
        assert p.source not in out, f"{p.source} twice"
        out[p.source] = p
    return out


def assert_same_rows(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    for path, a in ours.items():
        b = theirs[path]
        assert (a.label, a.error, a.in_domain, a.domain_reason) == \
            (b.label, b.error, b.in_domain, b.domain_reason), path
        if a.p_fake is None:
            assert b.p_fake is None, path
        else:
            assert abs(a.p_fake - b.p_fake) <= 1e-6, path
            assert a.domain_score == pytest.approx(b.domain_score, abs=1e-4), path


def test_engine_ray_without_the_extra_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as in a base install
    folder = mixed_folder(tmp_path / "in", n=2)
    assert main(["predict", str(folder), "--engine", "ray", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["aivsreal: error: --engine ray needs Ray: pip install 'aivsreal[ray]'"]
    assert not (tmp_path / "out").exists()


def test_ray_only_options_are_refused_by_the_local_engine(tmp_path, capsys):
    folder = mixed_folder(tmp_path / "in", n=1)
    assert main(["predict", str(folder), "--actors", "2"]) == 2
    assert "--engine ray" in capsys.readouterr().err


def packed(folder: Path) -> list[str]:
    """The folder as other inputs name it: a zip of its files, and a path list of two of them (one by a
    file:// URL) and of a file that does not exist."""
    archive = zip_folder(folder, folder.parent / "in.zip")
    listed = folder.parent / "list.txt"
    listed.write_text(f"in/img01.png\n{(folder / 'img02.png').as_uri()}\nin/missing.png\n")
    return [str(archive), str(listed)]


@needs_ray
@pytest.mark.parametrize("model,sizes,pack", [("cifake", ((32, 32), (48, 40)), False),
                                              ("wild", ((240, 230), (500, 260), (180, 200)), False),
                                              ("cifake", ((32, 32), (48, 40)), True)],
                         ids=["cifake", "wild", "cifake-zip-list"])
def test_same_rows_as_the_default_engine(local_ray, tmp_path, model, sizes, pack):
    from aivsreal.predict.ray_engine import all_rows, score_on_ray, write_csv

    folder = mixed_folder(tmp_path / "in", n=10 if model == "cifake" else 5, sizes=sizes)
    hostile = add_hostile(folder) if model == "cifake" and not pack else set()
    inputs = packed(folder) if pack else [str(folder)]
    spec = DetectorSpec(model, device="cpu")
    paths = list(expand_inputs(inputs))
    default = rows_by_path(score_paths(spec.load(), paths, batch_size=8, workers=1))
    streamed = rows_by_path(score_on_ray(spec, paths, tmp_path / "out", actors=2, batch_size=3, shard_rows=4))
    assert_same_rows(streamed, default)
    assert_same_rows(rows_by_path(all_rows(tmp_path / "out")), default)  # what the shards hold, read back
    errors = {os.path.basename(p).split("!")[-1] for p, r in streamed.items() if r.error is not None}
    assert errors == {"broken.jpg", "empty.png", "truncated.png"} | hostile | ({"missing.png"} if pack else set())
    if pack:  # members, a file:// URL and list lines: the zip's own images are all there
        assert sum("in.zip!" in p for p in paths) == len(list(folder.iterdir()))
        assert any(p.startswith("file://") and streamed[p].error is None for p in paths)
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) >= 2 and sum(e["rows"] for e in manifest) == len(paths)
    assert {e["model"] for e in manifest} == {model}
    if model == "cifake":  # the CSV on request is the default engine's CSV, row for row
        assert main(["predict", *inputs, "--csv", str(tmp_path / "local.csv"), "--batch-size", "8", "-q",
                     "--device", "cpu"]) == 0
        write_csv(tmp_path / "out", tmp_path / "ray.csv")
        local, ray_csv = ((tmp_path / f).read_text().splitlines() for f in ("local.csv", "ray.csv"))
        assert local[0] == ray_csv[0] and sorted(local[1:]) == sorted(ray_csv[1:])


@needs_ray
def test_a_killed_run_resumed_gives_every_input_once(local_ray, tmp_path):
    from aivsreal.predict.ray_engine import MANIFEST, SHARDS, all_rows, score_on_ray

    folder = mixed_folder(tmp_path / "in", n=16)
    paths = list(expand_inputs([str(folder)]))
    spec, out = DetectorSpec("cifake", device="cpu"), tmp_path / "out"
    run = score_on_ray(spec, paths, out, actors=2, batch_size=2, shard_rows=5)
    first = [next(run) for _ in range(5)]  # one shard committed ...
    run.close()  # ... then the job stops
    shards = out / SHARDS
    assert len(list(shards.iterdir())) == 1
    # what a kill at the worst moments leaves: a shard renamed into place but not yet in the manifest
    # (it repeats the committed rows), a temporary file, and a torn manifest line
    committed_shard = next(shards.iterdir())
    (shards / "part-000001.parquet").write_bytes(committed_shard.read_bytes())
    (shards / ".part-000002.parquet.x.tmp").write_bytes(b"half")
    with open(out / MANIFEST, "a") as f:
        f.write('{"shard": "part-0000')
    rest = list(score_on_ray(spec, paths, out, actors=2, batch_size=2, shard_rows=5))
    assert len(first) + len(rest) == len(paths)
    assert not {p.source for p in first} & {p.source for p in rest}
    assert Counter(p.source for p in all_rows(out)) == Counter(paths)  # every input exactly once
    assert list(score_on_ray(spec, paths, out)) == []  # a third run has nothing left to do
