"""CLI flags that no other test exercised (issue 54): each test checks the values a flag must change.

predict --threshold/--precision/-q, explain --target/--layer (and a native-crop model), export --half,
evaluate --target-precision, train --calibrate/--time-budget/--strict/--no-tta/--image-size/
--pretrained --weights/--no-codec-chain, and an ensemble of two different networks.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_dataset
from PIL import Image

from aivsreal.cli import main
from aivsreal.data.splits import DataOptions
from aivsreal.explain.gradcam import Explainer, default_layer
from aivsreal.explain.overlays import panels, picture
from aivsreal.models.file import ModelMeta, load_model_file, save_model
from aivsreal.models.network import image_logits_and_features, logits_and_features, sigmoid
from aivsreal.predict.detector import Detector


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def fp32_p_fake(model, paths) -> np.ndarray:
    det = Detector.load(model, device="cpu", precision="fp32")
    return np.array([p.p_fake for p in det.predict([str(p) for p in paths])])


def one_line_error(capsys, wanted: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("aivsreal: error:") and wanted in err[-1], err
    assert not any("Traceback" in line for line in err)
    return err[-1]


# ---------------------------------------------------------------- predict


def test_predict_threshold_labels_fake_exactly_at_and_above_it(trained_run, tmp_path):
    data, run = trained_run
    images = sorted((data / "test").rglob("*.jpg"))[::4]  # 16 images, both classes
    model = str(run / "model.pt")
    base = ["predict", *map(str, images), "--model", model, "--precision", "fp32", "--workers", "1", "-q"]
    assert main([*base, "--json", str(tmp_path / "a.json")]) == 0
    p = np.array([r["p_fake"] for r in json.loads((tmp_path / "a.json").read_text())])
    assert all(r["label"] == ("FAKE" if q >= 0.5 else "REAL")  # the model's own threshold, 0.5
               for r, q in zip(json.loads((tmp_path / "a.json").read_text()), p, strict=True))
    # A threshold equal to one image's P(fake), chosen so that it moves labels away from the 0.5 rule.
    moved = np.sort(p)[len(p) // 2 + 2]
    assert (p >= moved).sum() < (p >= 0.5).sum() or moved < 0.5
    assert main([*base, "--json", str(tmp_path / "b.json"), "--threshold", repr(float(moved))]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())
    np.testing.assert_array_equal([r["p_fake"] for r in rows], p)  # the threshold changes labels, not scores
    assert [r["label"] for r in rows] == ["FAKE" if q >= moved else "REAL" for q in p]
    assert next(r["label"] for r in rows if r["p_fake"] == moved) == "FAKE"  # at the threshold: FAKE
    assert [r["label"] for r in rows] != ["FAKE" if q >= 0.5 else "REAL" for q in p]
    assert main([*base, "--json", str(tmp_path / "c.json"), "--threshold", "1"]) == 0
    assert {r["label"] for r in json.loads((tmp_path / "c.json").read_text())} == {"REAL"}  # p < 1: none FAKE


def test_predict_precision_fp32_is_the_python_apis_fp32(trained_run, tmp_path):
    from aivsreal.device import cpu_bf16_native

    data, run = trained_run
    images = sorted((data / "test").rglob("*.jpg"))[::2]
    base = ["predict", *map(str, images), "--model", str(run / "model.pt"), "--device", "cpu", "--workers", "1",
            "-q"]
    expected = fp32_p_fake(run / "model.pt", images)
    got = {}
    for precision in ("fp32", "bf16"):
        assert main([*base, "--precision", precision, "--json", str(tmp_path / f"{precision}.json")]) == 0
        got[precision] = np.array([r["p_fake"] for r in json.loads((tmp_path / f"{precision}.json").read_text())])
    np.testing.assert_allclose(got["fp32"], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got["bf16"], expected, rtol=0, atol=2e-2)  # README: within ~1e-2 of fp32
    if cpu_bf16_native():  # bf16 really runs in bf16 here: its numbers are not fp32's
        assert np.abs(got["bf16"] - expected).max() > 1e-6
    else:  # a CPU without native bf16 quietly runs fp32 (device.py)
        np.testing.assert_allclose(got["bf16"], expected, atol=1e-6)


def test_predict_quiet_prints_no_table_but_writes_every_row(trained_run, tmp_path, capsys, caplog):
    data, run = trained_run
    folder = tmp_path / "in"
    folder.mkdir()
    for i, src in enumerate(sorted((data / "test").rglob("*.jpg"))[:5]):
        shutil.copy(src, folder / f"{i}.jpg")
    (folder / "junk.jpg").write_bytes(b"not an image")
    n = len(list(folder.glob("*.jpg")))
    args = ["predict", str(folder), "--model", str(run / "model.pt"), "--workers", "1"]
    assert main([*args, "--csv", str(tmp_path / "loud.csv")]) == 0
    loud = capsys.readouterr()
    assert loud.out.splitlines()[0] == "path\tlabel\tp_fake\tdomain" and len(loud.out.splitlines()) == n + 1
    assert main([*args, "-q", "--csv", str(tmp_path / "q.csv"), "--json", str(tmp_path / "q.json")]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == ""  # no header, no rows
    assert "1 of 6 input(s) could not be read" in caplog.text  # the warning is still logged
    rows = list(csv.DictReader(open(tmp_path / "q.csv")))
    assert len(rows) == n and rows == list(csv.DictReader(open(tmp_path / "loud.csv")))
    assert [r["source"] for r in json.loads((tmp_path / "q.json").read_text())] == [r["path"] for r in rows]


# ---------------------------------------------------------------- explain


def explain_inputs(data: Path) -> list[Path]:
    return sorted((data / "test" / "FAKE").glob("*.jpg"))[:2] + sorted((data / "test" / "REAL").glob("*.jpg"))[:2]


def same_png(a: np.ndarray, b: np.ndarray) -> None:
    """Equal but for rounding: a map computed in a batch of 4 and alone may differ by 1 in a few pixels."""
    assert a.shape == b.shape
    diff = np.abs(a.astype(int) - b)
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


def api_png(det: Detector, path: Path, target: str, layer: str | None = None, size: int = 64) -> np.ndarray:
    pixels = det.to_pixels(str(path))
    cam = Explainer(det, layer).explain(pixels[None], target=target)[0]
    return panels(picture(pixels[None], cam[None], None, size))


def test_explain_target_chooses_the_class_whose_evidence_is_drawn(trained_run, tmp_path):
    data, run = trained_run
    images = explain_inputs(data)
    model = str(run / "model.pt")
    pngs, labels = {}, {}
    for target in ("predicted", "FAKE", "REAL"):
        out = tmp_path / target
        assert main(["explain", *map(str, images), "--model", model, "--out", str(out), "--size", "64",
                     "--target", target, "--device", "cpu"]) == 0
        rows = list(csv.DictReader(open(out / "explanations.csv")))
        assert [r["explained"] for r in rows] == ([r["label"] for r in rows] if target == "predicted"
                                                  else [target] * len(rows))
        pngs[target] = [png(out / r["file"]) for r in rows]
        labels[target] = [r["label"] for r in rows]
    assert labels["predicted"] == ["FAKE", "FAKE", "REAL", "REAL"]  # the trained model gets these right
    det = Detector.load(model, device="cpu")
    for i, (path, label) in enumerate(zip(images, labels["predicted"], strict=True)):
        assert not np.array_equal(pngs["FAKE"][i], pngs["REAL"][i])  # the two classes' evidence differs
        np.testing.assert_array_equal(pngs["predicted"][i], pngs[label][i])  # default: each image's verdict
        for target in ("FAKE", "REAL"):
            same_png(pngs[target][i], api_png(det, path, target))


def test_explain_layer_is_used_and_a_bad_one_is_a_one_line_error(trained_run, tmp_path, capsys):
    data, run = trained_run
    images = explain_inputs(data)[:2]
    model = str(run / "model.pt")
    det = Detector.load(model, device="cpu")
    default = default_layer(det.network)
    earlier = "network.13"  # the GELU after the second block: 8x8 cells against the default's 4x4
    assert default != earlier
    for layer in (None, earlier):
        out = tmp_path / str(layer)
        assert main(["explain", *map(str, images), "--model", model, "--out", str(out), "--size", "64",
                     "--device", "cpu", *(["--layer", layer] if layer else [])]) == 0
    for path in images:
        name = f"{path.stem}.gradcam.png"
        at_default, at_earlier = png(tmp_path / "None" / name), png(tmp_path / earlier / name)
        same_png(at_earlier, api_png(det, path, "predicted", earlier))
        same_png(at_default, api_png(det, path, "predicted", default))
        assert np.abs(at_default.astype(int) - at_earlier).max() > 20  # another layer, another map
    capsys.readouterr()
    assert main(["explain", str(images[0]), "--model", model, "--out", str(tmp_path / "bad"),
                 "--layer", "nope"]) == 2
    line = one_line_error(capsys, "no layer 'nope'")
    assert default in line  # and says which one would do
    # a module that exists but outputs no feature map (the final linear unit)
    assert main(["explain", str(images[0]), "--model", model, "--out", str(tmp_path / "bad2"),
                 "--layer", "network.26"]) == 2
    one_line_error(capsys, "network.26")


def test_explain_a_native_crop_model(tmp_path):
    rng = np.random.default_rng(0)
    for cls, bright in (("REAL", 60), ("FAKE", 180)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(8):
            px = np.clip(bright + rng.normal(0, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(tmp_path / "data" / cls / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--crop", "32", "--epochs", "1", "--batch-size", "4",
                 "--out", str(out), "--no-cache", "--no-eval", "--workers", "0"]) == 0
    det = Detector.load(out / "model.pt", device="cpu")
    assert det.crop == 32 and det.network.config.options["crop"] == 32
    image = tmp_path / "data" / "FAKE" / "0.png"
    assert main(["explain", str(image), "--model", str(out / "model.pt"), "--out", str(tmp_path / "x"),
                 "--size", "64", "--target", "FAKE", "--device", "cpu"]) == 0
    written = png(tmp_path / "x" / "0.gradcam.png")
    views, _, layout = det.decode(str(image))  # four 32 px tiles covering the 40x48 image
    assert layout.canvas == (40, 48) and len(views) == len(layout.origins) == 4
    cams = Explainer(det).explain(views, target="FAKE", views=[len(views)])
    assert cams.shape == (4, 32, 32)  # every tile the model read is explained
    assert cams.max() == pytest.approx(1.0, abs=1e-5) and cams.std() > 0.01  # not all zeros, not flat
    assert written.shape == (53, 64 * 2 + 8, 3)  # the 40x48 canvas at 64 px, not a square tile
    same_png(written, panels(picture(views, cams, layout, 64)))
    assert not np.array_equal(written, panels(picture(views, np.zeros_like(cams), layout, 64)))


# ---------------------------------------------------------------- export --half


def test_export_half_stores_fp16_weights_and_scores_within_1e_2(trained_run, tmp_path, capsys):
    from safetensors import safe_open

    data, run = trained_run
    model = str(run / "model.pt")
    assert main(["export", "--model", model, "--format", "hf", "--out", str(tmp_path / "full")]) == 0
    assert main(["export", "--model", model, "--format", "hf", "--half", "--out", str(tmp_path / "half")]) == 0
    sizes = {k: (tmp_path / k / "model.safetensors").stat().st_size for k in ("full", "half")}
    assert 0.45 < sizes["half"] / sizes["full"] < 0.55
    with safe_open(str(tmp_path / "half" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert json.loads((tmp_path / "half" / "config.json").read_text())["weights_dtype"] == "float16"
    images = sorted((data / "test").rglob("*.jpg"))
    full, half = fp32_p_fake(tmp_path / "full", images), fp32_p_fake(tmp_path / "half", images)
    np.testing.assert_allclose(full, fp32_p_fake(model, images), atol=1e-6)  # hf export itself is lossless
    assert np.abs(half - full).max() <= 1e-2  # fp16 weights: P(fake) within 0.01 of the full file
    assert np.abs(half - full).max() > 0  # ... and really rounded
    capsys.readouterr()
    assert main(["export", "--model", model, "--half", "--out", str(tmp_path / "m.onnx")]) == 2
    one_line_error(capsys, "--half")  # ONNX has no --half: refused, not silently ignored
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------- evaluate --target-precision


def test_evaluate_target_precision_picks_the_lowest_threshold_that_reaches_it(trained_run, tmp_path):
    from aivsreal.commands.evaluate import load_saved

    data, run = trained_run
    model = tmp_path / "model.pt"
    shutil.copy(run / "model.pt", model)
    target = 0.95
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--cache-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "ev"), "--target-precision", str(target)]) == 0
    _, meta = load_model_file(model)
    summary = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert summary["threshold"] == summary["operating_point"]["threshold"] == meta.threshold
    assert meta.threshold != 0.5 and meta.operating_point["chosen_on"] == "val"
    # Recompute on the validation split the model's own recipe rebuilds, scored as calibration scores it.
    saved = load_saved(model, DataOptions(path=str(data), cache_dir=str(tmp_path / "c")), "cpu")
    p = sigmoid(image_logits_and_features(saved.network, saved.data.val.images, saved.device, tta=meta.tta)[0]
                / meta.temperature)
    y = saved.data.val.labels == 1

    def precision(t):
        return (y & (p >= t)).sum() / max((p >= t).sum(), 1)

    assert precision(meta.threshold) >= target
    assert meta.operating_point["val"]["precision"] == pytest.approx(precision(meta.threshold))
    lower = p[p < meta.threshold]
    assert len(lower) and precision(lower.max()) < target  # the next lower score would miss the target
    # The report's test figures use that threshold: predictions_test.csv labels follow it.
    rows = list(csv.DictReader(open(tmp_path / "ev" / "predictions_test.csv")))
    assert all(r["predicted"] == ("FAKE" if float(r["p_fake"]) >= meta.threshold else "REAL") for r in rows
               if abs(float(r["p_fake"]) - meta.threshold) > 1e-6)


# ---------------------------------------------------------------- train flags


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def noisy_dataset(root: Path) -> Path:
    """Tiny data whose classes overlap (every third image of either class is the same kind of plain grey
    picture), so a temperature can be fitted on val without running into its limit; plus one unreadable
    train file."""
    from conftest import jpeg_bytes

    make_dataset(root, {"train": 40, "test": 16}, seed=3)
    rng = np.random.default_rng(4)
    for f in sorted(root.rglob("*.jpg"))[::3]:
        f.write_bytes(jpeg_bytes(np.clip(120 + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)))
    (root / "train" / "REAL" / "junk.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(scope="module")
def flagged_run(tmp_path_factory):
    """One `train` run with --calibrate --no-tta --image-size 16, on data with an unreadable file."""
    root = tmp_path_factory.mktemp("flagged")
    data, out = noisy_dataset(root / "data"), root / "run"
    records = Records()
    logging.getLogger("aivsreal").addHandler(records)
    logging.getLogger("aivsreal").setLevel(logging.INFO)
    try:
        code = main(["train", "--data", str(data), "--out", str(out), "--cache-dir", str(root / "cache"),
                     "--epochs", "4", "--batch-size", "16", "--lr", "0.05", "--calibrate", "--no-tta",
                     "--image-size", "16", "--val-fraction", "0.25"])
    finally:
        logging.getLogger("aivsreal").removeHandler(records)
    assert code == 0
    return data, out, records.lines, root / "cache"


def test_train_no_tta_is_stored_and_used(flagged_run, trained_run):
    data, out, _, _ = flagged_run
    _, meta = load_model_file(out / "model.pt")
    assert meta.tta is False and json.loads((out / "metrics.json").read_text())["tta"] is False
    assert load_model_file(trained_run[1] / "model.pt")[1].tta is True  # the default, without --no-tta
    det = Detector.load(out / "model.pt", device="cpu", precision="fp32")
    pixels = np.stack([det.to_pixels(str(p)) for p in sorted((data / "test").rglob("*.jpg"))[:8]])
    plain = sigmoid(logits_and_features(det.network, pixels, torch.device("cpu"), tta=False, amp=False)[0]
                    / meta.temperature)
    mirrored = sigmoid(logits_and_features(det.network, pixels, torch.device("cpu"), tta=True, amp=False)[0]
                       / meta.temperature)
    assert np.abs(plain - mirrored).max() > 1e-4  # TTA would change the scores...
    np.testing.assert_allclose(det.predict_proba(pixels), plain, atol=1e-6)  # ... and predict does not use it


def test_train_image_size_is_stored_and_decodes_at_that_size(flagged_run):
    data, out, _, _ = flagged_run
    network, _ = load_model_file(out / "model.pt")
    assert network.config.image_size == 16
    assert json.loads((out / "metrics.json").read_text())["model"]["config"]["image_size"] == 16
    det = Detector.load(out / "model.pt", device="cpu")
    views, _, _ = det.decode(str(sorted((data / "test" / "FAKE").glob("*.jpg"))[0]))
    assert views.shape == (1, 16, 16, 3)  # the 32 px test image is read at the trained size


def test_train_time_budget_stops_before_the_next_epoch_and_says_so(tiny_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--no-cache", "--epochs", "3",
                 "--batch-size", "32", "--no-eval", "--time-budget", "0.0001"]) == 0  # 0.006 s
    training = load_model_file(out / "model.pt")[1].summary["training"]
    assert training["config"]["epochs"] == 3 and training["config"]["time_budget_s"] == pytest.approx(0.006)
    assert training["epochs_run"] == 1  # the first epoch outlasts the budget: no second one starts
    assert training["stopped_by_time_budget"] is True and training["stopped_early"] is False
    assert len(list(csv.DictReader(open(out / "history.csv")))) == 1
    assert "time budget of 0s reached after 1 epochs" in caplog.text


def test_train_calibrate_fits_the_temperature_on_validation(flagged_run):
    from aivsreal.commands.evaluate import load_saved
    from aivsreal.evaluate.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE, fit_temperature

    data, out, log_lines, cache = flagged_run
    _, meta = load_model_file(out / "model.pt")
    assert MIN_TEMPERATURE * 1.1 < meta.temperature < MAX_TEMPERATURE / 1.1 and abs(meta.temperature - 1) > 0.05
    assert json.loads((out / "metrics.json").read_text())["temperature"] == meta.temperature
    saved = load_saved(out / "model.pt", DataOptions(path=str(data), cache_dir=str(cache)), "cpu")
    logits = {name: image_logits_and_features(saved.network, split.images, saved.device, tta=meta.tta)[0]
              for name, split in (("val", saved.data.val), ("test", saved.data.test))}
    on_val = fit_temperature(logits["val"], saved.data.val.labels)
    on_test = fit_temperature(logits["test"], saved.data.test.labels)
    assert meta.temperature == pytest.approx(on_val, rel=2e-2)
    assert abs(on_test - on_val) > 0.1 * on_val  # so the check above tells val from test
    assert any(line.startswith(f"calibration: temperature {meta.temperature:.3f} fitted on "
                               f"{len(saved.data.val)} validation images") for line in log_lines)


def test_train_strict_fails_on_an_unreadable_image_and_writes_nothing(flagged_run, tmp_path, capsys):
    data, out, log_lines, cache = flagged_run
    assert any("skipped 1 unreadable image(s)" in line and "junk.jpg" in line for line in log_lines)
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "strict"), "--cache-dir", str(cache),
                 "--epochs", "1", "--batch-size", "16", "--strict"]) == 2  # README: expected failures exit 2
    line = one_line_error(capsys, "1 unreadable image(s), first:")
    assert "junk.jpg" in line and line.endswith("(--strict)")
    assert not (tmp_path / "strict" / "model.pt").exists()
    assert main(["evaluate", "--model", str(out / "model.pt"), "--data", str(data), "--cache-dir", str(cache),
                 "--out", str(tmp_path / "ev"), "--strict"]) == 2  # the other verbs' --strict too
    one_line_error(capsys, "(--strict)")


def test_train_pretrained_weights_file_is_loaded(tmp_path):
    import timm

    from aivsreal.models import build_model, default_config

    torch.manual_seed(1234)
    imagenet = timm.create_model("efficientnet_lite0", pretrained=False, bn_eps=1e-3)
    state = {k: (v + 0.1 * torch.randn_like(v)) if "conv" in k else v  # distinct from any seed-0 init
             for k, v in imagenet.state_dict().items()}
    torch.save(state, tmp_path / "lite0.pth")
    data = make_dataset(tmp_path / "data", {"train": 10, "test": 4})
    out = tmp_path / "run"
    assert main(["train", "--model", "efficientnet_lite0", "--pretrained", "--weights", str(tmp_path / "lite0.pth"),
                 "--data", str(data), "--out", str(out), "--no-cache", "--epochs", "1", "--batch-size", "8",
                 "--lr", "1e-9", "--no-eval", "--val-fraction", "0.2"]) == 0
    network, meta = load_model_file(out / "model.pt")
    trained = network.network.state_dict()
    for key in ("conv_stem.weight", "blocks.3.1.conv_pw.weight", "conv_head.weight"):
        np.testing.assert_allclose(trained[key].numpy(), state[key].numpy(), atol=1e-5)  # lr 1e-9: unchanged
    torch.manual_seed(0)  # what train's own seed would have initialised without the file
    scratch = build_model(default_config("efficientnet_lite0")).network.state_dict()
    assert not np.allclose(trained["conv_stem.weight"].numpy(), scratch["conv_stem.weight"].numpy(), atol=1e-3)
    assert trained["classifier.weight"].shape == (1, 1280)  # a fresh one-unit head on the ImageNet body
    assert meta.summary["model"]["pretrained"] is True


def test_train_no_codec_chain_trains_on_plain_native_crops(tmp_path, monkeypatch):
    import aivsreal.train.batches as batches

    rng = np.random.default_rng(0)
    sources = {}
    for cls, bright in (("REAL", 60), ("FAKE", 180)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(8):
            px = np.clip(bright + rng.normal(0, 40, (40, 44, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(tmp_path / "data" / cls / f"{i}.png")  # lossless: crops are exact
            sources[f"{cls}/{i}.png"] = px
    seen = []
    original = batches.training_views

    def recording(images, order, batch_size, epoch, chain, seed, workers):
        for x in original(images, order, batch_size, epoch, chain, seed, workers):
            seen.append((x.clone(), [images.refs[int(i)] for i in order[len(seen) * batch_size:][:len(x)]]))
            yield x

    monkeypatch.setattr(batches, "training_views", recording)

    def is_native_crop(view: np.ndarray, px: np.ndarray) -> bool:
        h, w = px.shape[:2]
        return any(np.array_equal(view, px[y:y + 32, x:x + 32]) for y in range(h - 31) for x in range(w - 31))

    def plain_share(extra):
        seen.clear()
        out = tmp_path / f"run{len(extra)}"
        assert main(["train", "--data", str(tmp_path / "data"), "--crop", "32", "--epochs", "1", "--batch-size", "4",
                     "--out", str(out), "--no-cache", "--no-eval", "--workers", "0", *extra]) == 0
        views = [(x[k].permute(1, 2, 0).numpy(), ref) for x, refs in seen for k, ref in enumerate(refs)]
        assert len(views) >= 8
        plain = [is_native_crop(v, sources[f"{Path(ref.display).parent.name}/{Path(ref.display).name}"])
                 for v, ref in views]
        return np.mean(plain), out

    share, out = plain_share(["--no-codec-chain"])
    assert share == 1.0  # every training view is an untouched native crop of its own image
    training = load_model_file(out / "model.pt")[1].summary["training"]
    assert training["config"]["codec_chain"] is False and training["codec_chain"] is None
    assert training["stopped_by_time_budget"] is False  # no budget: its epochs ran out, nothing stopped it
    share, out = plain_share([])
    assert share < 0.5  # by default the chain re-encodes (JPEG, rescale, blur, noise) most views
    assert list(load_model_file(out / "model.pt")[1].summary["training"]["codec_chain"]["jpeg_quality"]) == [65, 100]


# ---------------------------------------------------------------- ensemble of two families


def test_ensemble_of_different_networks_scores_the_mean_of_their_p_fake(trained_run, tmp_path, capsys):
    from aivsreal.models import build_model, default_config

    data, run = trained_run
    fast = tmp_path / "fast.pt"
    shutil.copy(run / "model.pt", fast)  # trained, flip-TTA on, temperature 1
    torch.manual_seed(7)
    lite = tmp_path / "lite0.pt"  # another family, read another way: no TTA, temperature 3
    save_model(lite, build_model(default_config("efficientnet_lite0")), ModelMeta(tta=False, temperature=3.0))
    out = tmp_path / "e.pt"
    assert main(["ensemble", str(fast), str(lite), "--out", str(out)]) == 0
    assert "soft vote of fast (fast), lite0 (efficientnet_lite0)" in capsys.readouterr().out
    images = sorted((data / "test").rglob("*.jpg"))[::2]
    pf, pl, pe = (fp32_p_fake(m, images) for m in (fast, lite, out))
    assert np.abs(pf - pl).max() > 0.3  # the members disagree: the rule matters
    np.testing.assert_allclose(pe, (pf + pl) / 2, atol=1e-5)  # README: the mean of the members' P(fake)
    logit = np.log(pf / (1 - pf)) + np.log(pl / (1 - pl))
    assert np.abs(pe - sigmoid(logit / 2)).max() > 1e-2  # not the mean logit, which reads differently
    assert Detector.load(out, device="cpu").threshold == 0.5
    network, _ = load_model_file(out)
    assert [m["config"]["name"] for m in network.config.options["members"]] == ["fast", "efficientnet_lite0"]
