"""Lean inference on large photos (issue 50, item 4): what a native-crop model reads, at which scale,
how a JPEG is decoded for it, and how much memory a folder of large images costs.

- without `rescale` the tiles are the image's own pixels (a 1 px checkerboard survives);
- with `rescale` S the tiles are cut from the image resized to a shorter side of S px, by the same
  antialiased bicubic resize as the photoreal headline's `same_size`, never scaled up;
- JPEG draft (DCT-domain) decoding happens only when the view is downscaled;
- a model file with a bad `rescale` is refused in one line;
- scoring goes through the network a bounded number of views at a time;
- `predict` over a folder of large images keeps only views: its peak RSS does not grow with the folder.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from aivsreal import Detector
from aivsreal.data.crops import tiles
from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config
from aivsreal.models.file import load_model_file, save_model
from aivsreal.predict import detector as detector_module

CROP, SIDE = 32, 96  # a `fast` model reading 32 px tiles of the image at shorter side 96 px


def crop_model(path, rescale: int | None = None, **options) -> Detector:
    torch.manual_seed(0)
    config = default_config("fast")
    config.options = {**config.options, "crop": CROP, **({"rescale": rescale} if rescale else {}), **options}
    save_model(path, build_model(config))
    return Detector.load(path, device="cpu", precision="fp32")


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields plus fine noise: like a photo, a resize visibly changes it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    base = np.stack([128 + 90 * np.sin(x / 37.0 + c) * np.cos(y / 23.0 - c) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


def encoded(pixels: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **kw)
    return buf.getvalue()


def checkerboard(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    return np.repeat(((x + y) % 2 * 255).astype(np.uint8)[..., None], 3, axis=2)


def test_tiles_without_rescale_are_native_and_with_it_are_not(tmp_path):
    board = checkerboard(300, 400)
    native = crop_model(tmp_path / "native.pt").decode(encoded(board, "PNG"))[0]
    assert native.shape == (9, CROP, CROP, 3)
    for tile in native:  # every tile starts on some cell: it is the board itself or its inverse
        assert np.array_equal(tile, board[:CROP, :CROP]) or np.array_equal(tile, 255 - board[:CROP, :CROP])
    rescaled = crop_model(tmp_path / "rescaled.pt", SIDE).decode(encoded(board, "PNG"))[0]
    assert not np.isin(rescaled, (0, 255)).all()  # resized: the 1 px cells are gone


def test_the_rescale_view_is_same_sizes_resize_and_never_an_upscale(tmp_path, monkeypatch):
    det = crop_model(tmp_path / "m.pt", SIDE)
    pixels = textured(250, 330)
    views, size, _ = det.decode(encoded(pixels, "PNG"))
    # the reference, written out: Pillow's (antialiased) bicubic to shorter side SIDE
    scaled = np.asarray(Image.fromarray(pixels).resize((round(330 * SIDE / 250), SIDE), Image.Resampling.BICUBIC))
    assert np.array_equal(views, tiles(scaled, CROP)) and size == (330, 250)
    from aivsreal.evaluate import conditions

    square: list[np.ndarray] = []  # what the photoreal headline encodes: the same resize, centre-cropped
    monkeypatch.setattr(conditions, "jpeg_bytes", lambda px, quality: square.append(px) or b"")
    conditions.same_size(pixels, SIDE)
    left = (scaled.shape[1] - SIDE) // 2
    assert np.array_equal(square[0], scaled[:, left : left + SIDE])
    small = textured(70, 90, seed=1)  # shorter side under SIDE: kept native, reflect-padded, never scaled up
    assert np.array_equal(det.decode(encoded(small, "PNG"))[0], tiles(small, CROP))


def test_a_reencode_model_reads_the_rescaled_image_saved_as_jpeg_as_same_size_does(tmp_path):
    """`reencode` Q: the resized image (or the native one, when small) goes through Pillow's JPEG at
    quality Q, PNG and JPEG inputs alike: the pixels the same-size reduction trains and tests on."""
    det = crop_model(tmp_path / "m.pt", SIDE, reencode=90)
    pixels = textured(250, 330)
    scaled = np.asarray(Image.fromarray(pixels).resize((round(330 * SIDE / 250), SIDE), Image.Resampling.BICUBIC))
    want = np.asarray(Image.open(io.BytesIO(encoded(scaled, "JPEG", quality=90))).convert("RGB"))
    views = det.decode(encoded(pixels, "PNG"))[0]
    assert np.array_equal(views, tiles(want, CROP))
    assert not np.array_equal(views, crop_model(tmp_path / "plain.pt", SIDE).decode(encoded(pixels, "PNG"))[0])
    small = textured(70, 90, seed=1)
    small_want = np.asarray(Image.open(io.BytesIO(encoded(small, "JPEG", quality=90))).convert("RGB"))
    assert np.array_equal(det.decode(encoded(small, "PNG"))[0], tiles(small_want, CROP))


def test_a_model_may_read_fewer_tiles_spread_over_the_image(tmp_path):
    """`max_tiles` 4: 2x2 tiles at the image's corners-to-corners spread, what a 3x3 model would read less
    its middle row and column; the default stays 3x3."""
    pixels = textured(300, 400)
    four = crop_model(tmp_path / "four.pt", max_tiles=4)
    views = four.decode(encoded(pixels, "PNG"))[0]
    assert four.max_views == 4 and np.array_equal(views, tiles(pixels, CROP, 4))
    nine = crop_model(tmp_path / "nine.pt").decode(encoded(pixels, "PNG"))[0]
    assert len(nine) == 9 and np.array_equal(nine[[0, 2, 6, 8]], views)


@pytest.fixture
def draft_calls(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append((self.size, size))
        return real(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def test_draft_decoding_only_when_the_view_is_downscaled(tmp_path, draft_calls):
    big = encoded(textured(4 * SIDE + 8, 5 * SIDE), "JPEG", quality=90)  # shorter side >= 2x SIDE: 1/4 scale
    medium = encoded(textured(2 * SIDE - 8, 3 * SIDE), "JPEG", quality=90)  # under 2x: nothing to gain
    native = crop_model(tmp_path / "native.pt")
    rescaled = crop_model(tmp_path / "rescaled.pt", SIDE)
    no_draft = crop_model(tmp_path / "no_draft.pt", SIDE, draft=False)

    native.decode(big)
    rescaled.decode(medium)
    no_draft_views = no_draft.decode(big)[0]
    assert draft_calls == []  # a native view, a view not reduced 2x, and a model that turned draft off
    drafted = rescaled.decode(big)[0]
    assert draft_calls == [((5 * SIDE, 4 * SIDE + 8), (SIDE, SIDE))]
    # the same view from the reduced decode: same shape, pixels within a few levels of the full decode
    assert drafted.shape == no_draft_views.shape
    assert 0 < np.abs(drafted.astype(int) - no_draft_views).mean() < 4
    save_model(tmp_path / "whole.pt", build_model(default_config("fast")))  # a whole-image model downscales too
    Detector.load(tmp_path / "whole.pt", device="cpu").decode(big)
    assert len(draft_calls) == 2


@pytest.mark.parametrize("options", [
    {"rescale": 16},  # under the crop: the tiles would only be padded
    {"rescale": 5000},
    {"rescale": "512"},
    {"rescale": 96.0},
    {"rescale": True},
    {"rescale": SIDE, "draft": "yes"},
    {"rescale": SIDE, "reencode": 0},
    {"rescale": SIDE, "reencode": 101},
    {"rescale": SIDE, "reencode": "90"},
    {"reencode": 90},  # a re-encode without the rescale it follows
    {"max_tiles": 2},
    {"max_tiles": 16},
    {"max_tiles": True},
])
def test_the_model_file_check_refuses_a_bad_rescale(tmp_path, options):
    config = default_config("fast")
    config.options = {**config.options, "crop": CROP, **options}
    save_model(tmp_path / "bad.pt", build_model(config))
    with pytest.raises(AivsrealError) as e:
        load_model_file(tmp_path / "bad.pt")
    message = str(e.value)
    assert "\n" not in message and "bad.pt" in message
    assert any(k in message for k in ("rescale", "draft", "reencode", "max_tiles"))


def test_a_rescale_without_a_crop_is_refused(tmp_path):
    config = default_config("fast")
    config.options = {**config.options, "rescale": SIDE}
    save_model(tmp_path / "bad.pt", build_model(config))
    with pytest.raises(AivsrealError, match="rescale 96 .*native-crop model"):
        load_model_file(tmp_path / "bad.pt")


def test_scoring_goes_through_the_network_a_bounded_number_of_views_at_a_time(tmp_path, monkeypatch):
    det = crop_model(tmp_path / "m.pt")
    monkeypatch.setattr(detector_module, "MAX_PASS_PIXELS", 10 * CROP * CROP)
    seen: list[int] = []
    scorer = det.scorer
    det.scorer = lambda px: (seen.append(len(px)), scorer(px))[1]
    views = np.random.default_rng(0).integers(0, 256, (47, CROP, CROP, 3), dtype=np.uint8)
    p, features = det.score(views)
    assert seen == [10, 10, 10, 10, 7]
    p_one, f_one = scorer(views)
    np.testing.assert_allclose(p, p_one, atol=1e-6)
    np.testing.assert_allclose(features, f_one, atol=1e-5)


PEAK_RSS = textwrap.dedent("""
    import resource, subprocess, sys
    subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux
