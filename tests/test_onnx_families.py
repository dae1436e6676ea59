"""ONNX parity for every model family and both bundled detectors: the exported graph gives the
features and P(FAKE) PyTorch fp32 gives, view by view and image by image, and its metadata says
how to cut the views (a crop model's tiles are not a resize).

Randomly initialised networks answer nearly the same P(FAKE) for any input, so P(FAKE) alone would
let a wrong graph pass; the penultimate features (which differ a lot between images) are compared too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from aivsreal.data.crops import MAX_TILES
from aivsreal.errors import AivsrealError
from aivsreal.models import MODEL_NAMES, build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.predict.detector import Detector
from aivsreal.predict.onnx import export_onnx

TINY_VIT = "vit_tiny_patch16_224"
SMALL = 64  # px: the probes' crop and the whole-image models' size, small enough for CPU CI


def small_config(name: str):
    """The family's own config at a CPU-friendly size (crop models keep their crop, smaller)."""
    config = default_config(name)
    if config.crop:
        config.image_size = config.input_size = SMALL
        config.options = {**config.options, "crop": SMALL}
    if name in ("clip_probe", "dinov2_probe"):
        config.options["arch"] = TINY_VIT
    return config


def structured_images(n: int, height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    y, x = np.mgrid[:height, :width]
    out = []
    for i in range(n):
        img = np.stack([(x * (i + 1) * 3) % 256, (y * 7 + 40 * i) % 256, rng.integers(0, 256, (height, width))], -1)
        img[: height // 3] = rng.integers(0, 60) + 150 * ((x[: height // 3] // (i + 2)) % 2)[..., None]
        out.append(img.astype(np.uint8))
    return out


def assert_parity(torch_det: Detector, onnx_det: Detector, images: list[np.ndarray], tol: float = 1e-4):
    views = np.concatenate([torch_det.decode(im)[0] for im in images])
    p_t, f_t = torch_det.score(views)
    p_o, f_o = onnx_det.score(views)
    assert f_o is not None and f_o.shape == f_t.shape
    assert np.ptp(f_t, axis=0).max() > 1e-2 * np.abs(f_t).max()  # the images differ for the network
    np.testing.assert_allclose(f_o, f_t, rtol=1e-3, atol=1e-3 * np.abs(f_t).max())
    np.testing.assert_allclose(p_o, p_t, atol=tol)
    whole_t = [p.p_fake for p in torch_det.predict(images)]
    whole_o = [p.p_fake for p in onnx_det.predict(images)]
    np.testing.assert_allclose(whole_o, whole_t, atol=tol)


NOT_EXPORTABLE = {"spectrum_probe": "fft_fft2"}  # torch's opset-17 exporter cannot convert fft2: torch backend only


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in ("ensemble", *NOT_EXPORTABLE)])
def test_every_family_exports_with_the_same_features_and_scores(name, tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "m.pt"
    save_model(model, build_model(small_config(name)))
    torch_det = Detector.load(model, device="cpu", precision="fp32")
    onnx_det = Detector.load(export_onnx(model, tmp_path / "m.onnx"), backend="onnx")
    assert onnx_det.config.to_dict() == torch_det.config.to_dict()
    assert_parity(torch_det, onnx_det, structured_images(3, 90, 150))  # a crop model reads 2x3 tiles of these


@pytest.mark.parametrize("name", NOT_EXPORTABLE)
def test_a_family_onnx_cannot_hold_is_refused_in_one_line(name, tmp_path):
    model = tmp_path / "m.pt"
    save_model(model, build_model(small_config(name)))
    with pytest.raises(AivsrealError, match=f"ONNX export of .* failed .*{NOT_EXPORTABLE[name]}") as e:
        export_onnx(model, tmp_path / "m.onnx")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bundled", ["cifake", "wild"])
def test_the_bundled_detectors_export_with_the_same_scores(bundled, tmp_path):
    torch_det = Detector.load(bundled, device="cpu", precision="fp32")
    onnx_det = Detector.load(export_onnx(bundled, tmp_path / f"{bundled}.onnx"), backend="onnx")
    side = 300 if torch_det.crop else 32  # wild: 2x2 native 224 px tiles per image
    assert_parity(torch_det, onnx_det, structured_images(2, side, side + 40))


def metadata(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_crop_model_metadata_says_tiles_and_how_they_are_pooled(tmp_path):
    config = default_config("fast")
    config.options["crop"] = 32
    model = tmp_path / "crop.pt"
    save_model(model, build_model(config))
    meta = metadata(export_onnx(model, tmp_path / "crop.onnx"))
    views = json.loads(meta["views"])
    assert views["kind"] == "native_tiles" and views["size"] == 32 and views["max_tiles"] == MAX_TILES
    assert "logit" in views["aggregate"] and "bicubic" not in meta["preprocessing"]
    assert "never resized" in meta["preprocessing"] and "32x32 tiles" in meta["preprocessing"]


def test_the_documented_onnxruntime_recipe_reproduces_predict(tmp_path):
    """The recipe in the export docs, with onnxruntime, numpy and Pillow only, for a tiled model."""
    import onnxruntime as ort

    torch.manual_seed(0)
    config = default_config("fast")
    config.options["crop"] = 32
    model = tmp_path / "crop.pt"
    save_model(model, build_model(config))
    onnx_path = export_onnx(model, tmp_path / "crop.onnx")
    image = tmp_path / "photo.png"
    Image.fromarray(structured_images(1, 75, 100)[0]).save(image)

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    views = json.loads(session.get_modelmeta().custom_metadata_map["views"])
    pixels = np.asarray(Image.open(image).convert("RGB"))
    size, per_axis = views["size"], int(views["max_tiles"] ** 0.5)

    def origins(length: int) -> list[int]:
        n = min(-(-length // size), per_axis)
        return [0] if length <= size else sorted({round(i * (length - size) / (n - 1)) for i in range(n)})

    tiles = np.stack([pixels[y : y + size, x : x + size] for y in origins(pixels.shape[0])
                      for x in origins(pixels.shape[1])])
    p = session.run(["p_fake"], {"pixels": tiles.transpose(0, 3, 1, 2).astype(np.float32)})[0]
    logit = np.log(p) - np.log1p(-p)
    p_image = 1 / (1 + np.exp(-logit.mean()))

    expected = Detector.load(model, device="cpu", precision="fp32").predict([image])[0].p_fake
    assert len(tiles) == 9 and p_image == pytest.approx(expected, abs=1e-5)


def rescale_model(tmp_path) -> Path:
    torch.manual_seed(0)
    config = default_config("fast")
    config.options = {**config.options, "crop": 32, "rescale": 96, "reencode": 90, "max_tiles": 4}
    save_model(tmp_path / "rescale.pt", build_model(config))
    return tmp_path / "rescale.pt"


def test_rescale_model_metadata_says_the_scale_and_the_draft(tmp_path):
    meta = metadata(export_onnx(rescale_model(tmp_path), tmp_path / "rescale.onnx"))
    views = json.loads(meta["views"])
    assert views["kind"] == "native_tiles" and views["size"] == 32
    assert views["rescale"] == 96 and views["draft"] is True and "never scaled up" in views["rescale_rule"]
    assert views["reencode"] == 90 and "JPEG q90" in meta["preprocessing"] and views["max_tiles"] == 4
    assert "shorter side 96" in meta["preprocessing"] and "never resized" not in meta["preprocessing"]


def documented_recipe() -> str:
    text = (Path(__file__).parents[1] / "docs" / "export.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("photo", ["big.jpg", "small.png"])
def test_the_recipe_in_the_export_docs_runs_as_written(tmp_path, photo):
    """The very code block of docs/export.md on a `rescale` model: a JPEG large enough for draft decoding
    (shorter side >= 2x rescale), and a PNG under the rescale (kept native)."""
    onnx_path = export_onnx(rescale_model(tmp_path), tmp_path / "rescale.onnx")
    size = (250, 330) if photo == "big.jpg" else (70, 90)
    Image.fromarray(structured_images(1, *size)[0]).save(tmp_path / photo, quality=90)
    code = documented_recipe().replace('"model.onnx"', repr(str(onnx_path))).replace('"photo.jpg"',
                                                                                    repr(str(tmp_path / photo)))
    namespace: dict = {}
    exec(compile(code, "docs/export.md", "exec"), namespace)  # noqa: S102 - our own documentation
    det = Detector.load(onnx_path, backend="onnx")
    np.testing.assert_array_equal(namespace["batch"], det.decode(tmp_path / photo)[0])  # the very views predict cuts
    expected = det.predict([tmp_path / photo])[0]
    assert namespace["p_fake"] == pytest.approx(expected.p_fake, abs=1e-6)
    assert namespace["label"] == expected.label
