"""Hugging Face-style folders, the Hub path (offline, with a local snapshot), bundled detectors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_cli import one_line_error, run_cli

from aivsreal import Detector
from aivsreal.errors import AivsrealError
from aivsreal.models import hub
from aivsreal.models.hub import CARD, CONFIG, WEIGHTS, resolve_model


@pytest.fixture(scope="module")
def model_and_images(trained_run):
    data, run = trained_run
    return run / "model.pt", sorted((data / "test").rglob("*.jpg"))


def probs(det, images):
    return np.array([p.p_fake for p in det.predict(images)])


def test_save_pretrained_round_trip_is_exact(model_and_images, tmp_path):
    model, images = model_and_images
    det = Detector.load(model, device="cpu", precision="fp32")
    folder = det.save_pretrained(tmp_path / "shared")
    assert {p.name for p in folder.iterdir()} == {WEIGHTS, CONFIG, CARD}
    assert b"__reduce__" not in (folder / WEIGHTS).read_bytes()[:2000]  # safetensors: a JSON header, no pickle
    again = Detector.from_pretrained(folder, device="cpu", precision="fp32")
    assert np.array_equal(probs(det, images), probs(again, images))
    assert again.meta.domain.threshold == det.meta.domain.threshold and again.threshold == det.threshold
    card = (folder / CARD).read_text()
    assert card.startswith("---\nlibrary_name: aivsreal") and "## Domain" in card and "| test |" in card


def test_half_weights_are_half_the_size_and_change_no_verdict(model_and_images, tmp_path):
    model, images = model_and_images
    det = Detector.load(model, device="cpu", precision="fp32")
    full, half = det.save_pretrained(tmp_path / "full"), det.save_pretrained(tmp_path / "half", half=True)
    assert (half / WEIGHTS).stat().st_size < 0.6 * (full / WEIGHTS).stat().st_size
    p32, p16 = probs(det, images), probs(Detector.from_pretrained(half, device="cpu", precision="fp32"), images)
    assert np.abs(p32 - p16).max() < 1e-2 and np.array_equal(p32 >= 0.5, p16 >= 0.5)


def test_hub_repo_ids_download_through_huggingface_hub(model_and_images, tmp_path, monkeypatch):
    """Offline: snapshot_download is pointed at a local snapshot folder, as the Hub cache would hold it."""
    import huggingface_hub

    model, images = model_and_images
    snapshot = Detector.load(model, device="cpu").save_pretrained(tmp_path / "snapshot")
    asked = []

    def fake_download(repo_id, allow_patterns=None, **_):
        asked.append((repo_id, tuple(allow_patterns)))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    det = Detector.from_pretrained("someone/aivsreal-detector", device="cpu")
    assert asked == [("someone/aivsreal-detector", (WEIGHTS, CONFIG, CARD))]
    assert len(det.predict(images[:3])) == 3

    def offline(*_, **__):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(AivsrealError, match="cannot fetch 'someone/other' from the Hugging Face Hub"):
        Detector.from_pretrained("someone/other")


def test_export_hf_and_damaged_folders_are_one_line_errors(model_and_images, tmp_path):
    model, _ = model_and_images
    r = run_cli("export", "--model", model, "--format", "hf", "--out", tmp_path / "hf")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hf" / WEIGHTS).is_file()
    r = run_cli("models", tmp_path / "hf")
    assert r.returncode == 0 and "## Domain" in r.stdout

    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "hf", broken)
    (broken / WEIGHTS).write_bytes(b"not safetensors")
    one_line_error(run_cli("predict", model, "--model", broken), "unreadable")
    config = json.loads((tmp_path / "hf" / CONFIG).read_text())
    (broken / WEIGHTS).write_bytes((tmp_path / "hf" / WEIGHTS).read_bytes())
    (broken / CONFIG).write_text(json.dumps({**config, "format_version": 99}))
    one_line_error(run_cli("predict", model, "--model", broken), "upgrade aivsreal")
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("predict", model, "--model", tmp_path / "empty"), "without config.json")
    one_line_error(run_cli("predict", model, "--model", "no-such-detector"), "no model 'no-such-detector'")
    one_line_error(run_cli("predict", model, "--model", tmp_path / "runs" / "gone"), "not found")
    (tmp_path / "runs").mkdir()
    r = subprocess.run([sys.executable, "-m", "aivsreal", "predict", str(model), "--model", "runs/gone"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    one_line_error(r, "model file runs/gone not found")  # a local-looking path is never sent to the Hub


def test_model_references_resolve_in_order(model_and_images, tmp_path):
    model, _ = model_and_images
    assert resolve_model(model).kind == "file" and resolve_model(model).run_dir == model.parent
    folder = Detector.load(model, device="cpu").save_pretrained(tmp_path / "f")
    assert resolve_model(folder).kind == "folder"
    for name in hub.bundled_names():
        source = resolve_model(name)
        assert source.kind == "bundled" and source.run_dir.parts[0] == "runs"  # outputs never go into the package


def test_the_bundled_detector_needs_no_training(tmp_path):
    """A fresh install: predict with no --model, `models`, and Detector.load() all use the bundled cifake."""
    from conftest import jpeg_bytes, synthetic_image

    assert "cifake" in hub.bundled_names()
    image = tmp_path / "x.jpg"
    image.write_bytes(jpeg_bytes(synthetic_image(0, np.random.default_rng(0))))
    big = tmp_path / "photo.jpg"
    big.write_bytes(jpeg_bytes(np.full((600, 800, 3), 90, np.uint8)))
    r = run_cli("predict", image, big)
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()[1:]]
    assert rows[0][1] in ("REAL", "FAKE") and (rows[0][3] == "in" or rows[0][3].startswith("OUT"))
    assert rows[1][3].startswith("OUT: image is 800x600 px")
    listing = run_cli("models")
    assert listing.returncode == 0 and "| cifake (default) | fast | CIFAKE (32x32) |" in listing.stdout
    card = run_cli("models", "cifake").stdout
    assert "## Intended use" in card and "## Reproduce" in card and "## Domain" in card
    det = Detector.load(device="cpu")
    assert det.name == "fast" and det.meta.domain is not None
    assert det.meta.summary["metrics"]["test"]["accuracy"] > 0.97


def test_the_bundled_detector_on_real_cifake_test_images(tmp_path):
    """Where ../shared holds CIFAKE: its test images are in the bundled detector's domain and mostly right."""
    import zipfile

    from conftest import SHARED_CIFAKE

    if not (SHARED_CIFAKE / "test.zip").exists():
        pytest.skip("no CIFAKE copy beside the repository")
    with zipfile.ZipFile(SHARED_CIFAKE / "test.zip") as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))[::200][:100]
        blobs = [zf.read(n) for n in names]
    labels = np.array(["/FAKE/" in n for n in names])
    preds = Detector.load(device="cpu").predict(blobs)
    assert np.mean([p.in_domain for p in preds]) >= 0.95
    assert np.mean([(p.label == "FAKE") == y for p, y in zip(preds, labels, strict=True)]) >= 0.93
