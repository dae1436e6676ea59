"""The benchmark scripts end to end on tiny data: the figures they write equal a direct computation.

Each script's main() runs as `python benchmarks/NAME.py ...` would, with its results folder (and,
for the bundling scripts, the package's bundled/ folder) redirected to tmp_path. A guard checks
that benchmarks/results/, benchmarks/runs/ and src/aivsreal/bundled/ are left exactly as they were.
Servers are started on 127.0.0.1 only.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import benchmark_script, jpeg_bytes, synthetic_image
from PIL import Image

import aivsreal
from aivsreal.models.card import experimental_line
from aivsreal.predict.detector import Detector
from aivsreal.report.provenance import KEYS, LIBRARIES

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
GUARDED = (BENCHMARKS / "results", BENCHMARKS / "runs", REPO / "src" / "aivsreal" / "bundled")


def listing() -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for root in GUARDED if root.exists() for p in sorted(root.rglob("*"))}


@pytest.fixture(autouse=True)
def committed_results_untouched(tmp_path, monkeypatch):
    """No test may write into the committed results or the package; the data cache goes to tmp_path."""
    monkeypatch.setenv("AIVSREAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import each other (`from wild import ...`)
    before = listing()
    yield
    assert listing() == before, "a benchmark script wrote into benchmarks/results, benchmarks/runs or bundled/"


def run_main(module, monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *args])
    module.main()


def assert_provenance(result: dict) -> None:
    head = result["provenance"]
    assert tuple(head) == KEYS
    assert re.fullmatch(r"[0-9a-f]{40}", head["git_commit"]), head["git_commit"]
    assert subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", head["git_commit"] + "^{commit}"]).returncode == 0
    assert isinstance(head["git_dirty"], bool)
    assert tuple(head["versions"]) == LIBRARIES and head["versions"]["aivsreal"] == aivsreal.__version__
    assert head["versions"]["torch"] and head["versions"]["numpy"]


def printed_json(out: str) -> dict:
    """The indented JSON object a script printed last (after its progress lines)."""
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def harder_test_split(source: Path, data: Path) -> Path:
    """A copy of the trained model's data whose test split has 3 wrong labels and 3 noise images:
    accuracy and the share flagged out of domain are then neither 0 nor 1."""
    shutil.copytree(source, data)
    rng = np.random.default_rng(5)
    test = data / "test"
    for i in range(3):
        (test / "FAKE" / f"{i}.jpg").rename(test / "REAL" / f"swapped{i}.jpg")
        (test / "REAL" / f"noise{i}.jpg").write_bytes(jpeg_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    return data


def split_files(data: Path) -> tuple[list[Path], np.ndarray]:
    files = sorted((data / "test").rglob("*.jpg"))
    return files, np.array([int(p.parent.name == "FAKE") for p in files])


# ---------------------------------------------------------------- domain.py


def test_domain_figures_equal_the_detector_s_own_verdicts(trained_run, tmp_path, monkeypatch):
    """In-domain flagged share and accuracies, and each wild row's flagged share and detector accuracy,
    are what `Detector.predict` says about the same files."""
    source, run = trained_run
    data = harder_test_split(source, tmp_path / "data")
    rng = np.random.default_rng(5)
    wild = tmp_path / "wild"
    for label, cls in enumerate(("REAL", "FAKE")):
        (wild / cls).mkdir(parents=True)
        for i, side in enumerate((32, 48, 32, 300)):  # in and out of the training sizes
            (wild / cls / f"{i}.png").write_bytes(png_bytes(synthetic_image(label if i != 2 else 1 - label, rng,
                                                                             side)))
    domain = benchmark_script("domain")
    monkeypatch.setattr(domain, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(domain, "skimage_photos", lambda: [  # a few photos' stand-ins, not 16 large ones
        (f"photo{i}", png_bytes(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))) for i in range(4)])
    run_main(domain, monkeypatch, "--model", str(run / "model.pt"), "--data", str(data), "--wild", str(wild))

    result = json.loads((tmp_path / "results" / "domain.json").read_text())
    assert_provenance(result)
    det = Detector.load(run / "model.pt", device="cpu")  # the script's precision: bf16 where the CPU has it
    files, labels = split_files(data)
    preds = det.predict([p.read_bytes() for p in files])
    kept = np.array([p.in_domain for p in preds])
    correct = (np.array([p.p_fake for p in preds]) >= det.threshold) == labels
    ind = result["in_domain"]
    assert ind["n"] == len(files) == 67
    assert 0 < (~kept).sum() < len(files) and 0 < correct.mean() < 1  # the figures below are not 0 or 1 by luck
    assert ind["n_flagged"] == (~kept).sum()
    assert ind["flagged"] == pytest.approx(np.mean(~kept))
    assert ind["accuracy_in_domain"] == pytest.approx(correct[kept].mean())
    assert ind["accuracy_flagged"] == pytest.approx(correct[~kept].mean())

    rows = {(r["set"], r["as"]): r for r in result["out_of_domain"]}
    assert len(rows) == 4
    stored = rows["wild development set", "as stored"]
    wild_files = sorted(wild.rglob("*.png"))
    wild_labels = np.array([int(p.parent.name == "FAKE") for p in wild_files])
    wild_preds = det.predict([p.read_bytes() for p in wild_files])
    assert stored["n"] == len(wild_files)
    assert stored["flagged"] == pytest.approx(np.mean([not p.in_domain for p in wild_preds]))
    assert stored["detector_accuracy"] == pytest.approx(
        np.mean((np.array([p.p_fake for p in wild_preds]) >= det.threshold) == wild_labels))
    assert rows["scikit-image sample photos", "as stored"]["n"] == 4
    md = (tmp_path / "results" / "domain.md").read_text()
    assert f"**{ind['flagged']:.2%}**" in md and f"{ind['accuracy_in_domain']:.4f}" in md
    assert f"**{stored['flagged']:.1%}**" in md


# ---------------------------------------------------------------- bundle.py


def test_bundle_writes_the_model_it_was_given_and_a_card_with_its_figures(trained_run, tmp_path, monkeypatch,
                                                                         capsys):
    """bundle.py on a trained run: the folder scores as the run's model.pt does (its weights rounded to
    fp16 when the script says it stored fp16), and the card's test figures are the model's own."""
    source, run = trained_run
    data = harder_test_split(source, tmp_path / "data")
    bundle = benchmark_script("bundle")
    monkeypatch.setattr(bundle, "BUNDLED", tmp_path / "bundled")
    monkeypatch.setattr(bundle, "ROBUSTNESS_IMAGES", 16)  # 20 perturbations of each
    run_main(bundle, monkeypatch, "--run", str(run), "--data", str(data), "--name", "tiny")
    printed = printed_json(capsys.readouterr().out)
    out = tmp_path / "bundled" / "tiny"
    assert printed["out"] == str(out) and sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["weights_dtype"] == ("float16" if printed["stored_fp16"] else "float32")

    files, labels = split_files(data)
    pixels = np.stack([Detector.load(run / "model.pt").to_pixels(p.read_bytes()) for p in files])
    original = Detector.load(run / "model.pt", device="cpu", precision="fp32")
    if printed["stored_fp16"]:  # what the folder should hold: the same weights rounded to fp16
        state = original.network.state_dict()
        original.network.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                                          for k, v in state.items()})
    bundled = Detector.load(out, device="cpu", precision="fp32")
    np.testing.assert_allclose(bundled.predict_proba(pixels), original.predict_proba(pixels), rtol=0, atol=1e-6)
    assert bundled.threshold == original.threshold and bundled.meta.domain is not None

    # the card's test accuracy is the model's on the test files, as users score them (default precision)
    p = np.array([x.p_fake for x in Detector.load(run / "model.pt", device="cpu").predict(
        [f.read_bytes() for f in files])])
    accuracy = float(np.mean((p >= original.threshold) == labels))
    assert 0 < accuracy < 1
    assert printed["test_accuracy"] == pytest.approx(accuracy)
    assert config["meta"]["summary"]["metrics"]["test"]["accuracy"] == pytest.approx(accuracy)
    card = (out / "README.md").read_text()
    assert f"| test | {len(files)} | {accuracy:.4f} |" in card
    fp32 = Detector.load(run / "model.pt", device="cpu", precision="fp32").predict_proba(pixels)
    accuracy32 = float(np.mean((fp32 >= original.threshold) == labels))
    assert printed["fp16"]["accuracy_fp32_weights"] == pytest.approx(accuracy32)
    assert (f"vs {accuracy32:.4f} in fp32, {printed['fp16']['verdicts_changed']} of {len(files)} verdicts changed"
            in card)
    assert "## Robustness (16 random test images, every one perturbed)" in card


# ---------------------------------------------------------------- bundle_wild.py


def fake_wild_set(root: Path) -> tuple[Path, Path, Path]:
    """16 development images of 224x224 from 4 REAL and 4 FAKE sources (what group k-fold over sources
    needs) and 4 locked external ones from one source of each class, in wild.py's layout; their
    labels.csv (with content tags), a sources table as in the set's SOURCES.md, and external.txt."""
    rng = np.random.default_rng(2)
    lines = ["relpath,cls,source,family,repo,format,width,height,sha1,content"]
    table = ["| source | repository @ commit | licence | REAL | FAKE | notes |", "|---|---|---|---|---|---|"]
    for label, cls in enumerate(("REAL", "FAKE")):
        for s in range(5):
            source = f"{cls.lower()}_src{s}" if s < 4 else f"{cls.lower()}_external"
            table.append(f"| {source} | owner/{source} @ abc{s} | MIT | {2 * (1 - label)} | {2 * label} | x |")
            for i in range(2):
                relpath = f"{cls}/{source}/{i}.{'jpg' if label == 0 else 'png'}"
                pixels = synthetic_image(label if (s, i) != (0, 1) else 1 - label, rng, 224)  # one odd image
                data = jpeg_bytes(pixels) if label == 0 else png_bytes(pixels)
                (root / relpath).parent.mkdir(parents=True, exist_ok=True)
                (root / relpath).write_bytes(data)
                lines.append(f"{relpath},{cls},{source},{'REAL' if label == 0 else f'gen{s}'},owner/{source},"
                             f"{'JPEG' if label == 0 else 'PNG'},224,224,{hash(relpath) & 0xFFFFFFFF:x},"
                             f"{('animal', 'food')[i]}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "SOURCES.md").write_text("\n".join(table) + "\n")
    (root / "external.txt").write_text("# locked\nreal_external\nfake_external\n")
    return root / "labels.csv", root / "SOURCES.md", root / "external.txt"


def cached_features(wild, rows: list[dict], labels: np.ndarray, dim: int, root: Path) -> dict[str, np.ndarray]:
    """What wild.py leaves in its --cache for these rows (features_for's arrays): here drawn at random,
    the FAKE images' features shifted, so that a probe has something to learn. Computing real Lite2
    features takes about 2 s per image on 2 cores; wild.py's tests cover that part."""
    rng = np.random.default_rng(3)
    per_row = {}
    for row, y in zip(rows, labels, strict=True):
        shift = np.where(np.arange(dim) < 40, 0.8 * y, 0.0)
        views = {k: rng.normal(size=(2, dim)) + shift for k in ("chain", "plain")}
        per_row[row["relpath"]] = {  # every array wild.py caches per image, whatever its version holds
            **{k: np.zeros(9) if k.startswith("meta_") else rng.normal(size=dim) + shift for k in wild.ROW_ARRAYS},
            **views, "same_codec_bytes": np.frombuffer((root / row["relpath"]).read_bytes(), np.uint8)}
    return per_row


def test_bundle_wild_ships_the_refitted_probe_a_held_out_domain_check_and_scores_the_external_set_once(
        tmp_path, monkeypatch, capsys):
    """bundle_wild.py reads wild.py's feature cache (here: one made by the test) and wild.json's
    photoreal figures: the folder it writes holds the ImageNet Lite2 backbone, a head equal to the probe
    refitted on the 512 px reductions' features with the C that group CV picks, the view it was fitted
    on, a domain check whose threshold is set on held-out sources, and the locked external set's AUC
    from the shipped files, scored once; below 0.80 the detector ships experimental."""
    from aivsreal.models.domain import DomainCheck, held_out_scores
    from aivsreal.models.file import experimental_reason

    wild_py = benchmark_script("wild")
    recipe = wild_py.BUNDLED_RECIPE
    root = tmp_path / "wild"
    labels_csv, sources_md, external_txt = fake_wild_set(root)
    every = wild_py.read_labels([str(labels_csv)])
    rows = [r for r in every if "external" not in r["source"]]
    labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    sources = np.array([r["source"] for r in rows])
    imagenet = wild_py.build_model(wild_py.default_config("lite2_probe"), pretrained=True).eval()
    dim = imagenet.network.head.in_features
    cache = tmp_path / "features.npz"
    np.savez(wild_py.feature_cache(cache, "lite2"), **wild_py._pack(cached_features(wild_py, rows, labels, dim, root)),
             feature_seconds=np.array(1.0), views_version=np.array(wild_py.VIEWS_VERSION))
    same = {"pooled_auc": 0.8123, "n_real": 6, "n_fake": 6,
            "per_content": {"animal": {"n_real": 3, "n_fake": 3, "auc": 0.7111}},
            "per_family": {"REAL": {"n": 6, "auc_vs_other_class": 0.6}, "gen0": {"n": 2, "auc_vs_other_class": 0.9012,
                                                                                   "fake_recall": 0.5}}}
    held_out = {"date": "2026-01-01", "command": "python benchmarks/wild.py --wild W",
                "photoreal": {"contenders": {recipe: {"same_size": same, "native_512": {"pooled_auc": 0.6012}}},
                              "content_baseline_auc": 0.6321,
                              "shortcut_baseline_auc": 0.5012, "content_matched": {recipe: {"same_size": {
                                  "pooled_auc": 0.7345}}}, "size_matched": {recipe: {"same_size": {
                                      "pooled_auc": 0.7456}}}}}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "wild.json").write_text(json.dumps(held_out))
    bundle_wild = benchmark_script("bundle_wild")
    monkeypatch.setattr(bundle_wild, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bundle_wild, "EXTERNAL_JSON", tmp_path / "results" / "wild_external.json")
    monkeypatch.setattr(bundle_wild, "BUNDLED", tmp_path / "bundled")
    monkeypatch.setattr(bundle_wild, "FP16_SAMPLE", 3)  # 224 px Lite2 passes cost ~0.2 s each here
    args = ("--wild", str(root), "--labels", str(labels_csv), "--cache", str(cache), "--sources", str(sources_md),
            "--external", str(external_txt))
    run_main(bundle_wild, monkeypatch, *args)
    printed = printed_json(capsys.readouterr().out)
    out = tmp_path / "bundled" / "wild"
    assert printed["out"] == str(out)
    config = json.loads((out / "config.json").read_text())
    half = printed["fp16"]["verdicts_changed"] == 0
    assert config["weights_dtype"] == ("float16" if half else "float32")

    def stored(t):  # what the folder should hold of a float tensor
        return t.half().float() if half else t

    feats = cached_features(wild_py, rows, labels, dim, root)
    reduced = np.stack([f["same_size"] for f in feats.values()])
    c = wild_py.inner_c(reduced[:, None], labels, sources)
    assert printed["C"] == c
    fitted = wild_py.probe(reduced[:, None], labels, c)
    scaler, lr = fitted.named_steps["standardscaler"], fitted.named_steps["logisticregression"]
    weight = lr.coef_[0] / scaler.scale_
    bias = float(lr.intercept_[0] - weight @ scaler.mean_)
    bundled = Detector.load(out, device="cpu", precision="fp32")
    head = bundled.network.network.head
    np.testing.assert_allclose(head.weight.detach().numpy()[0], stored(torch.from_numpy(weight).float()).numpy(),
                               rtol=1e-6, atol=1e-7)
    assert float(head.bias.detach()) == pytest.approx(float(stored(torch.tensor(bias))), abs=1e-6)
    with torch.no_grad():
        logits = head(torch.from_numpy(reduced).float()).squeeze(1).numpy()
    np.testing.assert_allclose(logits, fitted.decision_function(reduced), atol=0.02 if half else 1e-3)
    assert np.mean((logits > 0) == labels) > 0.8  # the probe learnt the shift: not a constant head
    backbone = {k: v for k, v in imagenet.state_dict().items() if not k.startswith("network.head")}
    got = bundled.network.state_dict()
    assert all(torch.equal(got[k], stored(v) if v.is_floating_point() else v) for k, v in backbone.items())
    assert bundled.config.options["rescale"] == 512 and bundled.config.options["reencode"] == 90
    assert bundled.max_views == 4

    # the domain threshold: where 95% of held-out sources' images stay, in the shipped check's units
    sizes = np.full((len(rows), 2), 224)
    folds = wild_py.source_folds(list(sources), labels)
    fit, val = wild_py.stratified_split(labels, 0.1, seed=0)
    check = DomainCheck.fit(reduced[fit], labels[fit], reduced[val], sizes[fit])
    check.recalibrate(held_out_scores(reduced, labels, folds, sizes), reduced[val])
    assert bundled.meta.domain.held_out_quantile == 0.95
    assert bundled.meta.domain.threshold == pytest.approx(check.threshold, rel=1e-4)
    assert printed["domain"]["n"] == 16 and 0 <= printed["domain"]["wrong"] <= 16

    # the external set: scored by the shipped files, its AUC on the card and in the experimental flag
    external = json.loads((tmp_path / "results" / "wild_external.json").read_text())
    ext_rows = [r for r in every if "external" in r["source"]]
    preds = bundled.predict([root / r["relpath"] for r in ext_rows])
    ext_labels = [int(r["cls"] == "FAKE") for r in ext_rows]
    from sklearn.metrics import roc_auc_score
    assert external["pooled_auc"] == pytest.approx(roc_auc_score(ext_labels, [p.p_fake for p in preds]), abs=1e-4)
    assert external["sources"] == ["fake_external", "real_external"] and external["n_real"] == 2
    summary = config["meta"]["summary"]
    assert summary["external"]["auc"] == external["pooled_auc"] == printed["external_auc"]
    assert summary["held_out"] == {"photoreal_same_size_auc": 0.8123}
    assert summary["data"]["train"] == 16 and f"C={c}" in summary["training"]["recipe"]
    assert "real_external" not in summary["data"]["sources"]
    reason = experimental_reason(external["pooled_auc"], 0.8123)
    assert bundled.experimental == reason
    card = (out / "README.md").read_text()
    if reason:
        assert card.splitlines()[7] == experimental_line(reason)  # under "# `wild`: ..."
    assert "Photoreal slice, sources held out: AUC 0.812**" in card and "Content-only baseline 0.632" in card
    assert "matched on stored size 0.746" in card and f"AUC {external['pooled_auc']:.3f}**" in card
    assert "native 512 px crops instead of the resize score 0.601" in card
    assert "| animal | 3 | 3 | 0.711 |" in card and "| gen0 | 2 | 0.901 | 50% |" in card
    for s in ("real_src0", "fake_src2"):
        assert f"| {s} | owner/{s} @ abc" in card
    assert "| real_external |" not in card

    # touched once: a second scoring is refused, unless asked for, and then recorded
    with pytest.raises(SystemExit) as stop:
        run_main(bundle_wild, monkeypatch, *args)
    assert stop.value.code == 2 and "scored once" in capsys.readouterr().err
    run_main(bundle_wild, monkeypatch, *args, "--rescore-external")
    again = json.loads((tmp_path / "results" / "wild_external.json").read_text())
    assert again["rescored_after"]["pooled_auc"] == external["pooled_auc"]


