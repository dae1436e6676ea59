"""ONNX export: same P(fake) as PyTorch (fp32) on real images, metadata, and the onnx backend in `predict`."""

import json

import numpy as np
import pytest
from conftest import SHARED_CIFAKE

from aivsreal.cli import main
from aivsreal.errors import AivsrealError
from aivsreal.predict.detector import Detector
from aivsreal.predict.onnx import export_onnx


def real_images(tiny_data, n=64):
    """Real CIFAKE test JPEGs when this machine has them, else the tests' own JPEGs."""
    import zipfile

    if (SHARED_CIFAKE / "test.zip").exists():
        with zipfile.ZipFile(SHARED_CIFAKE / "test.zip") as zf:
            names = [m for m in zf.namelist() if m.endswith(".jpg")]
            return [zf.read(names[i]) for i in np.linspace(0, len(names) - 1, n).astype(int)]
    return [p.read_bytes() for p in sorted(tiny_data.rglob("*.jpg"))[:n]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import make_dataset

    root = tmp_path_factory.mktemp("exp")
    data = make_dataset(root / "data", {"train": 64, "test": 16})
    out = root / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "16",
                 "--no-eval", "--cache-dir", str(root / "cache")]) == 0
    return out / "model.pt", data


def test_onnx_matches_pytorch(trained, tmp_path):
    model_path, data = trained
    onnx_path = export_onnx(model_path, tmp_path / "m.onnx")
    images = real_images(data)
    torch_p = np.array([p.p_fake for p in Detector.load(model_path, device="cpu", precision="fp32").predict(images)])
    onnx_det = Detector.load(onnx_path, backend="onnx")
    onnx_p = np.array([p.p_fake for p in onnx_det.predict(images)])
    assert np.abs(torch_p - onnx_p).max() <= 1e-3
    assert onnx_det.tta and onnx_det.name == "fast" and onnx_det.image_size == 32
    bf16_p = np.array([p.p_fake for p in Detector.load(model_path, device="cpu").predict(images)])
    assert np.abs(bf16_p - torch_p).max() <= 3e-2  # the default bf16 path stays close to fp32


def test_onnx_metadata_documents_preprocessing(trained, tmp_path):
    import onnx

    path = export_onnx(trained[0], tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "bicubic resize to 32x32" in props["preprocessing"]
    assert json.loads(props["aivsreal"])["config"]["name"] == "fast"
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_predict_cli_with_onnx_backend(trained, tmp_path, capsys):
    model_path, data = trained
    assert main(["export", "--model", str(model_path), "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["predict", str(data / "test"), "--model", str(tmp_path / "m.onnx"), "--backend", "onnx",
                 "--csv", str(tmp_path / "o.csv")]) == 0
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 33


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"nope")
    with pytest.raises(AivsrealError, match="not a readable ONNX model"):
        Detector.load(tmp_path / "x.onnx", backend="onnx")


def test_onnx_applies_the_stored_temperature(trained, tmp_path):
    import shutil

    from aivsreal.models.file import update_model_meta

    model_path = tmp_path / "model.pt"
    shutil.copy(trained[0], model_path)
    images = real_images(trained[1], n=16)
    before = np.array([p.p_fake for p in Detector.load(model_path, device="cpu", precision="fp32").predict(images)])
    update_model_meta(model_path, temperature=2.5)
    onnx_det = Detector.load(export_onnx(model_path, tmp_path / "m.onnx"), backend="onnx")
    onnx_p = np.array([p.p_fake for p in onnx_det.predict(images)])
    logit = np.log(before / (1 - before))
    assert np.abs(onnx_p - 1 / (1 + np.exp(-logit / 2.5))).max() <= 1e-3
    assert onnx_det.meta.temperature == 2.5


def test_onnx_carries_the_domain_check(trained, tmp_path):
    """The ONNX graph outputs the features and its metadata the check: the same flags as PyTorch."""
    model_path, data = trained
    onnx_path = export_onnx(model_path, tmp_path / "m.onnx")
    images = [*real_images(data, 8), np.full((600, 800, 3), 90, np.uint8),
              np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    torch_preds = Detector.load(model_path, device="cpu", precision="fp32").predict(images)
    onnx_det = Detector.load(onnx_path, backend="onnx")
    onnx_preds = onnx_det.predict(images)
    assert onnx_det.meta.domain is not None
    assert [p.in_domain for p in onnx_preds] == [p.in_domain for p in torch_preds]
    assert onnx_preds[-2].in_domain is False and "800x600" in onnx_preds[-2].domain_reason
    scores = [(a.domain_score, b.domain_score) for a, b in zip(onnx_preds, torch_preds, strict=True)]
    assert all(abs(a - b) <= 1e-2 * max(1.0, abs(b)) for a, b in scores)
