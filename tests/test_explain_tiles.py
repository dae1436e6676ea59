"""Grad-CAM of a native-crop ("tiled") model explains the whole view it read, not its first tile.

- every tile's map is put back where the tile was cut from the canvas; overlaps average; what no tile
  read is map 0, uncovered, drawn as hatching;
- an image's tiles are scaled together (its verdict is their mean logit), so a tile with less evidence
  shows less;
- `aivsreal explain` and the server's `?explain=1` draw the canvas, its aspect kept.
"""

from __future__ import annotations

import base64
import csv
import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from torch import nn

from aivsreal.cli import main
from aivsreal.data.crops import tile_layout, tiles
from aivsreal.explain import gradcam
from aivsreal.explain.overlays import UNREAD, display_shape, stitch
from aivsreal.models import DetectorNet, ModelConfig, build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.serve.app import create_app

CROP = 32


def canvas(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_each_tiles_map_lands_where_the_tile_was_cut_and_overlaps_average():
    image = canvas(50, 90)
    layout = tile_layout(50, 90, CROP, max_tiles=9)  # rows 0, 18; columns 0, 29, 58: six overlapping tiles
    assert layout.origins == ((0, 0), (0, 29), (0, 58), (18, 0), (18, 29), (18, 58))
    views = tiles(image, CROP, 9)
    maps = np.zeros((6, CROP, CROP), dtype=np.float32)
    maps[5] = 1.0  # only the bottom-right tile has evidence
    pic = stitch(views, maps, layout, (50, 90))
    want = np.zeros((50, 90))
    want[18:50, 58:90] = 1.0
    want[18:32, 58:90] /= 2  # shared with the tile above, whose map is 0 there
    want[18:50, 58:61] /= 2  # and with the one to the left
    assert want[18, 58] == 0.25 and want[40, 80] == 1.0
    np.testing.assert_allclose(pic.heat, want, atol=1e-6)
    assert pic.covered.all()
    np.testing.assert_array_equal(pic.image, image)  # the canvas, rebuilt from its tiles alone


def test_what_no_tile_read_is_uncovered_map_zero_and_hatched():
    image = canvas(40, 100)
    layout = tile_layout(40, 100, CROP, max_tiles=4)  # columns 0 and 68: 32..68 is never read
    assert layout.origins == ((0, 0), (0, 68), (8, 0), (8, 68))
    pic = stitch(tiles(image, CROP, 4), np.ones((4, CROP, CROP), np.float32), layout, (40, 100))
    assert not pic.covered[:, 32:68].any() and pic.covered[:, :32].all() and pic.covered[:, 68:].all()
    assert (pic.heat[:, 32:68] == 0).all() and (pic.heat[:, :32] == 1).all()
    assert set(np.unique(pic.image[:, 32:68])) == set(UNREAD)
    np.testing.assert_array_equal(pic.image[:, 68:], image[:, 68:])


def test_a_small_canvas_drops_the_reflect_padding():
    image = canvas(20, 40)  # shorter than the crop: padded to 32 rows by reflection
    layout = tile_layout(20, 40, CROP)
    views = tiles(image, CROP)
    pic = stitch(views, np.ones((len(views), CROP, CROP), np.float32), layout, display_shape((20, 40), 40))
    assert pic.image.shape == (20, 40, 3) and pic.covered.all()
    np.testing.assert_array_equal(pic.image, image)


@pytest.mark.parametrize("rescale, stored, shown", [(None, (96, 40), (96, 40)), (64, (320, 160), (128, 64))])
def test_the_layout_is_the_canvas_the_model_read_not_the_stored_size(tmp_path, rescale, stored, shown):
    """EXIF rotation (and `rescale`) make the canvas differ from the stored (width, height)."""
    from aivsreal.predict.detector import Detector

    torch.manual_seed(0)
    config = default_config("fast")
    config.options = {**config.options, "crop": CROP, **({"rescale": rescale} if rescale else {})}
    save_model(tmp_path / "m.pt", build_model(config))
    det = Detector.load(tmp_path / "m.pt", device="cpu")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated a quarter turn: portrait
    buf = io.BytesIO()
    Image.fromarray(canvas(stored[1], stored[0])).save(buf, format="JPEG", exif=exif.tobytes())
    views, _, layout = det.decode(buf.getvalue())
    assert layout.canvas == shown and layout.crop == CROP  # (height, width), upright: not the stored 40 or 160 high
    assert layout == tile_layout(*shown, CROP) and len(views) == len(layout.origins)


def linear_tiled_model() -> DetectorNet:
    """Grad-CAM of a 1x1 conv, global average and linear unit is the model's per-pixel evidence
    (tests/test_explain.py): with no bias, black pixels carry none, so only tiles that see a patch do."""
    torch.manual_seed(0)
    config = ModelConfig(name="fast", image_size=CROP, input_size=CROP, mean=(0, 0, 0), std=(1, 1, 1),
                         options={"crop": CROP})
    net = nn.Sequential(nn.Conv2d(3, 1, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[3].weight.fill_(1.0)
    return DetectorNet(config, net).eval()


def test_grad_cam_of_a_tiled_image_shows_the_evidence_where_it_is_on_the_canvas():
    model = linear_tiled_model()
    image = np.zeros((50, 90, 3), dtype=np.uint8)
    image[40:48, 80:88] = 200  # read only by the bottom-right tile (18, 58)
    image[2:6, 2:6] = 100  # a weaker patch, read only by the top-left tile
    layout = tile_layout(50, 90, CROP)
    views = tiles(image, CROP)
    maps = gradcam.grad_cam(model, views, [True], views=[len(views)], max_pass=4)
    heat = stitch(views, maps, layout, (50, 90)).heat
    assert heat[40:48, 80:88] == pytest.approx(1.0, abs=1e-5)
    # One image's tiles are scaled together: the weaker patch shows half as strong, not as its tile's 1.
    assert heat[2:6, 2:6] == pytest.approx(0.5, abs=1e-5)
    bright = heat > 1e-6
    assert bright.sum() == 64 + 16  # nowhere else, and not at the top-left 32 px corner


def tiled_model(path) -> str:
    torch.manual_seed(0)
    config = default_config("fast")
    config.options = {**config.options, "crop": CROP, "max_tiles": 9}
    save_model(path, build_model(config))
    return str(path)


@pytest.fixture
def evidence_in_bright_pixels(monkeypatch):
    """Grad-CAM's per-tile maps replaced by each tile's brightness: a map whose place on the canvas is known."""
    def brightness(model, target, layer, pixels, fake, tta):
        return pixels.astype(np.float32).mean(axis=3)

    monkeypatch.setattr(gradcam, "_raw_maps", brightness)


def wide_photo() -> np.ndarray:
    image = np.full((40, 96, 3), 10, dtype=np.uint8)  # tiles at rows 0, 8 and columns 0, 32, 64
    image[10:30, 80:96] = 250  # evidence at the right end only
    return image


def hot_columns(overlay: np.ndarray) -> np.ndarray:
    """Columns where the jet colour is red (strong evidence) rather than blue."""
    red_minus_blue = overlay[..., 0].astype(int) - overlay[..., 2]
    return np.flatnonzero((red_minus_blue > 30).any(axis=0))


def test_explain_cli_draws_the_whole_canvas_of_a_tiled_model(tmp_path, evidence_in_bright_pixels):
    model = tiled_model(tmp_path / "model.pt")
    Image.fromarray(wide_photo()).save(tmp_path / "wide.png")
    assert main(["explain", str(tmp_path / "wide.png"), "--model", model, "--out", str(tmp_path / "x"),
                 "--size", "96", "--target", "FAKE", "--device", "cpu"]) == 0
    row, = csv.DictReader(open(tmp_path / "x" / "explanations.csv"))
    written = np.asarray(Image.open(tmp_path / "x" / row["file"]).convert("RGB"))
    assert written.shape == (40, 96 * 2 + 8, 3)  # the 40x96 canvas, not one 32 px square tile
    image, over = written[:, :96], written[:, 104:]
    np.testing.assert_array_equal(image, wide_photo())
    hot = hot_columns(over)
    assert hot.size and hot.min() >= 78 and hot.max() == 95  # the right end, where the bright patch is


def test_server_explains_the_whole_canvas_of_a_tiled_model(tmp_path, evidence_in_bright_pixels):
    buf = io.BytesIO()
    Image.fromarray(wide_photo()).save(buf, format="PNG")
    with TestClient(create_app(tiled_model(tmp_path / "model.pt"), device="cpu")) as client:
        r = client.post("/api/predict?explain=1", files=[("files", ("wide.png", buf.getvalue(), "image/png"))])
    assert r.status_code == 200
    drawn = Image.open(io.BytesIO(base64.b64decode(r.json()["results"][0]["gradcam_png"])))
    assert drawn.size == (224, 93)  # the canvas's 96:40 aspect at the server's 224 px
    hot = hot_columns(np.asarray(drawn.convert("RGB")))
    assert hot.size and hot.min() >= 224 * 78 // 96 and hot.max() == 223


def test_report_examples_draw_the_whole_canvas_of_a_tiled_model(tmp_path, evidence_in_bright_pixels):
    """`aivsreal report`'s Grad-CAM examples read a split on disk as predict does: every tile on its canvas."""
    from aivsreal.commands.report import gradcam_examples
    from aivsreal.data.cache import DecodedSplit
    from aivsreal.data.sources import find_splits
    from aivsreal.data.stream import CentreCrops
    from aivsreal.predict.detector import Detector

    for cls in ("REAL", "FAKE"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        Image.fromarray(wide_photo()).save(tmp_path / "d" / cls / "wide.png")
    refs = [r for r in find_splits(tmp_path / "d")["all"].refs if "FAKE" in r.display]
    test = DecodedSplit(CentreCrops(refs, CROP), np.array([1]), [refs[0].display], [])
    explainer = gradcam.Explainer(Detector.load(tiled_model(tmp_path / "model.pt"), device="cpu"))
    examples = gradcam_examples(explainer, test, np.array([0.9]), tmp_path / "cams", k=1)
    example, = [e for group in examples.values() for e in group]
    written = np.asarray(Image.open(example.png).convert("RGB"))
    assert written.shape == (67, 160 * 2 + 8, 3)  # the 40x96 canvas at 160 px, not a square centre crop
    assert hot_columns(written[:, 168:]).min() >= 160 * 78 // 96