# ---------------------------------------------------------------- inference.py


def test_inference_rows_cover_every_model_backend_and_batch(tmp_path, monkeypatch):
    inference = benchmark_script("inference")
    monkeypatch.setattr(inference, "RESULTS", tmp_path / "results")
    monkeypatch.chdir(tmp_path)  # no benchmarks/runs/ here: freshly initialised models, as documented
    run_main(inference, monkeypatch, "--models", "fast", "--batches", "1", "3", "--rounds", "1", "--seconds", "0")
    result = json.loads((tmp_path / "results" / "inference.json").read_text())
    assert_provenance(result)
    rows = result["rows"]
    backends = ("torch fp32", "torch bf16", "onnxruntime fp32")
    assert sorted((r["model"], r["backend"], r["batch"]) for r in rows) == sorted(
        ("fast", b, n) for b in backends for n in (1, 3))
    for r in rows:
        assert r["weights"] == "untrained" and r["tta"] is True and len(r["rounds"]) == 1
        assert r["img_per_s"] > 0 and r["rounds"] == [round(r["img_per_s"])]
    md = (tmp_path / "results" / "inference.md").read_text()
    assert "| model | backend | batch 1 img/s | batch 3 img/s |" in md
    for b in backends:
        got = {r["batch"]: r["img_per_s"] for r in rows if r["backend"] == b}
        assert f"| `fast` | {b} | {got[1]:,.0f} | {got[3]:,.0f} |" in md


