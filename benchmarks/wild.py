"""Detectors on real-world images, scored only on sources held out of training.

    python benchmarks/wild.py --wild ~/wild --labels ../shared/data/wild/labels.csv benchmarks/wild_extra/labels.csv

Protocol (issue 13): group k-fold over the `source` column (evaluate/folds.py: whole sources held
out, each fold holding out REAL and FAKE sources). Two test conditions:
- as is: the file as stored, native-resolution 224 px crops covering it (up to 2x2, features averaged);
- same codec: a native 448 px centre crop re-encoded as JPEG q90, REAL and FAKE alike, then its
  2x2 crops. The headline: a format or size shortcut cannot help here.
Contenders, all on the same test images:
- `lite0 probe`: frozen ImageNet EfficientNet-Lite0, global-average-pooled output of every stage and
  the head (2,064 values: models/lite_probe.py), logistic regression (C chosen per fold by group CV inside its training
  sources, never on the held-out ones). Training views: two
  random native 224 crops per image through the codec chain (train/augment.CodecChain: random
  rescale, blur, noise, JPEG q65-100), the same for REAL and FAKE;
- `lite0 probe, no chain`: the same on plain native crops (what the chain buys);
- `lite1 probe`, `lite2 probe`: the same recipe on frozen ImageNet EfficientNet-Lite1 (2,064 values)
  and Lite2 (2,136 values), same views; and Lite0's and Lite2's features side by side (4,200 values);
- `lite2 probe, mean+std pooled`: each Lite2 stage pooled by its mean and its standard deviation
  (4,272 values: texture statistics, as Gram-Net argues), same views;
- `lite2 probe, stages only` / `head only`: the Lite2 probe on the pooled stages without the
  1,280-wide head (856 values), or on the head alone (`feature_part`);
- `spectrum probe`: no backbone: the log power spectrum of each crop's high-pass residual (its
  fall-off over 32 rings, and its peaks at the k/16 frequencies where upsampling layers print
  periodic traces) and the residual's colour correlations, 295 values (models/spectrum_probe.py),
  on codec-chain or plain views; and beside the Lite2 probe's features (2,431 values);
- `lite2 probe, sources weighted`: the Lite2 probe with each training image weighted by
  1/sqrt(the size of its source) (`source_weights`), so that the three largest sources dominate less;
- trained per fold by `aivsreal train`'s own loop on native crops read from disk through the codec
  chain (train/batches.py): `fast` from scratch, and EfficientNet-Lite0 fine-tuned from ImageNet;
  scored through `Detector.predict` (up to 3x3 native tiles, logits averaged);
- `clip probe`, `dinov2 probe` (only with --vit-probe; not in the committed figures, whose machine had
  no such weights): UnivFD's frozen CLIP ViT-L/14 or DINOv2 ViT-L/14, the pooled class token
  (1,024 values: models/vit_probe.py), the same views and logistic regression;
- `cifake` (bundled, CIFAKE-trained `fast`): the whole image or crop shrunk to 32 px;
- `size/format/bytes`: gradient boosting on (width, height, format, file size) only: the shortcut.
Images: the set's labels.csv plus benchmarks/wild_extra/ (136 more REAL photographs from two
repositories; README there). Writes benchmarks/results/wild.{json,md}. Features are cached in
--cache per image (each image's views seeded by its path, so new images are added to the cache,
not recomputed with it); the per-fold training in one file per recipe (delete it to retrain).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from aivsreal.commands.train import model_config
from aivsreal.data.cache import DecodedSplit
from aivsreal.data.crops import centre_crop, tiles
from aivsreal.data.images import decode_native, read_limited
from aivsreal.data.perturb import jpeg_bytes
from aivsreal.data.sources import ImageRef, stratified_split
from aivsreal.data.stream import CentreCrops
from aivsreal.device import autocast, resolve_device
from aivsreal.evaluate.folds import source_folds
from aivsreal.models import DetectorNet, build_model, default_config, pixels_to, train_recipe
from aivsreal.models.file import ModelMeta
from aivsreal.models.vit_probe import ARCHS
from aivsreal.predict.detector import Detector
from aivsreal.report.provenance import provenance
from aivsreal.train.augment import CodecChain
from aivsreal.train.compute import train_flops_per_image
from aivsreal.train.loop import TrainConfig, train

RESULTS = Path(__file__).parent / "results"
CPU = torch.device("cpu")
CROP, SAME_CODEC_CROP, TILES, VIEWS = 224, 448, 4, 2
VIEW_SEED, VIEWS_VERSION = 0, 2  # version 2: each image's views seeded by its path (caches can grow)
ROW_ARRAYS = ("chain", "plain", "as_is", "same_codec", "meta_as_is", "meta_same_codec")  # row_features' arrays
C_GRID = (0.0003, 0.001, 0.003, 0.03, 0.3)  # logistic regression strength, chosen per fold by inner group CV
FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
WITHIN_FORMATS = ("JPEG", "PNG")  # the stored formats with over 200 images of each class (summarise)
# short name (cache file suffix) -> model family
PROBES = {"lite0": "lite0_probe", "lite1": "lite1_probe", "lite2": "lite2_probe", "lite2stats": "lite2_probe_stats",
          "spectrum": "spectrum_probe"}
VIT_PROBES = tuple(ARCHS)  # clip_probe, dinov2_probe: weights from the Hub or a file, not bundled
# the best held-out figure: the bundled `wild` detector's recipe, and the PROBES entry it is fitted on
BUNDLED_RECIPE, BUNDLED_PROBE = "lite2 probe (codec chain)", "lite2"


def embed(model: DetectorNet, crops: np.ndarray) -> np.ndarray:
    """The probe's features (every stage pooled: 2,064 values for Lite0) of (N, S, S, 3) crops, on the
    model's device."""
    device = next(model.parameters()).device
    x = pixels_to(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2), device)
    with torch.no_grad(), autocast(device):
        return model.network.features(model.normalize(x)).float().cpu().numpy()


