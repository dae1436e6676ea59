"""How well the domain check separates a model's own domain from images it has never seen the like of.

    python benchmarks/domain.py --data ../shared/data/cifake --wild ~/wild

For a detector (default: the bundled `cifake`), scores
- its own test split (in domain): share flagged (goal <= 2%), accuracy on what is kept vs flagged;
- scikit-image's sample photos and the wild development set (out of domain), as stored: share
  flagged, and the AUROC of the domain score against the test split;
- the same out-of-domain images shrunk to the model's input size first (what a user who resizes
  before uploading sends): the geometry signal cannot see these, so they measure the feature score
  alone;
- the alternative feature score, k-nearest-neighbour distance on normalised features (Sun et al.
  2022, k=10, 20,000 training images), on the same images: the stored check uses whichever wins.
Writes benchmarks/results/domain.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from aivsreal.commands.evaluate import load_saved
from aivsreal.data.images import BadImageError, decode_image, is_image_name, read_limited, stored_size
from aivsreal.data.splits import DataOptions
from aivsreal.models.domain import DomainCheck
from aivsreal.models.network import logits_and_features, sigmoid
from aivsreal.report.provenance import provenance

RESULTS = Path(__file__).parent / "results"
SKIMAGE_PHOTOS = ("astronaut", "camera", "cat", "coffee", "coins", "eagle", "grass", "gravel", "brick",
                  "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "skin", "page")


def skimage_photos() -> list[tuple[str, bytes]]:
    """The sample images that ship with scikit-image (those needing a download are skipped offline)."""
    from skimage import data

    out = []
    for name in SKIMAGE_PHOTOS:
        try:
            pixels = getattr(data, name)()
        except Exception:  # noqa: BLE001 - pooch download not possible offline
            continue
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        out.append((name, buf.getvalue()))
    return out


def wild_images(root: Path) -> list[tuple[str, bytes]]:
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))
    out = []
    for p in paths:
        try:
            out.append((str(p.relative_to(root)), read_limited(p)))
        except BadImageError:
            continue
    return out


def decode_all(items: list[tuple[str, bytes]], size: int, shrink_first: bool) -> tuple[np.ndarray, list, list]:
    """Pixels as the model sees them, stored sizes, labels from the path (REAL/FAKE folders, else -1)."""
    pixels, sizes, labels = [], [], []
    for name, data in items:
        try:
            px = decode_image(data, size)
        except BadImageError:
            continue
        pixels.append(px)
        sizes.append((size, size) if shrink_first else stored_size(data))
        parts = Path(name).parts
        labels.append(1 if "FAKE" in parts else 0 if "REAL" in parts else -1)
    return np.stack(pixels), sizes, labels


def knn_score(train_feats: np.ndarray, feats: np.ndarray, k: int = 10) -> np.ndarray:
    """Distance to the k-th nearest training feature, on L2-normalised features."""
    t = torch.from_numpy(train_feats / np.linalg.norm(train_feats, axis=1, keepdims=True).clip(1e-12))
    f = torch.from_numpy(feats / np.linalg.norm(feats, axis=1, keepdims=True).clip(1e-12))
    out = []
    for i in range(0, len(f), 1024):
        d = torch.cdist(f[i : i + 1024], t)
        out.append(d.kthvalue(k, dim=1).values)
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cifake")
    ap.add_argument("--data", required=True, help="the data the model was trained on (its test split is scored)")
    ap.add_argument("--wild", help="the extracted wild development set (../shared/data/wild/README.md)")
    args = ap.parse_args()
    started = time.time()

    run = load_saved(args.model, DataOptions(path=args.data), device="cpu")
    network, meta, rd, dev = run.network.float().eval(), run.meta, run.data, run.device
    check: DomainCheck = meta.domain
    size = network.config.image_size

    def features(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, feats = logits_and_features(network, pixels, dev, tta=meta.tta)
        return sigmoid(logits / meta.temperature), feats

    picks = np.random.default_rng(0).permutation(len(rd.train))[:20_000]
    _, train_feats = features(rd.train.images[picks])
    _, val_feats = features(rd.val.images)
    knn_threshold = float(np.quantile(knn_score(train_feats, val_feats), 0.99))

    test_p, test_f = features(rd.test.images)
    test_maha = check.feature_score(test_f)
    # CIFAKE's images are all stored at 32x32: their geometry is the training set's
    test_combined = np.array([v.score for v in check.assess(test_f, [(32, 32)] * len(test_f))])
    test_knn = knn_score(train_feats, test_f) / knn_threshold
    kept = test_maha <= 1.0
    correct = (test_p >= meta.threshold) == rd.test.labels
    result = {
        "provenance": provenance().to_dict(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "python benchmarks/domain.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "model": args.model,
        "feature_threshold": check.threshold, "val_flagged": check.val_flagged,
        "training_short_side_px": list(check.short_side),
        "in_domain": {"set": "CIFAKE test split", "n": len(rd.test), "flagged": float(np.mean(~kept)),
                      "flagged_knn": float(np.mean(test_knn > 1)),
                      "accuracy_in_domain": float(correct[kept].mean()),
                      "accuracy_flagged": float(correct[~kept].mean()) if (~kept).any() else None,
                      "n_flagged": int((~kept).sum())},
        "out_of_domain": [],
    }
    sets = [("scikit-image sample photos", skimage_photos())]
    if args.wild:
        sets.append(("wild development set", wild_images(Path(args.wild).expanduser())))
    for name, items in sets:
        for shrink in (False, True):
            pixels, sizes, labels = decode_all(
                [(n, _shrunk(b, size)) if shrink else (n, b) for n, b in items], size, shrink)
            p, f = features(pixels)
            verdicts = check.assess(f, sizes)
            combined = np.array([v.score for v in verdicts])
            maha = check.feature_score(f)
            knn = knn_score(train_feats, f) / knn_threshold
            y = np.r_[np.zeros(len(test_maha)), np.ones(len(maha))]
            labels = np.array(labels)
            known = labels >= 0
            row = {"set": name, "as": f"shrunk to {size}x{size} before upload" if shrink else "as stored",
                   "n": len(pixels), "flagged": float(np.mean([not v.in_domain for v in verdicts])),
                   "flagged_by_features": float(np.mean(maha > 1)), "flagged_knn": float(np.mean(knn > 1)),
                   "auroc_domain_score": float(roc_auc_score(y, np.r_[test_combined, combined])),
                   "auroc_mahalanobis": float(roc_auc_score(y, np.r_[test_maha, maha])),
                   "auroc_knn": float(roc_auc_score(y, np.r_[test_knn, knn]))}
            if known.any() and len(set(labels[known])) == 2:
                row["detector_auc"] = float(roc_auc_score(labels[known], p[known]))
                row["detector_accuracy"] = float(np.mean((p[known] >= meta.threshold) == labels[known]))
            result["out_of_domain"].append(row)
            print(json.dumps(row))
    result["minutes"] = round((time.time() - started) / 60, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "domain.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "domain.md").write_text(markdown(result))
    print(json.dumps(result["in_domain"], indent=2))


def _shrunk(data: bytes, size: int) -> bytes:
    """The image as a user who resizes before uploading would send it: size x size PNG."""
    try:
        px = decode_image(data, size)
    except BadImageError:
        return data
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "PNG")
    return buf.getvalue()


def markdown(r: dict) -> str:
    ind = r["in_domain"]
    lines = [f"Measured {r['date']} on {r['machine']}: `{r['command']}` ({r['minutes']} min)", "",
             f"Model `{r['model']}`; feature threshold {r['feature_threshold']:.3f} (set on validation: "
             f"{r['val_flagged']:.2%} flagged); training images' shorter side {r['training_short_side_px'][0]:.0f}-"
             f"{r['training_short_side_px'][1]:.0f} px.", "",
             "## In domain: the model's own test split", "",
             "| set | n | flagged (goal <= 2%) | flagged by kNN instead | accuracy on kept | accuracy on flagged |",
             "|---|---|---|---|---|---|",
             f"| {ind['set']} | {ind['n']:,} | **{ind['flagged']:.2%}** | {ind['flagged_knn']:.2%} | "
             f"{ind['accuracy_in_domain']:.4f} | "
             + (f"{ind['accuracy_flagged']:.4f} ({ind['n_flagged']} images)" if ind["accuracy_flagged"] is not None
                else "–") + " |", "",
             "## Out of domain", "",
             "AUROC: a score separating these images from the test split (goal >= 0.95): the domain score "
             "(the larger of the geometry and feature scores, as every verdict reports it), the feature score "
             "alone (Mahalanobis on normalised features, stored in the model), and k-nearest-neighbour distance "
             "(not stored; the alternative). \"flagged\" uses both signals.", "",
             "| set | images | n | flagged | by features | by kNN instead | AUROC domain score | "
             "AUROC features | AUROC kNN | detector AUC on them | detector accuracy |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["out_of_domain"]:
        lines.append(f"| {row['set']} | {row['as']} | {row['n']:,} | **{row['flagged']:.1%}** | "
                     f"{row['flagged_by_features']:.1%} | {row['flagged_knn']:.1%} | "
                     f"**{row['auroc_domain_score']:.3f}** | {row['auroc_mahalanobis']:.3f} | "
                     f"{row['auroc_knn']:.3f} | {row.get('detector_auc', float('nan')):.3f} | "
                     f"{row.get('detector_accuracy', float('nan')):.3f} |")
    lines += ["", "Notes:", "",
              "- A photo shrunk to 32x32 before upload is what CIFAR-10, CIFAKE's REAL half, is made of: the "
              "geometry cannot see the shrinking, and the features rightly find such thumbnails close to the "
              "training images. The goal of 0.95 is met where the image arrives as stored, not for thumbnails.",
              "- What did not work: the same Mahalanobis distance on raw (unnormalised) features, measured by an "
              "earlier run of this command, separated the wild set at AUROC 0.649 and the scikit-image photos at "
              "0.620; normalising the features (0.83-0.84) matches kNN without shipping training features.",
              "- The detector's own AUC on the wild set is not evidence that it works there: size and format "
              "separate that set's classes on their own (../shared/data/wild/SOURCES.md), and a 32x32 model "
              "sees them through the shrinking. Issue 13's benchmark measures that with held-out sources."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