def test_inference_photos_case_times_predict_and_keeps_the_pixel_rows(tmp_path, monkeypatch):
    """`--photos`: one row per model and folder kind from real `aivsreal predict` runs, the draft check
    for a rescale model per class, and the pixel section of an earlier run kept as it was."""
    inference = benchmark_script("inference")
    monkeypatch.setattr(inference, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(inference, "PHOTO", (240, 180))  # tiny "photos": the mechanics, not the speed
    monkeypatch.setattr(inference, "PNG_SIZE", (120, 90))
    (tmp_path / "results").mkdir()
    earlier = {"provenance": {"date": "earlier"}, "meta": {"date": "2026-11-24", "command": "c", "cpus": 2,
               "torch": "t"}, "rows": [{"model": "fast", "backend": b, "batch": 1, "img_per_s": 5.0}
                                      for b in ("torch fp32", "torch bf16", "onnxruntime fp32")]}
    (tmp_path / "results" / "inference.json").write_text(json.dumps(earlier))
    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import save_model

    config = default_config("fast")
    config.options = {**config.options, "crop": 32}
    save_model(tmp_path / "crop.pt", build_model(config))
    source = tmp_path / "source"
    for label, seed in (("REAL", 0), ("FAKE", 1)):
        (source / label).mkdir(parents=True)
        (source / label / "a.jpg").write_bytes(jpeg_bytes(synthetic_image(seed, np.random.default_rng(seed), 160)))
    run_main(inference, monkeypatch, "--photos", "3", "--rounds", "1", "--model", f"{tmp_path / 'crop.pt'}@64",
             "--photo-source", str(source), "--draft-images", "1")
    result = json.loads((tmp_path / "results" / "inference.json").read_text())
    assert {k: result[k] for k in earlier} == earlier
    photos = result["photos"]
    assert_provenance(photos)
    assert [(r["images"], r["rescale"], r["n"]) for r in photos["rows"]] == [("jpeg12mp", 64, 3), ("png1mp", 64, 3)]
    for r in photos["rows"]:
        assert r["img_per_s"] > 0 and r["max_rss_mb"] > 50 and r["tree_pss_mb"] > 50 and len(r["walls_s"]) == 1
    assert photos["meta"]["photos"] == "synthetic textures"  # no source photo is camera-size
    draft = photos["draft"][f"{tmp_path / 'crop.pt'}@64"]
    assert [(d["class"], d["n"]) for d in draft] == [("REAL", 1), ("FAKE", 1)]
    assert all(0 < d["mean_abs_pixel"] < 5 for d in draft)  # 160 px JPEGs read at 1/2 scale, then resized
    md = (tmp_path / "results" / "inference.md").read_text()
    assert "`aivsreal predict` on camera-size photos" in md
    assert md.count("| 12 MP JPEG q90 |") == 1 and "| REAL | 1 |" in md and "| `fast` | torch bf16 | 5 |" in md


# ---------------------------------------------------------------- load_test.py


def untrained_model(path: Path) -> Path:
    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import save_model

    save_model(path, build_model(default_config("fast")))
    return path


def test_load_test_counts_every_request_once(tmp_path, monkeypatch):
    """Three good JPEGs and one truncated one: the server scores the good ones as the Python API does
    and refuses the bad one, so both counts are nonzero and must add up to the requests sent."""
    rng = np.random.default_rng(4)
    good = [jpeg_bytes(synthetic_image(i % 2, rng)) for i in range(3)]
    with zipfile.ZipFile(tmp_path / "test.zip", "w") as zf:
        for i, data in enumerate(good):
            zf.writestr(f"test/REAL/{i}.jpg", data)
        zf.writestr("test/FAKE/broken.jpg", good[0][:200])
    model = untrained_model(tmp_path / "model.pt")
    load_test = benchmark_script("load_test")
    monkeypatch.setattr(load_test, "RESULTS", tmp_path / "results")
    with pytest.raises(SystemExit) as e:  # exit 1: some answers were not the expected P(fake)
        run_main(load_test, monkeypatch, "--model", str(model), "--data", str(tmp_path), "--clients", "2",
                 "--seconds", "1.5", "--images", "4", "--max-requests", "40")
    assert e.value.code == 1
    result = json.loads((tmp_path / "results" / "load.json").read_text())
    assert_provenance(result)
    assert result["clients"] == 2 and 0 < result["requests"] <= 80
    assert result["requests"] == result["correct"] + result["failed_or_wrong"]
    assert result["correct"] > 0 and result["failed_or_wrong"] > 0
    assert all("p_fake None" in f for f in result["failures_sample"])
    # clients walk the 4 images in turn: the broken one is about a quarter of what was sent
    assert abs(result["failed_or_wrong"] - result["requests"] / 4) <= 2
    # seconds is rounded to 0.1 s and a run may stop early at --max-requests, so bound by the rounding
    lo, hi = (result["correct"] / (result["seconds"] + d) for d in (0.05, -0.05))
    assert lo - 0.05 <= result["requests_per_s"] <= hi + 0.05
    md = (tmp_path / "results" / "load.md").read_text()
    assert (f"| 2 | {result['seconds']} | {result['requests']} | {result['correct']} | "
            f"{result['failed_or_wrong']} | {result['requests_per_s']} |") in md


# ---------------------------------------------------------------- load_hostile.py


def test_bundle_wild_finds_each_source_s_licence_in_every_table_shape(tmp_path):
    """The card's licence column: a sources table led by the source, one led by its split (the photoreal
    README), and a notes heading; a source named nowhere is left out, never guessed."""
    bundle_wild = benchmark_script("bundle_wild")
    (tmp_path / "a.md").write_text("| source | repo | licence |\n|---|---|---|\n| alpha | o/a @1 | MIT |\n")
    (tmp_path / "b.md").write_text("| split | source | repo | licence | cls |\n"
                                   "| dev | beta | o/b @2 | **non-commercial** | REAL |\n"
                                   "### gamma: o/c @ 3f (Apache-2.0)\n")
    found = bundle_wild.licences([tmp_path / "a.md", tmp_path / "b.md"], {"alpha", "beta", "gamma", "delta"})
    assert found == {"alpha": ("o/a @1", "MIT"), "beta": ("o/b @2", "**non-commercial**"),
                     "gamma": ("o/c @ 3f", "Apache-2.0")}


def test_bundle_wild_s_scale_note_quotes_each_policy_by_its_view(tmp_path):
    bundle_wild = benchmark_script("bundle_wild")
    assert bundle_wild.scale_note(tmp_path / "absent.json") == ""
    views = {"native": "same_codec", "shipped": "same_size", "wide one": "wide"}
    aucs = {"native": 0.8, "shipped": 0.7, "wide one": 0.75}
    (tmp_path / "s.json").write_text(json.dumps({"large_px": 1024, "n_real": 3, "n_fake": 4, "views": views,
                                                 "policies": {k: {"pooled_auc": v} for k, v in aucs.items()}}))
    note = bundle_wild.scale_note(tmp_path / "s.json")
    assert "scores 0.700 with this policy, 0.750 with a 1,024 px reduction" in note
    assert "0.800 reading native tiles" in note and "(3 REAL, 4 FAKE" in note


def test_spool_bytes_sees_a_process_s_open_temporary_files(tmp_path, monkeypatch):
    """The load benchmark's spool figure: an open temporary file counts by the disk it holds, a closed one
    no longer does. Tested apart from the load run, whose short requests may end between two samples."""
    import os
    import tempfile

    load_hostile = benchmark_script("load_hostile")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = load_hostile.spool_bytes(os.getpid())
    with tempfile.TemporaryFile() as f:
        f.write(os.urandom(3 * 2**20))
        f.flush()
        os.fsync(f.fileno())
        held = load_hostile.spool_bytes(os.getpid())
    assert held - before >= 3 * 2**20
    assert load_hostile.spool_bytes(os.getpid()) == before


def test_load_hostile_measures_each_case_and_keeps_other_models_rows(tmp_path, monkeypatch):
    """Three cases on a tiny untrained model: every attack request and every normal one is counted, the
    slow sockets are cut or refused (never answered 200), and a second model's run keeps the first's rows."""
    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import save_model

    load_hostile = benchmark_script("load_hostile")
    monkeypatch.setattr(load_hostile, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(load_hostile, "TRICKLE_S", 1.0)
    model = tmp_path / "model.pt"
    save_model(model, build_model(default_config("fast")))
    (tmp_path / "results").mkdir()
    other = {"provenance": {"cpu": "c", "threads": 2}, "command": "python benchmarks/load_hostile.py --model other",
             "date": "2026-12-01", "settings": {k: 1 for k in ("clients", "seconds", "big_files", "photos", "trickle")},
             "cases": []}
    (tmp_path / "results" / "load_hostile.json").write_text(json.dumps({"models": {"other": other}}))
    run_main(load_hostile, monkeypatch, "--model", str(model), "--cases", "big_bytes,trickle,giants",
             "--clients", "2", "--seconds", "1", "--big-files", "2", "--trickle", "2")
    result = json.loads((tmp_path / "results" / "load_hostile.json").read_text())
    assert_provenance(result)
    assert result["models"]["other"] == other
    big, trickle, giants = result["models"][str(model)]["cases"]
    assert [big["case"], trickle["case"], giants["case"]] == ["big_bytes", "trickle", "giants"]
    assert big["requests"] == {"200": 2} and big["file_statuses"] == {"200": 4}  # zero-padded JPEGs decode
    assert big["peak_spool_mb"] >= 0  # a 0.1 s request may end between samples; spool_bytes is tested below
    assert trickle["slow_clients"] and not any("200" in k for k in trickle["slow_clients"])
    assert all(r["http_500"] == 0 and r["normal_requests"] > 0 for r in (big, trickle, giants))
    assert trickle["normal_statuses"].get("200") == trickle["normal_requests"]
    assert sum(giants["file_statuses"].values()) == 4 * giants["requests"].get("200", 0)
    assert all(0 < r["rss_before_mb"] <= r["peak_rss_mb"] for r in (big, trickle, giants))
    assert trickle["goals_met"]["normal_during_slow_clients"] is True
    md = (tmp_path / "results" / "load_hostile.md").read_text()
    assert f"| big_bytes | {big['seconds']} | {big['rss_before_mb']} MB |" in md and "`other`" in md
