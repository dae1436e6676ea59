"""Detectors on real-world images, scored only on sources held out of training.

    python benchmarks/wild.py --wild ~/wild --labels ../shared/data/wild/labels.csv benchmarks/wild_extra/labels.csv \
        --add benchmarks/photoreal/labels.csv

Protocol: group k-fold over the `source` column (evaluate/folds.py: whole sources held out, each
fold holding out REAL and FAKE sources), run twice with the same code:
- the photoreal headline (issue 49): every image of --labels and --add except the locked external
  sources (--external), scored on its photoreal slice (content tag not art or graphic; the tags
  come from the labels' content column or --content). Conditions (evaluate/conditions.py):
  `same_size` (the headline: shorter side resized to 512 px, centre 512x512, JPEG q90, REAL and
  FAKE alike) and `native_512` (a native 512 px centre crop saved the same way; smaller images left
  out). Beside every contender: a content-only baseline (the bundled recipe's probe on 32 px
  thumbnails: what is pictured, no traces) and the size/format/bytes shortcut, per content tag
  (REAL animals against FAKE animals...), per generator family and per source;
- the second table: --labels alone, with its own folds, as before the photoreal data (issue 13),
  under two conditions:
- as is: the file as stored, native-resolution 224 px crops covering it (up to 2x2, features averaged);
- same codec: a native 448 px centre crop re-encoded as JPEG q90, REAL and FAKE alike, then its
  2x2 crops.
Contenders, all on the same test images:
- `lite0 probe`: frozen ImageNet EfficientNet-Lite0, global-average-pooled output of every stage and
  the head (2,064 values: models/lite_probe.py), logistic regression (C chosen per fold by group CV inside its training
  sources, never on the held-out ones). Training views: two
  random native 224 crops per image through the codec chain (train/augment.CodecChain: random
  rescale, blur, noise, JPEG q65-100), the same for REAL and FAKE;
- `lite0 probe, no chain`: the same on plain native crops (what the chain buys);
- `lite1 probe`, `lite2 probe`: the same recipe on frozen ImageNet EfficientNet-Lite1 (2,064 values)
  and Lite2 (2,136 values), same views; and Lite0's and Lite2's features side by side (4,200 values);
- `lite2 probe (512 px reductions)` (BUNDLED_RECIPE: the bundled `wild` detector's since 2026-12-07): the
  Lite2 probe trained on the headline's own view of the training sources (the 2x2 tiles of their
  `same_size` reductions) instead of codec-chain crops (CHAIN_RECIPE, the bundled one before);
- `npr_patch` (models/npr_patch.py): a small CNN trained from scratch per fold on random 96 px
  patches of the training sources' 512 px reductions through the codec chain, reading only the
  neighbouring-pixel residual; scored by the mean logit of its tiles; and its mean-logit ensembles
  with the two Lite2 probes;
- `lite2 probe, mean+std pooled`: each Lite2 stage pooled by its mean and its standard deviation
  (4,272 values: texture statistics, as Gram-Net argues), same views;
- `lite2 probe, stages only` / `head only`: the Lite2 probe on the pooled stages without the
  1,280-wide head (856 values), or on the head alone (`feature_part`);
- `spectrum probe`: no backbone: the log power spectrum of each crop's high-pass residual (its
  fall-off over 32 rings, and its peaks at the k/16 frequencies where upsampling layers print
  periodic traces) and the residual's colour correlations, 295 values (models/spectrum_probe.py),
  on codec-chain or plain views; and beside the Lite2 probe's features (2,431 values);
- `xception probe` (only with --probes xception: its weights are converted by hand,
  benchmarks/xception_weights.py): frozen ImageNet Xception ported from Keras, every resolution's
  output pooled (3,224 values: models/xception_probe.py), on the same 224 px tiles as the Lite probes
  (not its native 299 px: every probe sees the same pixels, and 2x2 tiles of 299 px would overlap in a
  512 px reduction), trained on the 512 px reductions as the bundled recipe (LEAN: its features are the
  reductions' only, 8 forward passes per image instead of 25); and its mean-logit ensemble with the
  Lite2 probe on codec-chain crops (two backbones, each among the best alone);
- `lite2 probe, sources weighted`: the Lite2 probe with each training image weighted by
  1/sqrt(the size of its source) (`source_weights`), so that the three largest sources dominate less;
- trained per fold by `aivsreal train`'s own loop on native crops read from disk through the codec
  chain (train/batches.py): `fast` from scratch, and EfficientNet-Lite0 fine-tuned from ImageNet
  (on the files as stored, 160 px crops, for the second table; on 224 px crops of the 512 px
  reductions for the headline); scored through `Detector.predict` (up to 3x3 native tiles, logits
  averaged);
- `clip probe`, `dinov2 probe` (only with --vit-probe; not in the committed figures, whose machine had
  no such weights): UnivFD's frozen CLIP ViT-L/14 or DINOv2 ViT-L/14, the pooled class token
  (1,024 values: models/vit_probe.py), the same views and logistic regression;
- `cifake` (bundled, CIFAKE-trained `fast`): the whole image or crop shrunk to 32 px;
- `size/format/bytes`: gradient boosting on (width, height, format, file size) only: the shortcut.
Images: the set's labels.csv plus benchmarks/wild_extra/ (136 more REAL photographs from two
repositories; README there), and for the headline benchmarks/photoreal/ (its README). Writes
benchmarks/results/wild.{json,md}. Features are cached in --cache per image and saved every
SAVE_EVERY images (each image's views seeded by its path, so new images are added to the cache,
not recomputed with it, and a killed CPU run resumes); the reduced JPEGs in wild_reduced/ beside
it; the per-fold training in one file per recipe and evaluation (delete it to retrain).
--probes and --trained choose what runs: every backbone costs up to 21 forward passes per image.
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
from aivsreal.evaluate.conditions import decode_jpeg, native_crop, same_size, thumbnail
from aivsreal.evaluate.folds import source_folds
from aivsreal.models import DetectorNet, build_model, default_config, pixels_to, train_recipe
from aivsreal.models.file import ModelMeta
from aivsreal.models.network import combine_views
from aivsreal.models.vit_probe import ARCHS
from aivsreal.predict.detector import Detector
from aivsreal.report.provenance import provenance
from aivsreal.train.augment import CodecChain
from aivsreal.train.compute import train_flops_per_image
from aivsreal.train.loop import TrainConfig, train

RESULTS = Path(__file__).parent / "results"
CPU = torch.device("cpu")
CROP, SAME_CODEC_CROP, TILES, VIEWS = 224, 448, 4, 2
VIEW_SEED, VIEWS_VERSION = 0, 3  # 2: each image's views seeded by its path (caches can grow); 3: photoreal conditions
CONDITIONS = ("as_is", "same_codec", "same_size", "native_512")  # what every contender is scored on
REDUCED = {"same_size": same_size, "native_512": native_crop}  # evaluate/conditions.py: 512 px JPEG q90 each
SAVE_EVERY = 500  # images between feature-cache saves: a CPU run can span sessions
ROW_ARRAYS = ("chain", "plain", *CONDITIONS, "thumb", *(f"meta_{c}" for c in CONDITIONS))  # row_features' arrays
NOT_PHOTOREAL = ("art", "graphic")  # content tags outside the photoreal slice
SOURCE_CAP = 0.15  # issue 49: no one source above 15% of its class (the source-capped slice)
C_GRID = (0.0003, 0.001, 0.003, 0.03, 0.3)  # logistic regression strength, chosen per fold by inner group CV
FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
WITHIN_FORMATS = ("JPEG", "PNG")  # the stored formats with over 200 images of each class (summarise)
# short name (cache file suffix) -> model family
PROBES = {"lite0": "lite0_probe", "lite1": "lite1_probe", "lite2": "lite2_probe", "lite2stats": "lite2_probe_stats",
          "spectrum": "spectrum_probe", "xception": "xception_probe"}
OPT_IN = ("xception",)  # not run unless named in --probes: weights converted by hand, 5x Lite2's compute
# backbones whose features are the headline's reduced conditions only (row_features' `lean`): Xception's 25
# passes per image were 96 minutes of 2 cores on the grown set, its 8 lean passes about a third of that
LEAN = ("xception_probe",)
VIT_PROBES = tuple(ARCHS)  # clip_probe, dinov2_probe: weights from the Hub or a file, not bundled
# the best held-out figure: the bundled `wild` detector's recipe, and the PROBES entry it is fitted on
# since 2026-12-07 the Lite2 probe trained on the headline's own view of the training sources (the 2x2
# tiles of their 512 px reductions); before, CHAIN_RECIPE: the same probe on codec-chain native crops
BUNDLED_RECIPE, BUNDLED_PROBE = "lite2 probe (512 px reductions)", "lite2"
CHAIN_RECIPE = "lite2 probe (codec chain)"
XCEPTION_RECIPE = "xception probe (512 px reductions)"


def embed(model: DetectorNet, crops: np.ndarray) -> np.ndarray:
    """The probe's features (every stage pooled: 2,064 values for Lite0) of (N, S, S, 3) crops, on the
    model's device."""
    device = next(model.parameters()).device
    x = pixels_to(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2), device)
    with torch.no_grad(), autocast(device):
        return model.network.features(model.normalize(x)).float().cpu().numpy()