""")


def peak_rss_mb(model, folder, csv) -> float:
    """Peak RSS of `aivsreal predict FOLDER` (its largest process), from a fresh parent: ru_maxrss of
    the children of this test process would carry earlier tests' subprocesses."""
    cmd = [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "aivsreal", "predict", str(folder),
           "--model", str(model), "--csv", str(csv), "--workers", "1", "--batch-size", "256"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux (bytes on macOS)")
def test_predict_memory_does_not_grow_with_a_folder_of_large_images(tmp_path):
    """16 native-resolution decodes of 8 MP are 16 x 23 MB: kept alive, they would add ~350 MB."""
    crop_model(tmp_path / "m.pt")  # no rescale: every image is decoded in full, the worst case
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    photo = encoded(textured(2448, 3264), "JPEG", quality=90)
    (one / "0.jpg").write_bytes(photo)
    for i in range(16):
        (many / f"{i}.jpg").write_bytes(photo)
    base = peak_rss_mb(tmp_path / "m.pt", one, tmp_path / "one.csv")
    peak = peak_rss_mb(tmp_path / "m.pt", many, tmp_path / "many.csv")
    assert len((tmp_path / "many.csv").read_text().splitlines()) == 17
    assert peak - base < 150, f"peak RSS {peak:.0f} MB for 16 images vs {base:.0f} MB for one"


def test_an_ensemble_reads_its_members_scale_and_refuses_mixed_ones(tmp_path):
    from aivsreal.models.ensemble import make_ensemble
    from aivsreal.models.file import ModelMeta

    def member(rescale):
        return crop_model(tmp_path / f"m{rescale}.pt", rescale).network

    net, _ = make_ensemble([("a", member(SIDE), ModelMeta()), ("b", member(SIDE), ModelMeta())])
    assert (net.config.crop, net.config.rescale, net.config.draft) == (CROP, SIDE, True)
    with pytest.raises(AivsrealError, match="at shorter side 96 px but a reads 32 px native crops"):
        make_ensemble([("a", member(None), ModelMeta()), ("b", member(SIDE), ModelMeta())])
