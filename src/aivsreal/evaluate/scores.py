"""Score a model on each split: metrics, calibration error and the operating point, no files written.

What `train` and `evaluate` then write (metrics.json, plots, report.md) is built from the
`Evaluation` returned here, by `aivsreal.commands.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from aivsreal.data.cache import DecodedSplit
from aivsreal.evaluate.calibration import expected_calibration_error, operating_point
from aivsreal.evaluate.metrics import binary_metrics
from aivsreal.models import DetectorNet
from aivsreal.models.file import ModelMeta
from aivsreal.models.network import image_logits_and_features, sigmoid

NO_DUPLICATES = "test (no train duplicates)"


@dataclass
class SplitScores:
    labels: np.ndarray  # 1 = FAKE
    p_fake: np.ndarray  # as the model file says to read it (temperature applied)
    names: list[str]
    p_fake_before_temperature: np.ndarray | None = None  # only when a temperature was fitted
    domain_score: np.ndarray | None = None  # the feature score (> 1: out of domain), if the model has a check


@dataclass
class Evaluation:
    meta: ModelMeta
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # per split, plus NO_DUPLICATES
    scores: dict[str, SplitScores] = field(default_factory=dict)
    operating_point: dict[str, Any] | None = None  # the val-chosen threshold, measured on test


def score_splits(model: DetectorNet, splits: dict[str, DecodedSplit], device: torch.device, meta: ModelMeta,
                 leaked: np.ndarray | None = None) -> Evaluation:
    """Metrics for every split (plus test without the images leaked from train, if given)."""
    ev = Evaluation(meta)
    for name, data in splits.items():
        logits, features = image_logits_and_features(model, data.images, device, tta=meta.tta)
        p_fake = sigmoid(logits / meta.temperature)
        ev.metrics[name] = binary_metrics(data.labels, p_fake, meta.threshold)
        domain = None
        if meta.domain is not None and len(features):
            domain = meta.domain.feature_score(features)
            # the feature half of the check; these images were decoded at the model's size already
            ev.metrics[name]["domain_flagged"] = float(np.mean(domain > 1.0))
        before = None
        if meta.temperature != 1.0:
            before = sigmoid(logits)
            ev.metrics[name]["ece_before_temperature"] = expected_calibration_error(data.labels, before)
        ev.scores[name] = SplitScores(data.labels, p_fake, data.names, before, domain)
    test = ev.scores.get("test")
    if test is not None and leaked is not None and leaked.any():
        ev.metrics[NO_DUPLICATES] = binary_metrics(test.labels[~leaked], test.p_fake[~leaked], meta.threshold)
    if meta.operating_point and test is not None:
        ev.operating_point = {**meta.operating_point, "threshold": meta.threshold,
                              "test": operating_point(test.labels, test.p_fake, meta.threshold).to_dict()}
    return ev
