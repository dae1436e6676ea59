import pickle

import numpy as np
import pytest
import torch

from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config
from aivsreal.models.file import FORMAT_VERSION, ModelMeta, save_model, update_model_meta
from aivsreal.models.hub import load_model
from aivsreal.predict.detector import Detector
from aivsreal.safe_io import UMASK


@pytest.fixture
def saved(tmp_path):
    model = build_model(default_config("fast")).eval()
    path = tmp_path / "model.pt"
    save_model(path, model, ModelMeta(tta=True, threshold=0.3))
    return model, path


def test_roundtrip_gives_identical_predictions(saved):
    model, path = saved
    loaded, meta = load_model(path)
    x = torch.rand(4, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta.tta is True and meta.threshold == 0.3
    assert torch.load(path, weights_only=True)["class_names"] == ["REAL", "FAKE"]


def test_model_file_is_readable_like_any_new_file(saved):
    # Atomic writes go through mkstemp (owner-only); the model must end up as open() would make it.
    _, path = saved
    assert path.stat().st_mode & 0o777 == 0o666 & ~UMASK
    path.chmod(0o640)
    update_model_meta(path, threshold=0.4)  # a rewrite keeps the mode the owner chose
    assert path.stat().st_mode & 0o777 == 0o640 and load_model(path)[1].threshold == 0.4


class Exploit:
    def __reduce__(self):
        return (print, ("this ran code while loading",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "aivsreal-model", "payload": Exploit()}, path)
    with pytest.raises(AivsrealError, match="refused: it contains code"):
        load_model(path)
    assert "this ran code" not in capsys.readouterr().out
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(AivsrealError):
        load_model(raw)
    assert "this ran code" not in capsys.readouterr().out


def test_missing_corrupt_foreign_and_future_files(tmp_path, saved):
    with pytest.raises(AivsrealError, match="not found"):
        load_model(tmp_path / "nope.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(AivsrealError, match="not a readable model file"):
        load_model(tmp_path / "corrupt.pt")
    torch.save({"some": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(AivsrealError, match="not an aivsreal model file"):
        load_model(tmp_path / "foreign.pt")
    obj = torch.load(saved[1], weights_only=True)
    obj["format_version"] = FORMAT_VERSION + 1
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(AivsrealError, match="newer than this aivsreal"):
        load_model(tmp_path / "future.pt")
    obj["format_version"] = FORMAT_VERSION
    obj["config"]["options"]["widths"] = [8, 8, 8]
    torch.save(obj, tmp_path / "mismatch.pt")
    with pytest.raises(AivsrealError, match="do not fit"):
        load_model(tmp_path / "mismatch.pt")


def test_detector_api_on_mixed_inputs(saved, tmp_path):
    """A path, PNG bytes, an array and a PIL image of the same 40x50 picture reach the model as the same
    bicubic 32x32 pixels and get the same P(fake): the one the network gives those pixels in fp32."""
    from PIL import Image

    model, path = saved
    det = Detector.load(path, device="cpu", precision="fp32")
    yy, xx = np.mgrid[0:50, 0:40]
    arr = np.stack([xx * 6, yy * 5, 255 - xx * 3 - yy * 2], -1) + (xx % 3 == 0)[..., None] * 40
    arr = np.clip(arr + np.random.default_rng(0).integers(0, 30, (50, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    inputs = [tmp_path / "a.png", arr, Image.fromarray(arr), (tmp_path / "a.png").read_bytes()]
    preds = det.predict([*inputs, tmp_path / "bad.jpg"], batch_size=2)
    assert [p.label is None for p in preds] == [False, False, False, False, True]
    assert "bad.jpg" in preds[4].error

    def p_fake_of(pixels):  # the network itself: flip-averaged logit (the model uses TTA), sigmoid
        x = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            logit = (model(x) + model(torch.flip(x, dims=[3]))).item() / 2
        return 1 / (1 + np.exp(-logit))

    bicubic = np.asarray(Image.fromarray(arr).resize((32, 32), Image.Resampling.BICUBIC))
    for image in inputs:
        assert np.array_equal(det.to_pixels(image), bicubic), type(image)
    assert len({p.p_fake for p in preds[:4]}) == 1  # the same pixels, however they arrive: bit for bit
    assert preds[0].p_fake == pytest.approx(p_fake_of(bicubic), abs=1e-6)
    bilinear = np.asarray(Image.fromarray(arr).resize((32, 32), Image.Resampling.BILINEAR))
    assert np.abs(bilinear.astype(int) - bicubic).max() >= 5  # the structure makes resamplers disagree
    assert all(p.label == ("FAKE" if p.p_fake >= 0.3 else "REAL") for p in preds[:4])
