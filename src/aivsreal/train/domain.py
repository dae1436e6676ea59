"""Fit a model's domain check on its own training split (see models/domain.py for what it is)."""

from __future__ import annotations

import numpy as np
import torch

from aivsreal.data.cache import DecodedSplit
from aivsreal.data.stream import select
from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet
from aivsreal.models.domain import DomainCheck
from aivsreal.models.network import logits_and_features

MAX_FIT_IMAGES = 20_000  # class means and a 128-1280-d covariance are stable long before this


def fit_domain(model: DetectorNet, train: DecodedSplit, val: DecodedSplit, train_sizes: np.ndarray,
               device: torch.device, seed: int = 0) -> DomainCheck:
    """Features of (a sample of) train give the class means and covariance, val sets the threshold.

    The features are read without test-time flips and in the same precision as inference.
    """
    if len(val) == 0 or min(np.bincount(train.labels, minlength=2)) < 2 or len(train_sizes) == 0:
        raise AivsrealError("the domain check needs REAL and FAKE training images and a validation split")
    picks = np.random.default_rng(seed).permutation(len(train))[:MAX_FIT_IMAGES]
    _, train_features = logits_and_features(model, select(train.images, picks), device)
    _, val_features = logits_and_features(model, val.images, device)
    return DomainCheck.fit(train_features, train.labels[picks], val_features, train_sizes)