def read_labels(paths: list[str]) -> list[dict]:
    """The rows of one or more labels files (the set's, then additions such as benchmarks/wild_extra/),
    refusing files whose columns differ or that list an image twice."""
    rows, columns = [], None
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if columns is not None and reader.fieldnames != columns:
                print(f"error: {path} has other columns than {paths[0]}", file=sys.stderr)
                raise SystemExit(2)
            columns = reader.fieldnames
            rows += list(reader)
    seen = set()
    for r in rows:
        if r["relpath"] in seen or r["sha1"] in seen:
            print(f"error: {r['relpath']} (sha1 {r['sha1']}) is listed twice in {' and '.join(paths)}", file=sys.stderr)
            raise SystemExit(2)
        seen |= {r["relpath"], r["sha1"]}
    return rows


def row_rng(relpath: str) -> np.random.Generator:
    """Each image's views come from its own seed (its path): adding images leaves every other
    image's features as they were, so a cache grows instead of being recomputed."""
    return np.random.default_rng([VIEW_SEED, zlib.crc32(relpath.encode())])


def row_features(model: DetectorNet, chain: CodecChain, data: bytes, relpath: str) -> dict[str, np.ndarray]:
    """One image: train views (chain and plain), as-is and same-codec features, the shortcut's inputs."""
    rng = row_rng(relpath)
    px = decode_native(data)
    same = centre_crop(px, SAME_CODEC_CROP)
    same_bytes = jpeg_bytes(np.ascontiguousarray(same), 90)
    same_px = np.asarray(Image.open(io.BytesIO(same_bytes)).convert("RGB"))
    views = np.stack([chain.view(px, CROP, rng) for _ in range(VIEWS)])
    grid, as_is, same_tiles = tiles(px, CROP, 9), tiles(px, CROP, TILES), tiles(same_px, CROP, TILES)
    plain = np.stack([grid[int(rng.integers(len(grid)))] for _ in range(VIEWS)])
    f = embed(model, np.concatenate([views, plain, as_is, same_tiles]))
    n_as = len(as_is)
    fmt = Image.open(io.BytesIO(data)).format
    return {"chain": f[:VIEWS], "plain": f[VIEWS : 2 * VIEWS], "as_is": f[2 * VIEWS : 2 * VIEWS + n_as].mean(0),
            "same_codec": f[2 * VIEWS + n_as :].mean(0),
            "meta_as_is": np.array([px.shape[1], px.shape[0], np.log(len(data)), *[fmt == f_ for f_ in FORMATS]],
                                   dtype=float),
            "meta_same_codec": np.array([same.shape[1], same.shape[0], np.log(len(same_bytes)), 1, 0, 0, 0, 0, 0],
                                        dtype=float),
            "same_codec_bytes": np.frombuffer(same_bytes, np.uint8)}


