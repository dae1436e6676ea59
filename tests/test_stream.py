"""Training on images of any size read from disk (`train --crop N`): bounded memory, native views,
the same views for any worker count, and the whole verb from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aivsreal.cli import main
from aivsreal.data.sources import find_splits
from aivsreal.data.stream import CentreCrops
from aivsreal.predict.detector import Detector
from aivsreal.train.augment import CodecChain
from aivsreal.train.batches import training_views


def large_images(folder: Path, n: int, side: int, seed: int = 0) -> list[Path]:
    """Big JPEGs that compress well (a gradient plus mild noise), so they are quick to write."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, side, dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        px = ramp[None, :, None] + ramp[:, None, None] * 0.2 + rng.integers(0, 40, (1, 1, 3))
        px = np.clip(px + rng.normal(0, 3, (side, side, 1)), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i}.jpg")
        Image.fromarray(np.repeat(px, 3, 2) if px.shape[2] == 1 else px).save(paths[-1], quality=85)
    return paths


def crops_of(folder: Path, crop: int) -> CentreCrops:
    split = find_splits(folder)["all"]
    return CentreCrops(split.refs, crop)


def test_memory_stays_bounded_over_an_epoch_of_large_images(tmp_path):
    """16 images of 2400x2400 decode to 276 MB; one epoch of views must not grow the process by even a
    third of that (holding the decoded images, or a cache of them, would)."""
    large_images(tmp_path / "d" / "REAL", 8, 2400)
    large_images(tmp_path / "d" / "FAKE", 8, 2400, seed=1)
    script = textwrap.dedent(f"""
        import json, resource, torch
        from aivsreal.data.sources import find_splits
        from aivsreal.data.stream import CentreCrops
        from aivsreal.train.augment import CodecChain
        from aivsreal.train.batches import training_views
        refs = find_splits({str(tmp_path / "d")!r})["all"].refs
        images = CentreCrops(refs, 224)
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        batches = training_views(images, torch.arange(16), 2, 0, CodecChain(), 0, workers=0)
        next(batches)
        first = peak()
        n = 1 + sum(1 for _ in batches)
        evaluated = images[:].shape  # the evaluation path too, all at once: only crops are kept
        print(json.dumps({{"first": first, "end": peak(), "batches": n, "evaluated": list(evaluated)}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["batches"] == 8 and r["evaluated"] == [16, 224, 224, 3]
    decoded_total_mb = 16 * 2400 * 2400 * 3 / 2**20
    assert r["end"] - r["first"] < decoded_total_mb / 3, r


def test_views_are_native_crops_a_checkerboard_survives(tmp_path):
    board = ((np.indices((300, 500)).sum(0) % 2) * 255).astype(np.uint8)
    for cls in ("REAL", "FAKE"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.repeat(board[..., None], 3, 2)).save(tmp_path / cls / "board.png")
    images = crops_of(tmp_path, 64)
    views = next(training_views(images, torch.arange(2), 2, 0, None, 0, workers=0)).permute(0, 2, 3, 1).numpy()
    for px in [*views, *images[:]]:
        assert px.shape == (64, 64, 3)
        assert set(np.unique(px)) == {0, 255}  # resampling would leave greys
        assert np.all(px[1:, :, 0] != px[:-1, :, 0]) and np.all(px[:, 1:, 0] != px[:, :-1, 0])


def test_views_depend_on_seed_epoch_and_image_never_on_the_worker_count(tmp_path):
    large_images(tmp_path / "REAL", 3, 300)
    large_images(tmp_path / "FAKE", 3, 300, seed=1)
    images, order = crops_of(tmp_path, 96), torch.tensor([5, 0, 3, 1, 4, 2])

    def epoch(workers: int, number: int) -> torch.Tensor:
        return torch.cat(list(training_views(images, order, 2, number, CodecChain(), 7, workers)))

    alone = epoch(0, 0)
    assert torch.equal(alone, epoch(2, 0))
    assert not torch.equal(alone, epoch(0, 1))  # another epoch, other views


def test_a_file_that_breaks_mid_epoch_is_named_in_one_line(tmp_path):
    large_images(tmp_path / "REAL", 2, 200)
    large_images(tmp_path / "FAKE", 2, 200, seed=1)
    images = crops_of(tmp_path, 64)
    broken = Path(images.refs[1].container) / images.refs[1].name
    broken.write_bytes(broken.read_bytes()[:400])  # the header reads, the pixels do not
    for workers in (0, 2):
        with pytest.raises(Exception) as err:
            list(training_views(images, torch.arange(4), 2, 0, None, 0, workers))
        message = str(err.value)
        assert "\n" not in message and str(broken) in message and "--resume" in message


def test_train_with_crop_from_the_command_line_then_predict_scores_tiles(tmp_path, capsys):
    for cls, seed in (("REAL", 0), ("FAKE", 1)):
        large_images(tmp_path / "data" / cls, 12, 260, seed)
    Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(tmp_path / "data" / "REAL" / "small.png")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--crop", "64", "--epochs", "1", "--batch-size", "4",
                 "--out", str(out), "--no-cache"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert any("smaller than 64 px" in n for n in metrics["data"]["notes"])
    assert metrics["training"]["codec_chain"]["jpeg_quality"] == [65, 100]
    det = Detector.load(out / "model.pt", device="cpu")
    assert det.crop == 64 and det.config.input_size == 64  # the network sees the crop as it is
    views, _, _ = det.decode((tmp_path / "data" / "FAKE" / "0.jpg").read_bytes())
    assert views.shape == (9, 64, 64, 3)  # 260 px: 3x3 tiles of 64 (capped at 9)
    for verb in ("robustness", "report"):  # the verbs that rebuild the splits read the crops from disk too
        assert main([verb, "--model", str(out / "model.pt"), "--data", str(tmp_path / "data"), "--limit", "4",
                     "--no-cache"]) == 0
    assert (out / "robustness" / "robustness.json").exists()


@pytest.mark.parametrize("extra, wanted", [(["--degrade", "0.5"], "--degrade"),
                                           (["--input-size", "32"], "--crop 64 sets the input size")])
def test_crop_refuses_options_it_cannot_honour(tmp_path, capsys, extra, wanted):
    for cls, seed in (("REAL", 0), ("FAKE", 1)):
        large_images(tmp_path / "data" / cls, 8, 100, seed)
    code = main(["train", "--data", str(tmp_path / "data"), "--crop", "64", "--epochs", "1", "--batch-size", "4",
                 "--out", str(tmp_path / "run"), "--no-cache", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and wanted in err[-1]


def test_evaluate_scores_each_file_as_predict_does_not_one_centre_crop(tmp_path):
    """A native-crop model that rescales, re-encodes and tiles (as the bundled `wild` does): `evaluate`'s
    P(fake) per test image is `predict`'s, and differs from a centre crop's (so the test can fail)."""
    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import save_model
    from aivsreal.models.network import logits_and_features, sigmoid

    rng = np.random.default_rng(3)
    for cls in ("REAL", "FAKE"):
        folder = tmp_path / "data" / cls
        folder.mkdir(parents=True)
        for i in range(10):  # flat on one side, noise on the other: tiles and the centre disagree
            px = np.full((200, 300, 3), rng.integers(40, 200), np.uint8)
            px[:, 150:] = rng.integers(0, 255, (200, 150, 3))
            Image.fromarray(px).save(folder / f"{i}.png")
    torch.manual_seed(0)
    config = default_config("fast")
    config.options.update(crop=64, rescale=128, reencode=90, max_tiles=4)
    config.image_size = config.input_size = 64
    model = tmp_path / "model.pt"
    network = build_model(config)
    with torch.no_grad():  # an untrained head answers ~0.5 everywhere: make what it reads show
        [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(5000)
    save_model(model, network)
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "ev"),
                 "--no-cache"]) == 0
    rows = [r.split(",") for r in (tmp_path / "ev" / "predictions_test.csv").read_text().splitlines()[1:]]
    evaluated = np.array([float(r[3]) for r in rows])
    det = Detector.load(model, device="cpu", precision="fp32")
    assert det.decode((tmp_path / "data" / "REAL" / "0.png").read_bytes())[0].shape == (4, 64, 64, 3)  # 128x192
    predicted = np.array([p.p_fake for p in det.predict([r[0] for r in rows])])
    assert evaluated == pytest.approx(predicted, abs=2e-3)
    refs = {ref.display: ref for ref in find_splits(tmp_path / "data")["all"].refs}
    centre = CentreCrops([refs[r[0]] for r in rows], 64)
    one_crop = sigmoid(logits_and_features(det.network, centre[:], torch.device("cpu"))[0])
    assert np.abs(one_crop - evaluated).max() > 2e-2
