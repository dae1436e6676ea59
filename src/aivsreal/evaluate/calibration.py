"""Are the probabilities honest, and where should the FAKE line be drawn?

- `expected_calibration_error`: on P(FAKE) against the observed share of FAKE images, in
  equal-width bins (the reliability diagram's gaps, weighted by how many images fall in each).
- `fit_temperature`: temperature scaling (Guo et al. 2017), one scalar T with
  P(FAKE) = sigmoid(logit / T), fitted by log-loss on the validation split. It changes no
  ranking, hence no AUC and no decision at threshold 0.5, only how far P(FAKE) is pushed to 0 or 1.
- `choose_threshold`: the operating point for a target precision or false-positive rate.
  Here FAKE is the positive class, as a detector flags fakes: precision is the share of flagged
  images that are fake, FPR the share of real images flagged (the metrics tables keep the seed's
  REAL-positive convention).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from aivsreal.data.cache import DecodedSplit
from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet
from aivsreal.models.file import ModelMeta
from aivsreal.models.network import image_logits_and_features, sigmoid

N_BINS = 15
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
log = logging.getLogger(__name__)


def reliability_bins(labels: np.ndarray, p_fake: np.ndarray, n_bins: int = N_BINS):
    """Per non-empty bin: mean P(FAKE), share of FAKE images, image count."""
    labels, p_fake = np.asarray(labels, dtype=np.float64), np.asarray(p_fake, dtype=np.float64)
    # Bin i holds p in [i/n, (i+1)/n); p = 1 goes to the last bin.
    idx = np.minimum((p_fake * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    keep = counts > 0
    mean_p = np.bincount(idx, weights=p_fake, minlength=n_bins)[keep] / counts[keep]
    frac_fake = np.bincount(idx, weights=labels, minlength=n_bins)[keep] / counts[keep]
    return mean_p, frac_fake, counts[keep]


def expected_calibration_error(labels: np.ndarray, p_fake: np.ndarray, n_bins: int = N_BINS) -> float:
    if len(labels) == 0:
        return float("nan")
    mean_p, frac_fake, counts = reliability_bins(labels, p_fake, n_bins)
    return float(np.sum(counts * np.abs(mean_p - frac_fake)) / counts.sum())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] that minimises the log-loss of sigmoid(logits / T)."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if len(z) == 0 or len(np.unique(y)) < 2:
        raise AivsrealError("temperature scaling needs validation images of both classes")

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))  # -log sigmoid(s) for y=1, -log(1-sigmoid) for 0

    bounds = (math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))
    res = minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-5})
    t = float(math.exp(res.x))
    if not MIN_TEMPERATURE * 1.01 < t < MAX_TEMPERATURE / 1.01:
        log.warning("calibration: temperature %.3g is at its limit: the validation split is too small "
                    "or perfectly separated to calibrate on", t)
    return t


def rescale_threshold(threshold: float, old_temperature: float, new_temperature: float) -> float:
    """The threshold on the new P(FAKE) scale that takes exactly the same decisions as before."""
    if threshold <= 0.0 or threshold >= 1.0:
        return threshold
    z = math.log(threshold / (1.0 - threshold)) * old_temperature
    return float(sigmoid(z / new_temperature))


@dataclass
class OperatingPoint:
    """A threshold on P(FAKE) and what it gives on the split it was chosen or checked on."""

    threshold: float
    precision: float  # of FAKE flags
    recall: float  # share of FAKE images flagged
    fpr: float  # share of REAL images flagged
    target: str = ""

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def operating_point(labels: np.ndarray, p_fake: np.ndarray, threshold: float, target: str = "") -> OperatingPoint:
    y, flagged = np.asarray(labels) == 1, np.asarray(p_fake) >= threshold
    tp, fp = int(np.sum(flagged & y)), int(np.sum(flagged & ~y))
    return OperatingPoint(threshold, tp / max(tp + fp, 1), tp / max(int(y.sum()), 1),
                          fp / max(int((~y).sum()), 1), target)


def choose_threshold(labels: np.ndarray, p_fake: np.ndarray, target_precision: float | None = None,
                     target_fpr: float | None = None) -> OperatingPoint:
    """The lowest threshold (so the most fakes caught) whose precision >= target or FPR <= target.

    Candidate thresholds are the scores themselves: between two neighbouring scores every
    threshold takes the same decisions on this split.
    """
    if (target_precision is None) == (target_fpr is None):
        raise AivsrealError("give exactly one of --target-precision and --target-fpr")
    y = np.asarray(labels).astype(bool)
    p = np.asarray(p_fake, dtype=np.float64)
    if y.all() or not y.any():
        raise AivsrealError("choosing a threshold needs images of both classes")
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # Flagging everything with p >= p_sorted[i]: count up to the last of a run of tied scores.
    last_of_tie = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = np.cumsum(~y_sorted)[last_of_tie]
    thresholds = p_sorted[last_of_tie]  # descending
    if target_precision is not None:
        if not 0.0 < target_precision <= 1.0:
            raise AivsrealError(f"target precision must be in (0, 1], got {target_precision}")
        ok = tp / (tp + fp) >= target_precision
        target = f"precision >= {target_precision:g}"
    else:
        if not 0.0 <= target_fpr < 1.0:
            raise AivsrealError(f"target FPR must be in [0, 1), got {target_fpr}")
        ok = fp / (~y).sum() <= target_fpr
        target = f"FPR <= {target_fpr:g}"
    if not ok.any():
        raise AivsrealError(f"no threshold reaches {target} on the validation split")
    best = int(np.flatnonzero(ok)[-1])  # the lowest qualifying threshold catches the most fakes
    return operating_point(y, p, float(thresholds[best]), target)


@dataclass
class CalibrationOptions:
    """`--calibrate`, `--target-precision`, `--target-fpr`: fitted on the validation split."""

    temperature: bool = False
    target_precision: float | None = None
    target_fpr: float | None = None

    @property
    def requested(self) -> bool:
        return self.temperature or self.target_precision is not None or self.target_fpr is not None


def calibrate_on_val(model: DetectorNet, val: DecodedSplit, device: torch.device, meta: ModelMeta,
                     options: CalibrationOptions) -> ModelMeta:
    """`meta` with the temperature, threshold and operating point that calibration fits.

    Never fitted on test: the test figures would then be tuned to the test split.
    """
    logits = image_logits_and_features(model, val.images, device, tta=meta.tta)[0]
    old_t = meta.temperature
    if options.temperature:
        new_t = fit_temperature(logits, val.labels)
        meta = replace(meta, temperature=new_t, threshold=rescale_threshold(meta.threshold, old_t, new_t))
        log.info("calibration: temperature %.3f fitted on %d validation images (val ECE %.4f -> %.4f)",
                 new_t, len(val), expected_calibration_error(val.labels, sigmoid(logits / old_t)),
                 expected_calibration_error(val.labels, sigmoid(logits / new_t)))
    if options.target_precision is not None or options.target_fpr is not None:
        point = choose_threshold(val.labels, sigmoid(logits / meta.temperature), options.target_precision,
                                 options.target_fpr)
        meta = replace(meta, threshold=point.threshold, operating_point={
            "target": point.target, "chosen_on": "val",
            "val": {k: v for k, v in point.to_dict().items() if k != "target"}})
        log.info("calibration: threshold %.4f for %s on val (FAKE flagged: precision %.4f, recall %.4f, "
                 "FPR %.4f)", point.threshold, point.target, point.precision, point.recall, point.fpr)
    return meta
