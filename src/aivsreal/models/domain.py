"""Is an image like the ones this model was trained on? Two signals, fitted at training time.

A detector's verdict is only as good as the match between an image and its training data: a
model trained on 32x32 CIFAKE images scores phone photos and Midjourney renders through the
shrinking that erases what it learned (what it still gets right there, size and format shortcuts
can explain), yet just as confidently. So every verdict carries a domain check:

- geometry: the image's shorter side and aspect ratio against the range seen in training. A
  4000 px photo shrunk to 32 px has lost exactly the pixel-level traces a detector reads
  (see the robustness table: halving the resolution already costs CIFAKE models 40 points);
- features: the class-conditional Mahalanobis distance (Lee et al. 2018, one covariance shared
  by both classes) of the network's L2-normalised penultimate features to the training split's
  class means. Its threshold is the validation split's 99th percentile, so about 1% of in-domain
  images are flagged. Measured in benchmarks/domain.py: on raw features it separated the wild set
  from CIFAKE's test split at AUROC 0.65, on normalised features at 0.83, as well as
  k-nearest-neighbour distance (Sun et al. 2022), which would have to ship training features.

Features wider than MAX_DIM (a probe reading every stage of a backbone: 2,064 values) are first
projected onto their top principal directions, plus one coordinate for what the projection leaves
out (the residual's length, so an image unlike the training set in a discarded direction is still
caught): the model file keeps a 256x256 precision matrix instead of 2,064x2,064 (17 MB).

A threshold set on the validation split answers "is this image like the training images?", and a
new source is rarely that: its images sit beyond the validation 99th percentile although the
detector may still be right on them, and where it is wrong the distance need not grow. So a
detector meant for images in the wild (the bundled `wild`) sets its threshold on held-out sources
instead (`held_out_scores`, `recalibrate`): in group k-fold over sources, each fold's check is fitted
without the fold and scores the fold's images in units of its own validation threshold; the shipped
threshold is HELD_OUT_QUANTILE of those scores times the shipped check's own validation threshold.
Then about 5% of images from a never-seen source like those of the development set are flagged,
and the benchmark reports how many of the wrong verdicts the check flags (bundle_wild.py).

`domain_score` is the feature score, or the geometry score where that is past its limit (the
larger of the two), each scaled so that 1 is its limit: above 1 is out of domain.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from aivsreal.data.sources import stratified_split

VAL_QUANTILE = 0.99  # share of in-domain validation images the feature threshold keeps
HELD_OUT_QUANTILE = 0.95  # share of held-out sources' images a recalibrated threshold keeps
GEOMETRY_SLACK = 2.0  # a shorter side up to 2x outside the training range is still in domain
ASPECT_SLACK = 1.25
MAX_DIM = 256  # wider features are projected to MAX_DIM - 1 principal directions + the residual length


@dataclass(frozen=True)
class DomainVerdict:
    in_domain: bool
    score: float  # the domain score (see the module docstring): > 1 is out of domain; nan when unknown
    reason: str | None  # one line when out of domain


@dataclass
class DomainCheck:
    """What the training split looked like, and how far from it an input may be."""

    short_side: tuple[float, float]  # 1st..99th percentile of the training images' shorter side, px
    aspect: tuple[float, float]  # same for longer side / shorter side (>= 1: rotation does not matter)
    means: np.ndarray  # (2, d) class means of the penultimate features, REAL then FAKE
    precision: np.ndarray  # (d, d) inverse of the shared within-class covariance (float32)
    threshold: float  # feature distance above which an image is out of domain
    val_flagged: float = 0.0  # share of the validation split flagged when the threshold was set
    centre: np.ndarray | None = None  # (d,) mean of the normalised training features, when projected
    basis: np.ndarray | None = None  # (MAX_DIM - 1, d) principal directions, when projected
    held_out_quantile: float | None = None  # set by `recalibrate`: the threshold keeps this share of held-out sources

    @classmethod
    def fit(cls, train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
            sizes: np.ndarray) -> DomainCheck:
        """`sizes`: (n, 2) width, height of (a sample of) the training images as stored on disk."""
        centre = basis = None
        if train_features.shape[1] > MAX_DIM:
            unit = _unit(train_features)
            centre = unit.mean(0)
            basis = np.linalg.svd(unit - centre, full_matrices=False)[2][: MAX_DIM - 1]
        feats = _project(train_features, centre, basis)
        labels = np.asarray(train_labels)
        means = np.stack([feats[labels == c].mean(0) for c in (0, 1)])
        centred = feats - means[labels]
        cov = centred.T @ centred / max(len(feats) - 2, 1)
        cov += np.eye(len(cov)) * (1e-6 * np.trace(cov) / len(cov) + 1e-12)  # ridge: dead units
        precision = np.linalg.inv(cov)
        short = np.min(sizes, axis=1).astype(np.float64)
        aspect = np.max(sizes, axis=1) / np.maximum(short, 1)
        check = cls((float(np.percentile(short, 1)), float(np.percentile(short, 99))),
                    (float(np.percentile(aspect, 1)), float(np.percentile(aspect, 99))),
                    means.astype(np.float32), precision.astype(np.float32), threshold=1.0,
                    centre=None if centre is None else centre.astype(np.float32),
                    basis=None if basis is None else basis.astype(np.float32))
        val_distance = check.distance(val_features)
        check.threshold = float(np.quantile(val_distance, VAL_QUANTILE))
        check.val_flagged = float(np.mean(val_distance > check.threshold))
        return check

    def recalibrate(self, held_out: np.ndarray, val_features: np.ndarray,
                    quantile: float = HELD_OUT_QUANTILE) -> None:
        """Move the threshold to where `quantile` of held-out sources' images stay within. `held_out`:
        their feature scores in units of their own fold's validation threshold (`held_out_scores`);
        `val_features`: this check's validation split, whose flagged share is counted anew."""
        self.threshold *= float(np.quantile(held_out, quantile))
        self.held_out_quantile = quantile
        self.val_flagged = float(np.mean(self.distance(val_features) > self.threshold))

    def describe_threshold(self) -> str:
        """What the threshold keeps, for reasons and cards."""
        if self.held_out_quantile is None:
            return f"{VAL_QUANTILE:.0%} of validation images"
        return f"{self.held_out_quantile:.0%} of images from sources held out of training"

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of the normalised (and projected) features to the nearer class mean, per row."""
        f = _project(features, self.centre, self.basis)
        p = self.precision.astype(np.float64)
        d2 = [np.einsum("nd,de,ne->n", f - m, p, f - m) for m in self.means.astype(np.float64)]
        return np.sqrt(np.maximum(np.minimum(*d2), 0.0))

    def feature_score(self, features: np.ndarray) -> np.ndarray:
        """The distance in units of the threshold: > 1 is out of domain."""
        return self.distance(features) / self.threshold

    def geometry_score(self, width: int, height: int) -> float:
        """How far the stored size is outside the accepted range: > 1 is outside (scale or aspect)."""
        short, long = max(min(width, height), 1), max(width, height)
        low, high = self.short_side
        return max(short / (high * GEOMETRY_SLACK), low / (GEOMETRY_SLACK * short),
                   (long / short) / (self.aspect[1] * ASPECT_SLACK))

    def describe_sizes(self) -> str:
        """The training images' shorter side: "32", or a range such as "256-2048"."""
        low, high = self.short_side
        return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"

    def geometry_reason(self, width: int, height: int) -> str | None:
        if self.geometry_score(width, height) <= 1.0:
            return None
        short, long = max(min(width, height), 1), max(width, height)
        low, high = self.short_side
        if short > high * GEOMETRY_SLACK or short < low / GEOMETRY_SLACK:
            return (f"image is {width}x{height} px; this model was trained on images of {self.describe_sizes()} px "
                    "(shorter side), so its traces were resized away or never there")
        return (f"image is {width}x{height} px, aspect {long / short:.2f}:1; training images were at "
                f"most {self.aspect[1]:.2f}:1")

    def assess(self, features: np.ndarray | None, sizes: list[tuple[int, int] | None]) -> list[DomainVerdict]:
        """One verdict per image; `sizes` may hold None where the original size is unknown."""
        scores = self.feature_score(features) if features is not None else np.full(len(sizes), np.nan)
        out = []
        for feature_score, size in zip(scores, sizes, strict=True):
            reason = self.geometry_reason(*size) if size else None
            if reason is None and feature_score > 1.0:
                reason = (f"its features are unlike the training images' ({feature_score:.1f}x the distance "
                          f"that {self.describe_threshold()} stay within)")
            geometry = self.geometry_score(*size) if size else 0.0
            score = max(feature_score, geometry) if geometry > 1.0 else feature_score  # nan stays nan
            out.append(DomainVerdict(reason is None, float(score), reason))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the arrays as base64 float32, so one form serves model.pt, config.json and ONNX."""
        return {"short_side": list(self.short_side), "aspect": list(self.aspect), "threshold": self.threshold,
                "val_flagged": self.val_flagged, "dim": int(self.means.shape[1]),
                **({} if self.held_out_quantile is None else {"held_out_quantile": self.held_out_quantile}),
                "means": _b64(self.means), "precision": _b64(self.precision),
                **({} if self.basis is None else {"centre": _b64(self.centre), "basis": _b64(self.basis)})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DomainCheck:
        dim = int(d["dim"])
        means, precision = _unb64(d["means"]), _unb64(d["precision"])
        centre = basis = None
        if "basis" in d:  # projected: `dim` is the projection's, the features are `centre`'s width
            centre, basis = _unb64(d["centre"]), _unb64(d["basis"])
            if basis.size != (dim - 1) * centre.size:
                raise ValueError(f"domain check projection of {basis.size} values does not fit {centre.size} -> {dim}")
            basis = basis.reshape(dim - 1, centre.size)
        if dim <= 0 or means.size != 2 * dim or precision.size != dim * dim or not float(d["threshold"]) > 0:
            raise ValueError(f"domain check sizes {means.size}, {precision.size} do not fit dim {dim}")
        quantile = d.get("held_out_quantile")
        if quantile is not None and not 0 < float(quantile) < 1:
            raise ValueError(f"held_out_quantile {quantile!r} is not a share between 0 and 1")
        return cls((float(d["short_side"][0]), float(d["short_side"][1])),
                   (float(d["aspect"][0]), float(d["aspect"][1])), means.reshape(2, dim),
                   precision.reshape(dim, dim), float(d["threshold"]), float(d.get("val_flagged", 0.0)),
                   centre, basis, None if quantile is None else float(quantile))


def held_out_scores(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, sizes: np.ndarray,
                    val_share: float = 0.1) -> np.ndarray:
    """Each image's feature score from a check fitted without its fold (the fold's other images' 10%
    carved out for that check's validation threshold): how far a never-seen source sits, in units
    of an in-sample threshold. Feeds `DomainCheck.recalibrate`."""
    out = np.full(len(labels), np.nan)
    for f in np.unique(folds):
        train = np.flatnonzero(folds != f)
        fit, val = (train[i] for i in stratified_split(labels[train], val_share, seed=0))
        check = DomainCheck.fit(features[fit], labels[fit], features[val], sizes[fit])
        out[folds == f] = check.feature_score(features[folds == f])
    return out


def _unit(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _project(features: np.ndarray, centre: np.ndarray | None, basis: np.ndarray | None) -> np.ndarray:
    """Normalised features, or their principal coordinates plus the residual's length when projected."""
    f = _unit(features)
    if basis is None:
        return f
    f = f - centre.astype(np.float64)
    coords = f @ basis.astype(np.float64).T
    residual = np.sqrt(np.maximum((f * f).sum(1) - (coords * coords).sum(1), 0.0))
    return np.concatenate([coords, residual[:, None]], axis=1)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _unb64(text: str) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("non-finite values")
    return a