REQUIRED = ("relpath", "source", "cls", "family", "format", "width", "height", "sha1")


def read_labels(paths: list[str], content: dict[str, str] | None = None) -> list[dict]:
    """The rows of one or more labels files (the set's, then additions such as benchmarks/wild_extra/),
    each with its `content` tag (its own column, else the `content` overlay); refusing a file that
    lacks a column the benchmark reads, an image listed twice, or a row with no content tag."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                print(f"error: {path} has no {', '.join(missing)} column(s)", file=sys.stderr)
                raise SystemExit(2)
            rows += list(reader)
    seen = set()
    for r in rows:
        if r["relpath"] in seen or r["sha1"] in seen:
            print(f"error: {r['relpath']} (sha1 {r['sha1']}) is listed twice in {' and '.join(paths)}", file=sys.stderr)
            raise SystemExit(2)
        seen |= {r["relpath"], r["sha1"]}
        if content is not None and not r.get("content"):
            if r["relpath"] not in content:
                print(f"error: {r['relpath']} has no content tag (a content column, or a row in --content)",
                      file=sys.stderr)
                raise SystemExit(2)
            r["content"] = content[r["relpath"]]
    return rows


def read_content(path: str | None) -> dict[str, str] | None:
    """relpath -> content tag, for labels files made before the content column existed."""
    if not path:
        return None
    with open(path, newline="") as f:
        return {r["relpath"]: r["content"] for r in csv.DictReader(f)}


def row_rng(relpath: str) -> np.random.Generator:
    """Each image's views come from its own seed (its path): adding images leaves every other
    image's features as they were, so a cache grows instead of being recomputed."""
    return np.random.default_rng([VIEW_SEED, zlib.crc32(relpath.encode())])


def reduced(px: np.ndarray, relpath: str, store: Path) -> dict[str, bytes | None]:
    """The image's same-size and native-crop JPEGs (REDUCED), computed once and kept in `store`, where
    the detectors' scoring reads them back; None where the reduction leaves the image out."""
    out: dict[str, bytes | None] = {}
    for cond, reduce in REDUCED.items():
        path, absent = store / cond / f"{relpath}.jpg", store / cond / f"{relpath}.none"
        if path.exists() or absent.exists():
            out[cond] = path.read_bytes() if path.exists() else None
            continue
        out[cond] = reduce(px)
        path.parent.mkdir(parents=True, exist_ok=True)
        if out[cond] is None:
            absent.touch()
        else:
            path.write_bytes(out[cond])
    return out


def stored_meta(width: int, height: int, data: bytes | None) -> np.ndarray:
    """The size/format/bytes shortcut's inputs for one file (NaN where a condition left the image out)."""
    if data is None:
        return np.full(3 + len(FORMATS), np.nan)
    fmt = Image.open(io.BytesIO(data)).format
    return np.array([width, height, np.log(len(data)), *[fmt == f for f in FORMATS]], dtype=float)


