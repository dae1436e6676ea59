"""ONNX export: same P(fake) as PyTorch (fp32) on images with structure, and on real CIFAKE images
where this machine has them; metadata; and the onnx backend in `predict`."""

import csv
import json
import zipfile

import numpy as np
import pytest
from conftest import SHARED_CIFAKE, jpeg_bytes

from aivsreal.cli import main
from aivsreal.errors import AivsrealError
from aivsreal.predict.detector import Detector
from aivsreal.predict.onnx import export_onnx


def structured_images(n=64, seed=0):
    """JPEGs with colour, stripes, noise and (every third) a fine checkerboard: a model's outputs on
    them spread over (0, 1), so a wrong channel order, normalisation or flip shows in P(fake)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    out = []
    for i in range(n):
        stripes = np.sin((xx if i % 2 else yy) / rng.uniform(1.5, 6) + rng.uniform(0, 6))[..., None]
        img = rng.uniform(20, 230) + rng.uniform(10, 60) * stripes * rng.uniform(-1, 1, 3)
        img = img + rng.normal(0, rng.uniform(2, 20), (32, 32, 3))
        if i % 3 == 0:
            img += (np.indices((32, 32)).sum(0) % 2 * rng.uniform(5, 30))[..., None]
        out.append(jpeg_bytes(np.clip(img, 0, 255).astype(np.uint8)))
    return out


def cifake_images(n=64):
    """Real CIFAKE test JPEGs; the test that asks for them is skipped where this machine has none."""
    if not (SHARED_CIFAKE / "test.zip").exists():
        pytest.skip(f"real CIFAKE images absent ({SHARED_CIFAKE / 'test.zip'}); the structured-image test ran")
    with zipfile.ZipFile(SHARED_CIFAKE / "test.zip") as zf:
        names = [m for m in zf.namelist() if m.endswith(".jpg")]
        return [zf.read(names[i]) for i in np.linspace(0, len(names) - 1, n).astype(int)]


def p_fake(det, images):
    return np.array([p.p_fake for p in det.predict(images)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import make_dataset

    root = tmp_path_factory.mktemp("exp")
    data = make_dataset(root / "data", {"train": 64, "test": 16})
    out = root / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "16",
                 "--no-eval", "--cache-dir", str(root / "cache")]) == 0
    return out / "model.pt", data


def assert_onnx_matches_fp32(model_path, onnx_path, images):
    torch_p = p_fake(Detector.load(model_path, device="cpu", precision="fp32"), images)
    onnx_det = Detector.load(onnx_path, backend="onnx")
    assert np.ptp(torch_p) > 0.5 and np.mean((torch_p > 0.05) & (torch_p < 0.95)) > 0.5  # not saturated
    assert np.abs(p_fake(onnx_det, images) - torch_p).max() <= 1e-4  # measured: ~2e-7
    assert onnx_det.tta and onnx_det.name == "fast" and onnx_det.image_size == 32


def test_onnx_matches_pytorch(trained, tmp_path):
    model_path, _ = trained
    assert_onnx_matches_fp32(model_path, export_onnx(model_path, tmp_path / "m.onnx"), structured_images())


def test_onnx_matches_pytorch_on_real_cifake_images(trained, tmp_path):
    images = cifake_images()
    model_path, _ = trained
    assert_onnx_matches_fp32(model_path, export_onnx(model_path, tmp_path / "m.onnx"), images)


def test_bf16_stays_close_to_fp32_and_is_fp32_where_it_would_not_pay(trained, monkeypatch):
    """bf16 forced on (emulated where the CPU lacks it) moves P(fake) a little, never much; with no
    native bf16 the default precision is exactly fp32."""
    from aivsreal import device

    model_path, _ = trained
    images = structured_images(32)
    fp32 = p_fake(Detector.load(model_path, device="cpu", precision="fp32"), images)
    monkeypatch.setattr(device, "cpu_bf16_native", lambda: True)
    bf16 = p_fake(Detector.load(model_path, device="cpu"), images)
    assert 1e-4 < np.abs(bf16 - fp32).max() <= 3e-2
    monkeypatch.setattr(device, "cpu_bf16_native", lambda: False)
    assert np.array_equal(p_fake(Detector.load(model_path, device="cpu"), images), fp32)


def test_onnx_metadata_documents_preprocessing(trained, tmp_path):
    import onnx

    path = export_onnx(trained[0], tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "bicubic resize to 32x32" in props["preprocessing"]
    assert json.loads(props["aivsreal"])["config"]["name"] == "fast"
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_predict_cli_with_onnx_backend(trained, tmp_path, capsys):
    """The onnx backend's CSV has the torch (fp32) backend's rows: same paths, labels and P(fake)."""
    model_path, _ = trained
    folder = tmp_path / "images"
    folder.mkdir()
    for i, data in enumerate(structured_images(24, seed=1)):
        (folder / f"{i}.jpg").write_bytes(data)
    assert main(["export", "--model", str(model_path), "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["predict", str(folder), "--model", str(tmp_path / "m.onnx"), "--backend", "onnx",
                 "--csv", str(tmp_path / "onnx.csv")]) == 0
    assert main(["predict", str(folder), "--model", str(model_path), "--precision", "fp32",
                 "--csv", str(tmp_path / "torch.csv")]) == 0
    onnx_rows, torch_rows = ({r["path"]: r for r in csv.DictReader(open(tmp_path / name))}
                             for name in ("onnx.csv", "torch.csv"))
    assert len(onnx_rows) == 24 and onnx_rows.keys() == torch_rows.keys()
    assert {r["label"] for r in torch_rows.values()} == {"REAL", "FAKE"}  # both verdicts occur
    for path, row in torch_rows.items():
        assert onnx_rows[path]["label"] == row["label"] and not row["error"]
        assert float(onnx_rows[path]["p_fake"]) == pytest.approx(float(row["p_fake"]), abs=1e-4)
        assert onnx_rows[path]["in_domain"] == row["in_domain"]


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"nope")
    with pytest.raises(AivsrealError, match="not a readable ONNX model"):
        Detector.load(tmp_path / "x.onnx", backend="onnx")


def test_onnx_applies_the_stored_temperature(trained, tmp_path):
    import shutil

    from aivsreal.models.file import update_model_meta

    model_path = tmp_path / "model.pt"
    shutil.copy(trained[0], model_path)
    images = structured_images(16)
    before = np.array([p.p_fake for p in Detector.load(model_path, device="cpu", precision="fp32").predict(images)])
    update_model_meta(model_path, temperature=2.5)
    onnx_det = Detector.load(export_onnx(model_path, tmp_path / "m.onnx"), backend="onnx")
    onnx_p = np.array([p.p_fake for p in onnx_det.predict(images)])
    logit = np.log(before / (1 - before))
    assert np.abs(onnx_p - 1 / (1 + np.exp(-logit / 2.5))).max() <= 1e-3
    assert onnx_det.meta.temperature == 2.5


def test_onnx_carries_the_domain_check(trained, tmp_path):
    """The ONNX graph outputs the features and its metadata the check: the same flags as PyTorch."""
    model_path, _ = trained
    onnx_path = export_onnx(model_path, tmp_path / "m.onnx")
    images = [*structured_images(8), np.full((600, 800, 3), 90, np.uint8),
              np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    torch_preds = Detector.load(model_path, device="cpu", precision="fp32").predict(images)
    onnx_det = Detector.load(onnx_path, backend="onnx")
    onnx_preds = onnx_det.predict(images)
    assert onnx_det.meta.domain is not None
    assert [p.in_domain for p in onnx_preds] == [p.in_domain for p in torch_preds]
    assert onnx_preds[-2].in_domain is False and "800x600" in onnx_preds[-2].domain_reason
    scores = [(a.domain_score, b.domain_score) for a, b in zip(onnx_preds, torch_preds, strict=True)]
    assert all(abs(a - b) <= 1e-2 * max(1.0, abs(b)) for a, b in scores)