def features_for(rows: list[dict], root: Path, cache: Path, family: str, device: torch.device = CPU,
                 weights: str | None = None) -> dict[str, np.ndarray]:
    """Per image (in the labels' order): row_features of `family`'s frozen backbone (its pretrained
    weights: the packaged or downloaded ones, or `weights`). The cache keeps every image it has seen;
    images it lacks are computed and added."""
    per_row: dict[str, dict[str, np.ndarray]] = {}
    seconds = 0.0
    if cache.exists():
        cached = dict(np.load(cache))
        if int(cached.get("views_version", 0)) != VIEWS_VERSION:
            print(f"error: {cache} was written before each image had its own view seed: delete it to recompute",
                  file=sys.stderr)
            raise SystemExit(2)
        per_row, seconds = _unpack(cached), float(cached["feature_seconds"])
    missing = [r for r in rows if r["relpath"] not in per_row]
    if missing:
        model = build_model(default_config(family), pretrained=True, weights=weights).eval()
        model = model.to(device).to(memory_format=torch.channels_last)
        chain, started = CodecChain(), time.time()
        for i, row in enumerate(missing):
            per_row[row["relpath"]] = row_features(model, chain, read_limited(root / row["relpath"]), row["relpath"])
            if i % 200 == 0:
                print(f"{family} features {i}/{len(missing)}, {time.time() - started:.0f} s", flush=True)
        seconds += time.time() - started  # kept with the cache, reported in wild.md
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **_pack(per_row), feature_seconds=np.array(seconds), views_version=np.array(VIEWS_VERSION))
    chosen = {r["relpath"]: per_row[r["relpath"]] for r in rows}
    # the time these rows took: the cache's time per image times their number
    return {**_pack(chosen), "feature_seconds": np.array(seconds * len(rows) / len(per_row))}