def row_features(model: DetectorNet, chain: CodecChain, data: bytes, relpath: str,
                 store: Path, lean: bool = False) -> dict[str, np.ndarray]:
    """One image: train views (chain and plain), the features of every test condition (CONDITIONS:
    2x2 tiles of 224 px each, averaged), the 32 px thumbnail's (the content-only baseline), and
    the shortcut's inputs per condition. `lean` (LEAN backbones): the reduced conditions' tiles only,
    8 forward passes instead of 25; every other array NaN."""
    rng = row_rng(relpath)
    px = decode_native(data)
    same = centre_crop(px, SAME_CODEC_CROP)
    same_bytes = jpeg_bytes(np.ascontiguousarray(same), 90)
    small = reduced(px, relpath, store)
    tested = {c: tiles(decode_jpeg(b), CROP, TILES) for c, b in small.items() if b is not None}
    if lean:
        f = embed(model, np.concatenate(list(tested.values())))
        nan = np.full((2 * VIEWS + 1, f.shape[1]), np.nan, f.dtype)
        tested = {"as_is": nan[:0], "same_codec": nan[:0], **tested}
        f = np.concatenate([nan, f])
    else:
        views = np.stack([chain.view(px, CROP, rng) for _ in range(VIEWS)])
        grid = tiles(px, CROP, 9)
        plain = np.stack([grid[int(rng.integers(len(grid)))] for _ in range(VIEWS)])
        thumb = np.asarray(Image.fromarray(thumbnail(px)).resize((CROP, CROP), Image.Resampling.BICUBIC))[None]
        tested = {"as_is": tiles(px, CROP, TILES), "same_codec": tiles(decode_jpeg(same_bytes), CROP, TILES),
                  **tested}
        f = embed(model, np.concatenate([views, plain, thumb, *tested.values()]))
    out = {"chain": f[:VIEWS], "plain": f[VIEWS : 2 * VIEWS], "thumb": f[2 * VIEWS]}
    start = 2 * VIEWS + 1
    for cond in CONDITIONS:
        n = len(tested[cond]) if cond in tested else 0
        out[cond] = f[start : start + n].mean(0) if n else np.full(f.shape[1], np.nan)
        start += n
    h, w = px.shape[:2]
    sizes = {"as_is": (w, h), "same_codec": same.shape[1::-1], "same_size": (512, 512), "native_512": (512, 512)}
    files = {"as_is": data, "same_codec": same_bytes, **small}
    return {**out, **{f"meta_{c}": stored_meta(*sizes[c], files[c]) for c in CONDITIONS},
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
        for i, row in enumerate(missing, 1):
            per_row[row["relpath"]] = row_features(model, chain, read_limited(root / row["relpath"]), row["relpath"],
                                                   reduced_store(cache), lean=family in LEAN)
            if i % SAVE_EVERY == 0 or i == len(missing):  # a killed run keeps what it computed
                print(f"{family} features {i}/{len(missing)}, {time.time() - started:.0f} s", flush=True)
                cache.parent.mkdir(parents=True, exist_ok=True)
                part = cache.with_name(cache.stem + ".part.npz")  # a save cut short never replaces the cache
                np.savez(part, **_pack(per_row), views_version=np.array(VIEWS_VERSION),
                         feature_seconds=np.array(seconds + time.time() - started))  # reported in wild.md
                part.replace(cache)
        seconds += time.time() - started
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


def reduced_store(cache: Path) -> Path:
    """Where the same-size and native-crop JPEGs live, beside the feature caches (shared by every backbone)."""
    return cache.with_name("wild_reduced")


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
                   weighted: bool = False, conditions: tuple[str, ...] = CONDITIONS
                   ) -> tuple[dict[str, np.ndarray], list[float]]:
    """P(fake) per image and condition, each from the fold that held its source out; and the C
    that each fold's inner CV chose. `weighted`: sources weighted by 1/sqrt(size) (`source_weights`)."""
    p = {cond: np.full(len(labels), np.nan) for cond in conditions}
    chosen = []
    for f in range(folds.max() + 1):
        train, test = folds != f, folds == f
        c = inner_c(feats[views][train], labels[train], sources[train], weighted)
        chosen.append(c)
        model = probe(feats[views][train], labels[train], c, sources[train] if weighted else None)
        for cond in p:
            scored = test & ~np.isnan(feats[cond]).any(-1)  # native_512 leaves small images out, LEAN more
            if scored.any():
                p[cond][scored] = model.predict_proba(feats[cond][scored])[:, 1]
    return p, chosen


def content_only(feats: dict) -> dict[str, np.ndarray]:
    """The content-only baseline's inputs: the 32 px thumbnail's features stand in for every test
    condition (and are its one training view), left out where the condition leaves the image out."""
    thumb = feats["thumb"]
    return {"thumb_views": thumb[:, None], **{c: np.where(np.isnan(feats[c]).any(-1, keepdims=True), np.nan, thumb)
                                              for c in CONDITIONS}}


def side_by_side(*feats: dict) -> dict[str, np.ndarray]:
    """Several backbones' features of the same views, concatenated per view (one probe reads them all)."""
    return {k: np.concatenate([f[k] for f in feats], -1) for k in ("chain", *CONDITIONS)}


def feature_part(feats: dict, family: str, part: str) -> dict[str, np.ndarray]:
    """Only the pooled stages ("stages") or only the pooled head ("head", 1,280 values) of a probe's
    features: generator traces are low-level, while the head, closest to ImageNet's classes, also
    carries what an image shows, which differs between sources more than between classes."""
    head = build_model(default_config(family)).network.backbone.num_features
    cut = slice(None, -head) if part == "stages" else slice(-head, None)
    return {k: feats[k][..., cut] for k in ("chain", *CONDITIONS)}


def shortcut(feats: dict, labels: np.ndarray, folds: np.ndarray) -> dict[str, np.ndarray]:
    """Width, height, format and file size of the file each condition scores: as stored, these separate
    the classes on their own in most real-world sets; after a reduction only the JPEG's size is left."""
    p = {cond: np.full(len(labels), np.nan) for cond in CONDITIONS}
    for f in range(folds.max() + 1):
        for cond in p:
            x = feats[f"meta_{cond}"]
            present = ~np.isnan(x).any(-1)
            train, test = (folds != f) & present, (folds == f) & present
            model = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(x[train], labels[train])
            p[cond][test] = model.predict_proba(x[test])[:, 1]
    return p


def same_codec_blobs(feats: dict) -> list[bytes]:
    ends = np.cumsum(feats["same_codec_lengths"])
    return [feats["same_codec_bytes"][e - n : e].tobytes()
            for e, n in zip(ends, feats["same_codec_lengths"], strict=True)]


def detector_scores(det: Detector, rows: list[dict], root: Path, blobs: list[bytes],
                    store: Path) -> dict[str, np.ndarray]:
    """P(fake) of a saved detector through the product's own path (`Detector.predict`: its tiles), on
    each condition's file: as stored, same codec (`blobs`), and the reductions kept in `store`."""
    as_is = [p.p_fake for p in det.iter_predict(read_limited(root / r["relpath"]) for r in rows)]
    out = {"as_is": np.array(as_is, dtype=float), "same_codec": np.array([p.p_fake for p in det.predict(blobs)])}
    for cond in REDUCED:
        files = [store / cond / f"{r['relpath']}.jpg" for r in rows]
        present = [f for f in files if f.exists()]
        scores = iter(p.p_fake for p in det.iter_predict(present))
        out[cond] = np.array([next(scores) if f.exists() else np.nan for f in files], dtype=float)
    return out


SCRATCH = ("fast", "npr_patch")  # families with no pretrained weights


@dataclass(frozen=True)
class Trained:
    """A detector trained per fold with `aivsreal train`'s own loop on native crops from disk: of the
    files as stored, or (`reduced`) of their `same_size` reductions, the 512 px view the headline
    scores, so that training sees the scale it is tested at."""

    family: str
    crop: int
    epochs: int
    lr: float
    batch_size: int = 32
    reduced: bool = False

    @property
    def key(self) -> str:
        return self.family + ("_512" if self.reduced else "")

    @property
    def pretrained(self) -> bool:
        return self.family not in SCRATCH

    @property
    def name(self) -> str:
        start = "ImageNet" if self.pretrained else "scratch"
        views = "crops of the 512 px reductions" if self.reduced else "crops"
        verb = "fine-tuned" if self.pretrained else "trained"
        return f"{self.family} {verb} ({start}, codec chain, {self.crop} px {views}, {self.epochs} epochs)"


# lr: each recipe's, scaled to batch 32 (fast: SGD 0.1 at 256; Lite0: AdamW 1e-3 at 128, a little lower to fine-tune);
# npr_patch: its own recipe at batch 64, 10 epochs of one random 96 px patch per image (10-15 min a fold on 2 cores)
TRAINED = (Trained("fast", 96, 6, 0.0125), Trained("efficientnet_lite0", 160, 2, 2e-4),
           Trained("npr_patch", 96, 10, 2e-3, 64, reduced=True),
           Trained("efficientnet_lite0", 224, 3, 2e-4, reduced=True))


def trained_scores(spec: Trained, rows: list[dict], root: Path, labels: np.ndarray, folds: np.ndarray,
                   blobs: list[bytes], cache: Path, store: Path) -> tuple[dict[str, np.ndarray], dict]:
    """P(fake) per image and condition from the fold that held its source out; val carved from the
    fold's train images (10%), never from its test. Cached per spec: delete the file to retrain."""
    relpaths = np.array([r["relpath"] for r in rows])
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if "relpaths" not in z or not (np.array_equal(z["relpaths"], relpaths) and np.array_equal(z["folds"], folds)
                                       and all(c in z for c in CONDITIONS)):
            print(f"error: {cache} was trained on other images, folds or conditions than these: delete it to retrain",
                  file=sys.stderr)
            raise SystemExit(2)
        record = json.loads(str(z["record"]))
        record["pflops_per_fold"] = fold_pflops(spec, labels, folds, record["epochs_run"])
        return {c: z[c] for c in CONDITIONS}, record
    p = {cond: np.full(len(labels), np.nan) for cond in CONDITIONS}
    record: dict = {"minutes_per_fold": [], "epochs_run": []}
    refs = [ImageRef(str(store / "same_size"), f"{r['relpath']}.jpg", 0, 0) if spec.reduced
            else ImageRef(str(root), r["relpath"], 0, 0) for r in rows]
    for f in range(folds.max() + 1):
        test_idx = np.flatnonzero(folds == f)
        fit, val = fit_and_val(labels, folds, f)

        def split(idx: np.ndarray) -> DecodedSplit:
            return DecodedSplit(CentreCrops([refs[i] for i in idx], spec.crop), labels[idx],
                                [rows[i]["relpath"] for i in idx], [])

        config = model_config(spec.family, {"crop": spec.crop})
        torch.manual_seed(0)
        model = build_model(config, pretrained=spec.pretrained)
        cfg = TrainConfig.for_model(train_recipe(spec.family), epochs=spec.epochs, lr=spec.lr,
                                    batch_size=spec.batch_size, seed=0)
        started = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            state = train(model, split(fit), split(val), cfg, Path(tmp), torch.device("cpu"), progress=False)
            record["minutes_per_fold"].append(round((time.time() - started) / 60, 1))
            record["epochs_run"].append(state.epoch)
        det = Detector.from_network(model, ModelMeta(), "cpu")
        fold_scores = detector_scores(det, [rows[i] for i in test_idx], root, [blobs[i] for i in test_idx], store)
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


def auc_or_none(labels: np.ndarray, p: np.ndarray) -> float | None:
    return round(float(roc_auc_score(labels, p)), 4) if 0 < labels.sum() < len(labels) else None


def summarise(p: np.ndarray, labels: np.ndarray, rows: list[dict], mask: np.ndarray | None = None) -> dict:
    """Pooled AUC and accuracy at 0.5 over the images in `mask` that the condition scored; per source
    and per family: AUC against the other class, recall; AUC within each stored file format that
    both classes have (`within_format`); and per content tag, REAL of that tag against FAKE of it.

    Most REAL files are JPEG and most FAKE ones PNG or WebP, so a detector can score by compression
    history (an earlier JPEG's 8x8 grid may survive the same-codec re-encoding) instead of generator
    traces. REAL JPEG against FAKE JPEG, and REAL PNG against FAKE PNG, take that away. Likewise a
    detector can score by what is pictured; REAL animals against FAKE animals takes that away."""
    keep = ~np.isnan(p) & (np.ones(len(p), bool) if mask is None else mask)
    p, labels, rows = p[keep], labels[keep], [r for r, k in zip(rows, keep, strict=True) if k]
    real, fake = labels == 0, labels == 1
    formats = np.array([r["format"] for r in rows])
    out = {"n_real": int(real.sum()), "n_fake": int(fake.sum()), "pooled_auc": auc_or_none(labels, p),
           "pooled_accuracy": float(np.mean((p >= 0.5) == labels)), "per_source": {}, "per_family": {},
           "within_format": {}, "per_content": {}}
    for f in WITHIN_FORMATS:
        mine = formats == f
        out["within_format"][f] = {"n_real": int((real & mine).sum()), "n_fake": int((fake & mine).sum()),
                                   "auc": auc_or_none(labels[mine], p[mine])}
    contents = np.array([r.get("content", "") for r in rows])
    for tag in sorted(set(contents) - {""}):
        mine = contents == tag
        out["per_content"][tag] = {"n_real": int((real & mine).sum()), "n_fake": int((fake & mine).sum()),
                                   "auc": auc_or_none(labels[mine], p[mine])}
    if not (real.any() and fake.any()):
        return out
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


CONTENT_BASELINE = "content only (32 px thumbnail, same probe)"
SHORTCUT = "size/format/bytes only"