def _pack(per_row: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-image features -> stacked arrays; the same-codec JPEGs concatenated with their lengths."""
    feats = list(per_row.values())
    out = {k: np.stack([f[k] for f in feats]) for k in ROW_ARRAYS}
    out["same_codec_bytes"] = np.concatenate([f["same_codec_bytes"] for f in feats])
    out["same_codec_lengths"] = np.array([len(f["same_codec_bytes"]) for f in feats])
    out["relpaths"] = np.array(list(per_row))
    return out


def _unpack(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    blobs = np.split(arrays["same_codec_bytes"], np.cumsum(arrays["same_codec_lengths"])[:-1])
    return {str(p): {**{k: arrays[k][i] for k in ROW_ARRAYS}, "same_codec_bytes": blobs[i]}
            for i, p in enumerate(arrays["relpaths"])}


def feature_cache(cache: Path, short: str) -> Path:
    """One file per backbone beside --cache: wild_features.npz -> wild_features_lite2.npz."""
    return cache.with_name(f"{cache.stem}_{short}.npz")


def probe(views: np.ndarray, labels: np.ndarray, c: float, sources: np.ndarray | None = None) -> object:
    """Logistic regression on every training view (N, V, D) of every image, the classes weighted
    equally; with `sources`, each source's images also weighted by 1/sqrt(its size) (`source_weights`)."""
    weights = source_weights(sources, labels) if sources is not None else compute_sample_weight("balanced", labels)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
    return model.fit(views.reshape(-1, views.shape[-1]), np.repeat(labels, views.shape[1]),
                     logisticregression__sample_weight=np.repeat(weights, views.shape[1]))


def source_weights(sources: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image, 1/sqrt(size of its source), then each class rescaled to weigh half.

    Unweighted, three sources hold 77% of the images (dcsan_imagen, horde_styles: FAKE;
    imagenet_samples: REAL), so the probe learns mostly what separates those three; the test is on
    sources it never saw. Equal weight per source would instead let a 7-image source count as much
    as a 995-image one; the square root is a compromise between the two (each source counts by the
    square root of its size). Measured on 2026-11-27: 0.730 same-codec AUC against 0.774 unweighted,
    lower on 13 of 15 held-out source groups (wild.md), so no recipe uses it."""
    _, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    w = 1 / np.sqrt(counts[inverse])
    for cls in (0, 1):
        mine = labels == cls
        w[mine] *= len(labels) / 2 / w[mine].sum()
    return w


def inner_c(views: np.ndarray, labels: np.ndarray, sources: np.ndarray, weighted: bool = False) -> float:
    """C by group cross-validation inside the training sources only (3 inner folds, same-codec-like views)."""
    inner = source_folds(list(sources), labels, k=3)
    scores = []
    for c in C_GRID:
        p = np.zeros(len(labels))
        for f in range(3):
            fit, held = inner != f, inner == f
            model = probe(views[fit], labels[fit], c, sources[fit] if weighted else None)
            p[held] = model.predict_proba(views[held].mean(1))[:, 1]
        scores.append(roc_auc_score(labels, p))
    return C_GRID[int(np.argmax(scores))]


def cross_validate(feats: dict, labels: np.ndarray, folds: np.ndarray, views: str, sources: np.ndarray,
                   weighted: bool = False) -> tuple[dict[str, np.ndarray], list[float]]:
    """P(fake) per image and condition, each from the fold that held its source out; and the C
    that each fold's inner CV chose. `weighted`: sources weighted by 1/sqrt(size) (`source_weights`)."""
    p = {"as_is": np.zeros(len(labels)), "same_codec": np.zeros(len(labels))}
    chosen = []
    for f in range(folds.max() + 1):
        train, test = folds != f, folds == f
        c = inner_c(feats[views][train], labels[train], sources[train], weighted)
        chosen.append(c)
        model = probe(feats[views][train], labels[train], c, sources[train] if weighted else None)
        for cond in p:
            p[cond][test] = model.predict_proba(feats[cond][test])[:, 1]
    return p, chosen


def side_by_side(*feats: dict) -> dict[str, np.ndarray]:
    """Several backbones' features of the same views, concatenated per view (one probe reads them all)."""
    return {k: np.concatenate([f[k] for f in feats], -1) for k in ("chain", "as_is", "same_codec")}


def feature_part(feats: dict, family: str, part: str) -> dict[str, np.ndarray]:
    """Only the pooled stages ("stages") or only the pooled head ("head", 1,280 values) of a probe's
    features: generator traces are low-level, while the head, closest to ImageNet's classes, also
    carries what an image shows, which differs between sources more than between classes."""
    head = build_model(default_config(family)).network.backbone.num_features
    cut = slice(None, -head) if part == "stages" else slice(-head, None)
    return {k: feats[k][..., cut] for k in ("chain", "as_is", "same_codec")}


def shortcut(feats: dict, labels: np.ndarray, folds: np.ndarray) -> dict[str, np.ndarray]:
    p = {"as_is": np.zeros(len(labels)), "same_codec": np.zeros(len(labels))}
    for f in range(folds.max() + 1):
        train, test = folds != f, folds == f
        for cond in p:
            x = feats[f"meta_{cond}"]
            model = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(x[train], labels[train])
            p[cond][test] = model.predict_proba(x[test])[:, 1]
    return p


def same_codec_blobs(feats: dict) -> list[bytes]:
    ends = np.cumsum(feats["same_codec_lengths"])
    return [feats["same_codec_bytes"][e - n : e].tobytes()
            for e, n in zip(ends, feats["same_codec_lengths"], strict=True)]


def detector_scores(det: Detector, rows: list[dict], root: Path, blobs: list[bytes]) -> dict[str, np.ndarray]:
    """P(fake) of a saved detector through the product's own path (`Detector.predict`: its tiles)."""
    as_is = [p.p_fake for p in det.iter_predict(read_limited(root / r["relpath"]) for r in rows)]
    same = [p.p_fake for p in det.predict(blobs)]
    return {"as_is": np.array(as_is, dtype=float), "same_codec": np.array(same, dtype=float)}


@dataclass(frozen=True)
class Trained:
    """A detector trained per fold with `aivsreal train`'s own loop on native crops from disk."""

    family: str
    crop: int
    epochs: int
    lr: float
    batch_size: int = 32

    @property
    def name(self) -> str:
        start = "ImageNet" if self.family != "fast" else "scratch"
        return f"{self.family} fine-tuned ({start}, codec chain, {self.crop} px crops, {self.epochs} epochs)"


# lr: each recipe's, scaled to batch 32 (fast: SGD 0.1 at 256; Lite0: AdamW 1e-3 at 128, a little lower to fine-tune)
TRAINED = (Trained("fast", 96, 6, 0.0125), Trained("efficientnet_lite0", 160, 2, 2e-4))


def trained_scores(spec: Trained, rows: list[dict], root: Path, labels: np.ndarray, folds: np.ndarray,
                   blobs: list[bytes], cache: Path) -> tuple[dict[str, np.ndarray], dict]:
    """P(fake) per image from the fold that held its source out; val carved from the fold's train
    images (10%), never from its test. Cached per spec: delete the file to retrain."""
    relpaths = np.array([r["relpath"] for r in rows])
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if "relpaths" not in z or not (np.array_equal(z["relpaths"], relpaths) and np.array_equal(z["folds"], folds)):
            print(f"error: {cache} was trained on other images or folds than these: delete it to retrain",
                  file=sys.stderr)
            raise SystemExit(2)
        record = json.loads(str(z["record"]))
        record["pflops_per_fold"] = fold_pflops(spec, labels, folds, record["epochs_run"])
        return {"as_is": z["as_is"], "same_codec": z["same_codec"]}, record
    p = {"as_is": np.zeros(len(labels)), "same_codec": np.zeros(len(labels))}
    record: dict = {"minutes_per_fold": [], "epochs_run": []}
    refs = [ImageRef(str(root), r["relpath"], 0, 0) for r in rows]
    for f in range(folds.max() + 1):
        test_idx = np.flatnonzero(folds == f)
        fit, val = fit_and_val(labels, folds, f)

        def split(idx: np.ndarray) -> DecodedSplit:
            return DecodedSplit(CentreCrops([refs[i] for i in idx], spec.crop), labels[idx],
                                [rows[i]["relpath"] for i in idx], [])

        config = model_config(spec.family, {"crop": spec.crop})
        torch.manual_seed(0)
        model = build_model(config, pretrained=spec.family != "fast")
        cfg = TrainConfig.for_model(train_recipe(spec.family), epochs=spec.epochs, lr=spec.lr,
                                    batch_size=spec.batch_size, seed=0)
        started = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            state = train(model, split(fit), split(val), cfg, Path(tmp), torch.device("cpu"), progress=False)
            record["minutes_per_fold"].append(round((time.time() - started) / 60, 1))
            record["epochs_run"].append(state.epoch)
        det = Detector.from_network(model, ModelMeta(), "cpu")
        fold_scores = detector_scores(det, [rows[i] for i in test_idx], root, [blobs[i] for i in test_idx])
        for cond in p:
            p[cond][test_idx] = fold_scores[cond]
        print(f"{spec.name}: fold {f} done, {record['minutes_per_fold'][-1]} min", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **p, record=np.array(json.dumps(record)), relpaths=relpaths, folds=folds)
    record["pflops_per_fold"] = fold_pflops(spec, labels, folds, record["epochs_run"])
    return p, record


def fit_and_val(labels: np.ndarray, folds: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """The fold's training images, 10% of them carved out for validation (never its test images)."""
    train_idx = np.flatnonzero(folds != fold)
    fit, val = (train_idx[i] for i in stratified_split(labels[train_idx], 0.1, seed=0))
    return fit, val


def fold_pflops(spec: Trained, labels: np.ndarray, folds: np.ndarray, epochs_run: list[int]) -> list[float]:
    """Training compute per fold: full batches seen times the network's counted FLOPs per image.
    Counted on every run, not cached, so a cached fold is counted as a fresh one would be."""
    per_image = train_flops_per_image(build_model(model_config(spec.family, {"crop": spec.crop})), spec.crop)
    seen = [epochs * (len(fit_and_val(labels, folds, f)[0]) // spec.batch_size) * spec.batch_size
            for f, epochs in enumerate(epochs_run)]
    return [round(per_image * n / 1e15, 3) for n in seen]


def summarise(p: np.ndarray, labels: np.ndarray, rows: list[dict]) -> dict:
    """Pooled AUC and accuracy at 0.5; per source and per family: AUC against the other class, recall;
    and AUC within each stored file format that both classes have (`within_format`).

    Most REAL files are JPEG and most FAKE ones PNG or WebP, so a detector can score by compression
    history (an earlier JPEG's 8x8 grid may survive the same-codec re-encoding) instead of generator
    traces. REAL JPEG against FAKE JPEG, and REAL PNG against FAKE PNG, take that away."""
    real, fake = labels == 0, labels == 1
    formats = np.array([r["format"] for r in rows])
    out = {"pooled_auc": float(roc_auc_score(labels, p)),
           "pooled_accuracy": float(np.mean((p >= 0.5) == labels)), "per_source": {}, "per_family": {},
           "within_format": {}}
    for f in WITHIN_FORMATS:
        mine = formats == f
        out["within_format"][f] = {"n_real": int((real & mine).sum()), "n_fake": int((fake & mine).sum()),
                                   "auc": round(float(roc_auc_score(labels[mine], p[mine])), 4)}
    for key, name in (("source", "per_source"), ("family", "per_family")):
        groups = np.array([r[key] if r["cls"] == "FAKE" or key == "source" else "REAL" for r in rows])
        for g in sorted(set(groups)):
            sel = groups == g
            for cls in (0, 1):
                mine = sel & (labels == cls)
                if not mine.any():
                    continue
                other = fake if cls == 0 else real
                idx = mine | other
                auc = roc_auc_score(labels[idx], p[idx])
                out[name][g if cls == 1 or key == "family" else f"{g} (REAL)"] = {
                    "n": int(mine.sum()), "auc_vs_other_class": round(float(auc), 4),
                    ("fake_recall" if cls else "real_kept"): round(float(np.mean((p[mine] >= 0.5) == cls)), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", required=True, help="the extracted set (OUT of extract.sh)")
    ap.add_argument("--labels", nargs="+", required=True,
                    help="labels.csv beside the recipe, then any additions (benchmarks/wild_extra/labels.csv)")
    ap.add_argument("--cache", default="benchmarks/runs/wild_features.npz")
    ap.add_argument("--vit-probe", nargs="*", choices=VIT_PROBES, default=[],
                    help="also the probes on web-scale ViTs (models/vit_probe.py): their weights come from the "
                         "Hugging Face Hub, or --vit-weights; hours of CPU for ViT-L, minutes on a GPU")
    ap.add_argument("--vit-weights", nargs="*", default=[], metavar="FILE",
                    help="local weights for each --vit-probe, in the same order (offline)")
    ap.add_argument("--device", default="cpu", help="where the frozen backbones compute features (auto, cpu, "
                    "cuda); the committed figures are from cpu")
    args = ap.parse_args()
    if args.vit_weights and len(args.vit_weights) != len(args.vit_probe):
        ap.error("give one --vit-weights file per --vit-probe, in the same order")
    started = time.time()
    root = Path(args.wild).expanduser()
    rows = read_labels(args.labels)
    labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    folds = source_folds([r["source"] for r in rows], labels)
    cache = Path(args.cache)
    device = resolve_device(args.device)
    probe_feats = {short: features_for(rows, root, feature_cache(cache, short), family, device)
                   for short, family in PROBES.items()}
    weights = args.vit_weights or [None] * len(args.vit_probe)
    vit_feats = {family: features_for(rows, root, feature_cache(cache, family), family, device, w)
                 for family, w in zip(args.vit_probe, weights, strict=True)}
    feats, lite2, spectrum = probe_feats["lite0"], probe_feats["lite2"], probe_feats["spectrum"]
    sources = np.array([r["source"] for r in rows])
    blobs = same_codec_blobs(feats)
    trained = {spec.name: trained_scores(spec, rows, root, labels, folds, blobs,
                                         Path(args.cache).with_name(f"wild_{spec.family}_{spec.crop}.npz"))
               for spec in TRAINED}
    probes = {  # contender: (features, the training views, sources weighted by 1/sqrt(size))
        "lite0 probe (codec chain)": (feats, "chain", False),
        "lite0 probe (plain crops)": (feats, "plain", False),
        "lite1 probe (codec chain)": (probe_feats["lite1"], "chain", False),
        "lite2 probe (codec chain)": (lite2, "chain", False),
        "lite2 probe (codec chain, sources weighted)": (lite2, "chain", True),
        "lite2 probe (codec-chain and plain views, 4 per image)": ({**lite2, "chain_and_plain": np.concatenate(
            [lite2["chain"], lite2["plain"]], 1)}, "chain_and_plain", False),
        "lite0+lite2 probe (codec chain, features side by side)": (side_by_side(feats, lite2), "chain", False),
        "lite1+lite2 probe (codec chain, features side by side)": (side_by_side(probe_feats["lite1"], lite2), "chain",
                                                                    False),
        "lite2 probe, mean+std pooled (codec chain)": (probe_feats["lite2stats"], "chain", False),
        "lite2 probe, stages only (no head; codec chain)": (feature_part(lite2, "lite2_probe", "stages"), "chain",
                                                             False),
        "lite2 probe, head only (codec chain)": (feature_part(lite2, "lite2_probe", "head"), "chain", False),
        "spectrum probe (codec chain)": (spectrum, "chain", False),
        "spectrum probe (plain crops)": (spectrum, "plain", False),
        "lite2+spectrum probe (codec chain, features side by side)": (side_by_side(lite2, spectrum), "chain", False),
        **{f"{family.replace('_', ' ')} ({ARCHS[family]}, codec chain)": (f, "chain", False)
           for family, f in vit_feats.items()},
    }
    fitted = {name: cross_validate(f, labels, folds, views, sources, weighted)
              for name, (f, views, weighted) in probes.items()}
    contenders = {
        **{name: scores for name, (scores, _) in fitted.items()},
        "size/format/bytes only": shortcut(feats, labels, folds),
        **{name: scores for name, (scores, _) in trained.items()},
        "cifake (bundled, 32 px)": detector_scores(Detector.load("cifake", device="cpu"), rows, root, blobs),
    }
    result = {"provenance": provenance().to_dict(), "date": datetime.now(UTC).strftime("%Y-%m-%d"),
              "command": "python benchmarks/wild.py " + " ".join(sys.argv[1:]),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, CPU"
                         + (f"; features on {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
              "feature_minutes": {short: round(float(f["feature_seconds"]) / 60, 1)
                                  for short, f in {**probe_feats, **vit_feats}.items()},
              "images": len(rows), "folds": {str(f): sorted({r["source"] for r, k in zip(rows, folds, strict=True)
                                                             if k == f}) for f in range(folds.max() + 1)},
              "probe_c_per_fold": {name: chosen for name, (_, chosen) in fitted.items()},
              "trained": {name: {**asdict(spec), **trained[spec.name][1]} for spec in TRAINED
                          for name in [spec.name]},
              "contenders": {name: {cond: summarise(p, labels, rows) for cond, p in ps.items()}
                             for name, ps in contenders.items()}}
    best = result["contenders"][BUNDLED_RECIPE]
    result["same_codec"] = {"pooled_auc": best["same_codec"]["pooled_auc"]}
    result["as_is"] = {"pooled_auc": best["as_is"]["pooled_auc"]}
    result["minutes"] = round((time.time() - started) / 60, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wild.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "wild.md").write_text(markdown(result))
    print((RESULTS / "wild.md").read_text())


def markdown(r: dict) -> str:
    features = " and ".join(f"{m} min for {b}" for b, m in r["feature_minutes"].items())
    trained = "; ".join(f"{name}: {sum(t['minutes_per_fold']):.1f} min, {sum(t['pflops_per_fold']):.2f} PFLOP "
                        f"over the 4 folds" for name, t in r["trained"].items())
    lines = [f"Measured {r['date']} on {r['machine']}: `{r['command']}` ({r['minutes']} min this run; computed once "
             f"and cached in benchmarks/runs/: the probe features (9 to 12 forward passes of 224 px crops "
             f"per image), {features}, and the per-fold training, {trained})",
             "", f"{r['images']:,} images; {len(r['folds'])} folds, each holding out whole sources of both classes "
             f"(probe C per fold, from inner CV: {r['probe_c_per_fold']}):", ""]
    lines += [f"- fold {f}: {', '.join(s)}" for f, s in r["folds"].items()]
    lines += ["", "## Pooled over the held-out folds", "",
              "| contender | same codec AUC | same codec acc | as is AUC | as is acc | "
              + " | ".join(f"same codec AUC, {f} files only" for f in WITHIN_FORMATS) + " |",
              "|---|---|---|---|---|" + "---|" * len(WITHIN_FORMATS)]
    for name, c in r["contenders"].items():
        same, as_is = c["same_codec"], c["as_is"]
        lines.append(f"| {name} | **{same['pooled_auc']:.3f}** | {same['pooled_accuracy']:.3f} "
                     f"| {as_is['pooled_auc']:.3f} | {as_is['pooled_accuracy']:.3f} | "
                     + " | ".join(f"{same['within_format'][f]['auc']:.3f}" for f in WITHIN_FORMATS) + " |")
    counts = r["contenders"][BUNDLED_RECIPE]["same_codec"]["within_format"]
    lines += ["", "Within a format: REAL files of that stored format against FAKE files of it ("
              + "; ".join(f"{f}: {c['n_real']} REAL, {c['n_fake']} FAKE" for f, c in counts.items())
              + "), so that compression history cannot tell the classes apart."]
    for key, title in (("per_source", "Per held-out source"),
                       ("per_family", "Per generator family (FAKE) vs all REAL")):
        lines += ["", f"## {title}: same codec, {BUNDLED_RECIPE} vs the shortcut", "",
                  "| group | n | AUC vs other class | FAKE recall / REAL kept | shortcut AUC |",
                  "|---|---|---|---|---|"]
        ours = r["contenders"][BUNDLED_RECIPE]["same_codec"][key]
        theirs = r["contenders"]["size/format/bytes only"]["same_codec"][key]
        for g, m in ours.items():
            kept = m.get("fake_recall", m.get("real_kept"))
            lines.append(f"| {g} | {m['n']} | {m['auc_vs_other_class']:.3f} | {kept:.3f} | "
                         f"{theirs[g]['auc_vs_other_class']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