def take(feats: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """The per-image arrays of a feature dict for the images `idx` (in that order)."""
    return {k: v[idx] for k, v in feats.items() if k in ROW_ARRAYS}


def reductions_view(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bundled recipe's training view: each image's `same_size` reduction (its 2x2 tiles' mean) as its
    one view."""
    return {**feats, "same_size_view": feats["same_size"][:, None]}


def probe_contenders(feats: dict[str, dict], vit_feats: dict[str, dict],
                     headline_only: bool = False) -> dict[str, tuple[dict, str, bool]]:
    """contender -> (features, the training views, sources weighted by 1/sqrt(size)), for the backbones
    that were computed (--probes); with `headline_only`, the bundled recipe and the content baseline."""
    out: dict[str, tuple[dict, str, bool]] = {}
    have = set(feats) if not headline_only else set()
    if BUNDLED_PROBE in feats:
        out[CHAIN_RECIPE] = (feats[BUNDLED_PROBE], "chain", False)
        out[BUNDLED_RECIPE] = (reductions_view(feats[BUNDLED_PROBE]), "same_size_view", False)
    if "xception" in feats:  # a contender for the bundled recipe: in the headline-only runs too (LEAN: no chain)
        out[XCEPTION_RECIPE] = (reductions_view(feats["xception"]), "same_size_view", False)
    if "lite0" in have:
        out["lite0 probe (codec chain)"] = (feats["lite0"], "chain", False)
        out["lite0 probe (plain crops)"] = (feats["lite0"], "plain", False)
    if "lite1" in have:
        out["lite1 probe (codec chain)"] = (feats["lite1"], "chain", False)
    if "lite2" in have:
        lite2 = feats["lite2"]
        out["lite2 probe (codec chain, sources weighted)"] = (lite2, "chain", True)
        out["lite2 probe (codec-chain and plain views, 4 per image)"] = (
            {**lite2, "chain_and_plain": np.concatenate([lite2["chain"], lite2["plain"]], 1)}, "chain_and_plain", False)
        out["lite2 probe, stages only (no head; codec chain)"] = (feature_part(lite2, "lite2_probe", "stages"),
                                                                   "chain", False)
        out["lite2 probe, head only (codec chain)"] = (feature_part(lite2, "lite2_probe", "head"), "chain", False)
    if {"lite0", "lite2"} <= have:
        out["lite0+lite2 probe (codec chain, features side by side)"] = (side_by_side(feats["lite0"], feats["lite2"]),
                                                                          "chain", False)
    if {"lite1", "lite2"} <= have:
        out["lite1+lite2 probe (codec chain, features side by side)"] = (side_by_side(feats["lite1"], feats["lite2"]),
                                                                          "chain", False)
    if "lite2stats" in have:
        out["lite2 probe, mean+std pooled (codec chain)"] = (feats["lite2stats"], "chain", False)
    if "spectrum" in have:
        out["spectrum probe (codec chain)"] = (feats["spectrum"], "chain", False)
        out["spectrum probe (plain crops)"] = (feats["spectrum"], "plain", False)
    if {"lite2", "spectrum"} <= have:
        out["lite2+spectrum probe (codec chain, features side by side)"] = (
            side_by_side(feats["lite2"], feats["spectrum"]), "chain", False)
    for family, f in vit_feats.items():
        out[f"{family.replace('_', ' ')} ({ARCHS[family]}, codec chain)"] = (f, "chain", False)
    # content only: the bundled recipe's backbone (else the first computed) on 32 px thumbnails
    base = feats.get(BUNDLED_PROBE) or next(iter(feats.values()))
    out[CONTENT_BASELINE] = (content_only(base), "thumb_views", False)
    return out


@dataclass
class Evaluation:
    """Every contender scored on one set of images under group k-fold over its sources."""

    rows: list[dict]
    folds: np.ndarray
    scores: dict[str, dict[str, np.ndarray]]  # contender -> condition -> P(fake) per image (NaN: not scored)
    probe_c: dict[str, list[float]]
    trained: dict[str, dict]


def evaluate(rows: list[dict], idx: np.ndarray, probe_feats: dict, vit_feats: dict, blobs: list[bytes],
             specs: tuple[Trained, ...], root: Path, cache: Path, tag: str, headline_only: bool = False) -> Evaluation:
    """The images `idx` of the feature arrays: their own folds, every probe (C by inner CV), the
    shortcut, the per-fold fine-tunes of `specs` and the bundled `cifake`."""
    labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    folds = source_folds([r["source"] for r in rows], labels)
    sources = np.array([r["source"] for r in rows])
    mine = {short: take(f, idx) for short, f in probe_feats.items()}
    vits = {family: take(f, idx) for family, f in vit_feats.items()}
    blobs = [blobs[i] for i in idx]
    store = reduced_store(cache)
    fitted = {name: cross_validate(f, labels, folds, views, sources, weighted)
              for name, (f, views, weighted) in probe_contenders(mine, vits, headline_only).items()}
    trained = {spec.name: trained_scores(spec, rows, root, labels, folds, blobs,
                                         cache.with_name(f"wild_{spec.key}_{spec.crop}_{tag}.npz"), store)
               for spec in specs}
    scores = {**{name: p for name, (p, _) in fitted.items()},
              SHORTCUT: shortcut(next(iter(mine.values())), labels, folds),
              **{name: p for name, (p, _) in trained.items()},
              **ensembles({name: p for name, (p, _) in fitted.items()},
                          {spec.name: trained[spec.name][0] for spec in specs if spec.reduced}),
              "cifake (bundled, 32 px)": detector_scores(Detector.load("cifake", device="cpu"), rows, root, blobs,
                                                         store)}
    return Evaluation(rows, folds, scores, {name: c for name, (_, c) in fitted.items()},
                      {spec.name: {**asdict(spec), **trained[spec.name][1]} for spec in specs})


def ensembles(probes: dict[str, dict[str, np.ndarray]], trained: dict[str, dict[str, np.ndarray]]
              ) -> dict[str, dict[str, np.ndarray]]:
    """Mean-logit pairs, each condition's P(fake): every headline-scale trained model with each Lite2
    probe (a trace model beside a probe), and the two strongest backbones' probes, Lite2 on codec-chain
    crops and Xception on the reductions."""
    pairs = [(t, probe_name) for t in trained for probe_name in (CHAIN_RECIPE, BUNDLED_RECIPE)
             if probe_name in probes]
    members = {**trained, **probes}
    if {CHAIN_RECIPE, XCEPTION_RECIPE} <= set(probes):
        pairs.append((CHAIN_RECIPE, XCEPTION_RECIPE))
    return {f"{a} + {b}, mean logit": {c: mean_logit(members[a][c], members[b][c]) for c in CONDITIONS}
            for a, b in pairs}


def mean_logit(*ps: np.ndarray) -> np.ndarray:
    """The ensemble of detectors' P(fake): the mean of their logits (NaN where any is), pooled as a
    detector pools its views (`combine_views`)."""
    return combine_views(np.column_stack(ps).ravel(), None, [len(ps)] * len(ps[0]))[0]


def summary(ev: Evaluation, conditions: tuple[str, ...], mask: np.ndarray | None = None) -> dict:
    labels = np.array([int(r["cls"] == "FAKE") for r in ev.rows])
    return {"images": len(ev.rows),
            "folds": {str(f): sorted({r["source"] for r, k in zip(ev.rows, ev.folds, strict=True) if k == f})
                      for f in range(ev.folds.max() + 1)},
            "probe_c_per_fold": ev.probe_c, "trained": ev.trained,
            "contenders": {name: {c: summarise(ps[c], labels, ev.rows, mask) for c in conditions}
                           for name, ps in ev.scores.items()
                           if any(not np.isnan(ps[c]).all() for c in conditions)}}  # LEAN: not on stored files


def keep_earlier(result: dict, path: Path) -> None:
    """A run limited by --headline-only, --probes or --trained recomputes some contenders; the others
    keep the figures of the run that wrote `path`, in each table whose images and folds are the same
    as this run's (the second table, and the photoreal headline until its images change), each
    marked with the date and command of the run that measured it."""
    if not path.exists():
        return
    earlier = json.loads(path.read_text())
    for new, old in ((result, earlier), (result["photoreal"], earlier.get("photoreal", {}))):
        if (old.get("images"), old.get("folds")) != (new["images"], new["folds"]):
            continue  # other images: the earlier figures are not comparable
        kept = {name: c for name, c in old.get("contenders", {}).items() if name not in new["contenders"]}
        new["contenders"].update(kept)
        for key in ("probe_c_per_fold", "trained", *(slice_key for slice_key, _, _ in SLICES)):
            if key in new:
                new[key] = {**{k: v for k, v in old.get(key, {}).items() if k in kept}, **new[key]}
        if kept:  # each row names the run that measured it, even across several --headline-only runs
            origin = old.get("from_earlier_run", {})
            new["from_earlier_run"] = {name: origin.get(name, {"date": earlier.get("date"),
                                                               "command": earlier.get("command")})
                                       for name in sorted(kept)}


def read_sources(path: str) -> set[str]:
    """Source names, one per line ('#' starts a comment); none when the file does not exist."""
    if not Path(path).exists():
        return set()
    return {line.split("#")[0].strip() for line in Path(path).read_text().splitlines()} - {""}


def matched(p_content: np.ndarray, labels: np.ndarray, mask: np.ndarray, bins: int = 10,
            seed: int = 0) -> np.ndarray:
    """The images of `mask` matched on one score: within each of `bins` quantile bins of it, as many
    REAL as FAKE (the larger class subsampled, seeded).

    Matching on the content-only baseline's held-out score (a propensity score): a REAL and a FAKE
    image in one bin look alike to a classifier that sees only what is pictured, so on the matched
    slice that classifier is near chance and what a detector scores above it is not content. Matching
    on the stored size (its shorter side) does the same for size: every reduction leaves a trace of
    how much an image was shrunk, and as stored REAL photos are larger than renders. Each slice is
    chosen from its score alone, never from a detector's."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(mask & ~np.isnan(p_content))
    edges = np.quantile(p_content[idx], np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(edges, p_content[idx], side="right")
    keep = np.zeros(len(labels), bool)
    for b in range(bins):
        members = idx[which == b]
        real, fake = members[labels[members] == 0], members[labels[members] == 1]
        n = min(len(real), len(fake))
        keep[rng.choice(real, n, replace=False)] = keep[rng.choice(fake, n, replace=False)] = True
    return keep


def source_capped(sources: np.ndarray, labels: np.ndarray, mask: np.ndarray, cap: float = SOURCE_CAP,
                  seed: int = 0) -> np.ndarray:
    """The images of `mask` with no source above `cap` of its class: each class's largest sources
    subsampled (seeded) to the highest common count L that keeps every source at or under `cap` of what
    the class keeps. The issue's data rule (no source above 15%), which the development set's three
    largest sources break (ImageNet samples, the Imagen replication, the Horde style previews): on this
    slice no one source's look carries the pooled figure. Chosen from the source names alone."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(labels), bool)
    for cls in (0, 1):
        idx = np.flatnonzero(mask & (labels == cls))
        if not len(idx):
            continue
        names, inverse, counts = np.unique(sources[idx], return_inverse=True, return_counts=True)
        # with fewer than 1/cap sources no count can hold: each keeps as many as the smallest (equal shares)
        level = next((n for n in range(counts.max(), 0, -1) if n <= cap * np.minimum(counts, n).sum()),
                     counts.min())
        for k in range(len(names)):
            members = idx[inverse == k]
            keep[members if len(members) <= level else rng.choice(members, level, replace=False)] = True
    return keep


def photoreal_mask(rows: list[dict]) -> np.ndarray:
    return np.array([r["content"] not in NOT_PHOTOREAL for r in rows])


def data_args(ap: argparse.ArgumentParser) -> None:
    """The images, labels and caches every script on the wild set reads (this one, bundle_wild.py,
    wild_scales.py), named and defaulted alike."""
    ap.add_argument("--wild", required=True, help="the extracted images (OUT of benchmarks/photoreal/extract.py)")
    ap.add_argument("--labels", nargs="+", required=True,
                    help="the development set's labels.csv, then its additions (benchmarks/wild_extra/labels.csv): "
                         "the second table, as before the photoreal data")
    ap.add_argument("--add", nargs="*", default=[], metavar="LABELS",
                    help="more labels files for the photoreal headline (benchmarks/photoreal/labels.csv)")
    ap.add_argument("--content", default="benchmarks/wild_content.csv",
                    help="content tags of images whose labels file has no content column")
    ap.add_argument("--external", default="benchmarks/photoreal/external.txt",
                    help="the locked external sources, one per line: never scored here")
    ap.add_argument("--cache", default="benchmarks/runs/wild_features.npz", help="where the feature caches live")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data_args(ap)
    ap.add_argument("--probes", nargs="*", choices=list(PROBES), default=[p for p in PROBES if p not in OPT_IN],
                    help="the frozen backbones to compute (default: all; each is 9-21 forward passes per image)")
    ap.add_argument("--trained", nargs="*", choices=[s.key for s in TRAINED], default=[s.key for s in TRAINED],
                    help="the per-fold fine-tunes to run (default: all; hours of CPU on a grown set)")
    ap.add_argument("--headline-only", action="store_true",
                    help="of the probes, only the bundled recipe's and the content-only baseline (with the shortcut "
                         "and the bundled detectors): the run that fits a CPU session")
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
    if not args.probes:
        ap.error("--probes needs at least one backbone")
    started = time.time()
    root = Path(args.wild).expanduser()
    external = read_sources(args.external)
    content = read_content(args.content)
    rows = [r for r in read_labels(args.labels + args.add, content) if r["source"] not in external]
    first_set = {r["relpath"] for r in read_labels(args.labels, content)}
    original = np.array([i for i, r in enumerate(rows) if r["relpath"] in first_set])
    cache = Path(args.cache)
    device = resolve_device(args.device)
    probe_feats = {short: features_for(rows, root, feature_cache(cache, short), PROBES[short], device)
                   for short in args.probes}
    weights = args.vit_weights or [None] * len(args.vit_probe)
    vit_feats = {family: features_for(rows, root, feature_cache(cache, family), family, device, w)
                 for family, w in zip(args.vit_probe, weights, strict=True)}
    blobs = same_codec_blobs(next(iter(probe_feats.values())))
    specs = tuple(s for s in TRAINED if s.key in args.trained)
    # the models trained on 512 px reductions are the headline's contenders: the second table keeps its own
    first = evaluate([rows[i] for i in original], original, probe_feats, vit_feats, blobs,
                     tuple(s for s in specs if not s.reduced), root, cache, "original", args.headline_only)
    grown = evaluate(rows, np.arange(len(rows)), probe_feats, vit_feats, blobs, specs, root, cache, "grown",
                     args.headline_only)
    conditions = ("same_size", "native_512", "as_is")
    photoreal = summary(grown, conditions, photoreal_mask(rows))
    grown_labels = np.array([int(r["cls"] == "FAKE") for r in rows])
    slice_of = {"content_matched": matched(grown.scores[CONTENT_BASELINE]["same_size"], grown_labels,
                                           photoreal_mask(rows)),
                "size_matched": matched(np.log([min(int(r["width"]), int(r["height"])) for r in rows]), grown_labels,
                                        photoreal_mask(rows)),
                "source_capped": source_capped(np.array([r["source"] for r in rows]), grown_labels,
                                               photoreal_mask(rows))}
    for key, _, _ in SLICES:  # every contender on each subset where one shortcut cannot tell the classes apart
        photoreal[key] = {name: {c: summarise(ps[c], grown_labels, rows, slice_of[key]) for c in conditions}
                          for name, ps in grown.scores.items()}
    # the shipped `wild` detector: scored only on the sources it was not fitted on (its summary names them;
    # detectors bundled before 2026-12-07 were fitted on every --labels image)
    shipped_det = Detector.load("wild", device="cpu")
    fitted_on = set(shipped_det.meta.summary.get("data", {}).get("sources")
                    or {rows[i]["source"] for i in original})
    added = np.array([i for i, r in enumerate(rows) if r["source"] not in fitted_on], dtype=int)
    if len(added):
        shipped = detector_scores(shipped_det, [rows[i] for i in added], root, [blobs[i] for i in added],
                                  reduced_store(cache))
        added_rows = [rows[i] for i in added]
        added_labels = np.array([int(r["cls"] == "FAKE") for r in added_rows])
        photoreal["bundled_wild_on_added"] = {c: summarise(shipped[c], added_labels, added_rows,
                                                           photoreal_mask(added_rows))
                                              for c in ("same_size", "native_512", "as_is")}
    bundled = photoreal["contenders"][BUNDLED_RECIPE] if BUNDLED_RECIPE in photoreal["contenders"] else None
    photoreal.update(
        external_sources=sorted(external), added_labels=args.add,
        pooled_auc=bundled["same_size"]["pooled_auc"] if bundled else None,
        per_content=bundled["same_size"]["per_content"] if bundled else None,
        content_baseline_auc=photoreal["contenders"][CONTENT_BASELINE]["same_size"]["pooled_auc"],
        shortcut_baseline_auc=photoreal["contenders"][SHORTCUT]["same_size"]["pooled_auc"],
        shortcut_as_stored_auc=photoreal["contenders"][SHORTCUT]["as_is"]["pooled_auc"],
        content_matched_pooled_auc=photoreal["content_matched"].get(BUNDLED_RECIPE, {}).get("same_size", {})
        .get("pooled_auc"),
        content_matched_content_baseline_auc=photoreal["content_matched"][CONTENT_BASELINE]["same_size"]["pooled_auc"])
    result = {"provenance": provenance().to_dict(), "date": datetime.now(UTC).strftime("%Y-%m-%d"),
              "command": "python benchmarks/wild.py " + " ".join(sys.argv[1:]),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, CPU"
                         + (f"; features on {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
              "feature_minutes": {short: round(float(f["feature_seconds"]) / 60, 1)
                                  for short, f in {**probe_feats, **vit_feats}.items()},
              "photoreal": photoreal,
              **summary(first, ("same_codec", "as_is"))}
    keep_earlier(result, RESULTS / "wild.json")  # rows this run did not recompute (--probes, --trained, ...)
    if BUNDLED_RECIPE in result["contenders"]:
        best = result["contenders"][BUNDLED_RECIPE]
        result["same_codec"] = {"pooled_auc": best["same_codec"]["pooled_auc"]}
        result["as_is"] = {"pooled_auc": best["as_is"]["pooled_auc"]}
    result["minutes"] = round((time.time() - started) / 60, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wild.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "wild.md").write_text(markdown(result))
    print((RESULTS / "wild.md").read_text())


def lead_contender(contenders: dict) -> str:
    """The bundled detector's recipe when it was computed (--probes), else the first probe."""
    return BUNDLED_RECIPE if BUNDLED_RECIPE in contenders else next(iter(contenders))


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(r: dict) -> str:
    features = " and ".join(f"{m} min for {b}" for b, m in r["feature_minutes"].items())
    earlier = {**r.get("from_earlier_run", {}), **r["photoreal"].get("from_earlier_run", {})}
    runs = {**r["trained"], **r["photoreal"]["trained"]}
    trained = "; ".join(f"{name}: {sum(t['minutes_per_fold']):.1f} min, {sum(t['pflops_per_fold']):.2f} PFLOP "
                        f"over the 4 folds" for name, t in runs.items() if name not in earlier) \
        or "none this run (--trained)"
    lines = [f"Measured {r['date']} on {r['machine']}: `{r['command']}` ({r['minutes']} min this run; computed once "
             f"and cached in benchmarks/runs/: the probe features (up to 21 forward passes of 224 px crops "
             f"per image), {features}, and the per-fold training, {trained})", ""]
    return "\n".join(lines) + "\n" + markdown_photoreal(r["photoreal"]) + "\n" + markdown_original(r)


SLICES = (  # the photoreal slice's subsets where one shortcut cannot tell the classes apart: key, title, how
    ("content_matched", "Matched on content: what is left when a content-only classifier cannot tell the classes "
     "apart", "The photoreal slice matched on the content-only baseline's held-out score (10 quantile bins, as "
     "many REAL as FAKE in each, seeded; chosen from the baseline's scores alone): {real} REAL and {fake} FAKE. "
     "The content-only baseline scores {content} there."),
    ("size_matched", "Matched on size: what is left when the stored size cannot tell the classes apart",
     "The photoreal slice matched on each image's stored shorter side (10 quantile bins of its log, as many REAL "
     "as FAKE in each, seeded): {real} REAL and {fake} FAKE. Every reduction leaves a trace of how much an image "
     "was shrunk; here both classes were shrunk alike."),
    ("source_capped", f"No source above {SOURCE_CAP:.0%} of its class",
     f"The photoreal slice with each class's largest sources subsampled (seeded) until none holds more than "
     f"{SOURCE_CAP:.0%} of its class, as the data rule asks: {{real}} REAL and {{fake}} FAKE. The content-only "
     "baseline scores {content} there."),
)


def markdown_photoreal(r: dict) -> str:
    c = r["contenders"]
    lead = lead_contender(c)
    some = c[lead]["same_size"]
    lines = ["## Photoreal slice (the headline)", "",
             f"Every image whose content is not art or graphic: {some['n_real']:,} REAL and {some['n_fake']:,} FAKE of "
             f"{r['images']:,} images in {len(r['folds'])} folds, each holding out whole sources of both classes "
             f"(probes trained on every image of the training sources). Same size: every image resized so its "
             "shorter side is 512 px, centre-cropped to 512x512, saved as JPEG q90, REAL and FAKE alike (the "
             "headline). Native crop: a 512x512 centre crop at native resolution, saved the same way; images "
             f"under 512 px are left out ({c[lead]['native_512']['n_real']:,} REAL and "
             f"{c[lead]['native_512']['n_fake']:,} FAKE remain). Locked external sources, never scored here: "
             f"{', '.join(r['external_sources']) or 'none yet'}.", "",
             *earlier_note(r),
             f"- **{lead}: same-size AUC {fmt(some['pooled_auc'])}**",
             f"- content-only baseline (the same probe on 32 px thumbnails): {fmt(r['content_baseline_auc'])} "
             "(above 0.65 means the slice is confounded by what is pictured)",
             f"- size/format/bytes baseline: {fmt(r['shortcut_baseline_auc'])} on the same-size files, "
             f"{fmt(r['shortcut_as_stored_auc'])} on the files as stored"]
    shipped = r.get("bundled_wild_on_added")
    if shipped:
        lines.append(f"- the shipped `wild` detector on the added photoreal images it was not fitted on "
                     f"({shipped['same_size']['n_real']} REAL, {shipped['same_size']['n_fake']} FAKE): same size "
                     f"{fmt(shipped['same_size']['pooled_auc'])}, native crop "
                     f"{fmt(shipped['native_512']['pooled_auc'])}, as stored {fmt(shipped['as_is']['pooled_auc'])}")
    lines += ["",
              "| contender | same size AUC | native crop AUC | as stored AUC | lowest content-tag AUC (same size) |",
              "|---|---|---|---|---|"]
    for name, m in c.items():
        tags = [(t["auc"], tag) for tag, t in m["same_size"]["per_content"].items() if t["auc"] is not None]
        worst = f"{min(tags)[1]} {min(tags)[0]:.3f}" if tags else "–"
        lines.append(f"| {name} | **{fmt(m['same_size']['pooled_auc'])}** | {fmt(m['native_512']['pooled_auc'])} "
                     f"| {fmt(m['as_is']['pooled_auc'])} | {worst} |")
    for key, title, how in SLICES:
        m = r.get(key)
        if not m:
            continue
        n = m[lead]["same_size"]
        lines += ["", f"### {title}", "", how.format(real=f"{n['n_real']:,}", fake=f"{n['n_fake']:,}",
                                                       content=fmt(m[CONTENT_BASELINE]["same_size"]["pooled_auc"])),
                  "", "| contender | same size AUC | native crop AUC | as stored AUC |", "|---|---|---|---|"]
        lines += [f"| {name} | **{fmt(x['same_size']['pooled_auc'])}** | {fmt(x['native_512']['pooled_auc'])} | "
                  f"{fmt(x['as_is']['pooled_auc'])} |" for name, x in m.items()]
    lines += ["", "### Per content tag, same size: REAL of the tag against FAKE of the tag", "",
              f"| content | REAL | FAKE | {lead} | content only | size/format/bytes |", "|---|---|---|---|---|---|"]
    for tag, t in c[lead]["same_size"]["per_content"].items():
        lines.append(f"| {tag} | {t['n_real']} | {t['n_fake']} | {fmt(t['auc'])} | "
                     f"{fmt(c[CONTENT_BASELINE]['same_size']['per_content'][tag]['auc'])} | "
                     f"{fmt(c[SHORTCUT]['same_size']['per_content'][tag]['auc'])} |")
    for key, title in (("per_family", "Per generator family (FAKE) against all REAL"),
                       ("per_source", "Per held-out source")):
        lines += ["", f"### {title}, same size", "",
                  f"| group | n | {lead} AUC | recall / kept | content only AUC |", "|---|---|---|---|---|"]
        for g, m in c[lead]["same_size"][key].items():
            other = c[CONTENT_BASELINE]["same_size"][key].get(g, {})
            lines.append(f"| {g} | {m['n']} | {m['auc_vs_other_class']:.3f} | "
                         f"{m.get('fake_recall', m.get('real_kept')):.3f} | {fmt(other.get('auc_vs_other_class'))} |")
    return "\n".join(lines) + "\n"


def earlier_note(r: dict) -> list[str]:
    """The rows a limited run kept from earlier runs, each with the run that measured it."""
    earlier = r.get("from_earlier_run")
    return ["Rows not recomputed by this run keep the figures of the run that measured them "
            "(same images, folds and views):", "",
            *[f"- {name}: {o['date']}, `{o['command']}`" for name, o in earlier.items()], ""] if earlier else []


def markdown_original(r: dict) -> str:
    lines = ["## The development set as before the photoreal data (second table)", "", *earlier_note(r),
             f"{r['images']:,} images; {len(r['folds'])} folds, each holding out whole sources of both classes "
             f"(probe C per fold, from inner CV: {r['probe_c_per_fold']}):", ""]
    lines += [f"- fold {f}: {', '.join(s)}" for f, s in r["folds"].items()]
    lines += ["", "### Pooled over the held-out folds", "",
              "| contender | same codec AUC | same codec acc | as is AUC | as is acc | "
              + " | ".join(f"same codec AUC, {f} files only" for f in WITHIN_FORMATS) + " |",
              "|---|---|---|---|---|" + "---|" * len(WITHIN_FORMATS)]
    for name, c in r["contenders"].items():
        same, as_is = c["same_codec"], c["as_is"]
        lines.append(f"| {name} | **{same['pooled_auc']:.3f}** | {same['pooled_accuracy']:.3f} "
                     f"| {as_is['pooled_auc']:.3f} | {as_is['pooled_accuracy']:.3f} | "
                     + " | ".join(fmt(same["within_format"][f]["auc"]) for f in WITHIN_FORMATS) + " |")
    lead = lead_contender(r["contenders"])
    counts = r["contenders"][lead]["same_codec"]["within_format"]
    lines += ["", "Within a format: REAL files of that stored format against FAKE files of it ("
              + "; ".join(f"{f}: {c['n_real']} REAL, {c['n_fake']} FAKE" for f, c in counts.items())
              + "), so that compression history cannot tell the classes apart."]
    for key, title in (("per_source", "Per held-out source"),
                       ("per_family", "Per generator family (FAKE) vs all REAL")):
        lines += ["", f"### {title}: same codec, {lead} vs the shortcut", "",
                  "| group | n | AUC vs other class | FAKE recall / REAL kept | shortcut AUC |",
                  "|---|---|---|---|---|"]
        ours = r["contenders"][lead]["same_codec"][key]
        theirs = r["contenders"][SHORTCUT]["same_codec"][key]
        for g, m in ours.items():
            kept = m.get("fake_recall", m.get("real_kept"))
            lines.append(f"| {g} | {m['n']} | {m['auc_vs_other_class']:.3f} | {kept:.3f} | "
                         f"{theirs[g]['auc_vs_other_class']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
