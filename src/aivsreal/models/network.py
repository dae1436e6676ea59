"""The network every detector is: pixels in [0, 255] -> normalise (and resize) -> backbone -> one logit.

Normalisation and any resizing happen inside the network, so a saved model, its ONNX export
and the web service all need only the raw pixels. The tensor helpers live here too: every
stage that feeds a network (training, scoring, Grad-CAM, export) uses the same ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from aivsreal.data.crops import MAX_TILES
from aivsreal.data.stream import CentreCrops
from aivsreal.device import autocast

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and feed it: saved inside every model file."""

    name: str = "fast"
    image_size: int = 32  # images are decoded and resized to this
    input_size: int = 32  # the network sees this (models pretrained on 224px upsample to it)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    options: dict[str, Any] = field(default_factory=dict)  # model-specific (widths, dropout...)

    @property
    def crop(self) -> int | None:
        """Native-crop models (`train --crop N`) read N px crops of an image at its own resolution;
        the others read the whole image resized to `image_size`."""
        crop = self.options.get("crop")
        return int(crop) if crop else None

    @property
    def rescale(self) -> int | None:
        """A native-crop model with `rescale` S cuts its crops from the image resized so its shorter side
        is S px (never scaled up: a smaller image keeps its native pixels); None: from the image as stored."""
        rescale = self.options.get("rescale")
        return int(rescale) if rescale and self.crop else None

    @property
    def max_tiles(self) -> int:
        """How many native tiles a crop model reads per image at most (1, 4 or 9: 1x1, 2x2 or 3x3 spread over
        it); a model fitted on 2x2 tiles of its view reads 2x2, at under half the cost of 3x3."""
        return int(self.options.get("max_tiles", MAX_TILES)) if self.crop else 1

    @property
    def reencode(self) -> int | None:
        """A `rescale` model trained on JPEG re-encodes of its views (the photoreal headline's same-size
        reduction saves every image as JPEG q90) re-encodes each image at that quality after the resize,
        PNG renders and camera JPEGs alike, so that it reads what it was fitted on; None: no re-encode."""
        q = self.options.get("reencode")
        return int(q) if q and self.rescale else None

    @property
    def draft(self) -> bool:
        """Whether a `rescale` model decodes large JPEGs at a reduced DCT scale before that resize
        (data/images.py `decode_rescaled`); on unless the file says `draft: false`."""
        return bool(self.options.get("draft", True))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, not tuples): how the config is stored in model files and config.json."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """The inverse of `to_dict`, for a config read back from a model file or config.json."""
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


class Normalize(nn.Module):
    """Pixels in [0, 255] to the network's normalised input, resized if the network wants it."""

    def __init__(self, mean, std, input_size: int):
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1))
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale - self.shift
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size),
                                          mode="bilinear", align_corners=False)
        return x


class DetectorNet(nn.Module):
    """Normalize -> network -> one logit per image."""

    def __init__(self, config: ModelConfig, network: nn.Module):
        super().__init__()
        self.config = config
        self.normalize = Normalize(config.mean, config.std, config.input_size)
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(pixels)).squeeze(-1)



def to_tensor(images: np.ndarray) -> torch.Tensor:
    """NHWC uint8 numpy -> NCHW uint8 tensor that is channels_last in memory (no copy)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def pixels_to(batch_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    return batch_u8.to(device, non_blocking=True).float().contiguous(memory_format=torch.channels_last)


def tta_views(x: torch.Tensor, tta: bool) -> list[torch.Tensor]:
    """The views test-time augmentation averages: the image, and its mirror when `tta` is on.

    The one definition of our TTA: scoring, ONNX export and Grad-CAM (which mirrors the second
    view's map back) all take their views from here.
    """
    return [x, x.flip(3)] if tta else [x]


def tta_logit(network: nn.Module, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """Mean logit over `tta_views`."""
    return forward_with_features(network, x, tta)[0]


def forward_with_features(network: nn.Module, x: torch.Tensor, tta: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean logit over `tta_views`, and the penultimate features of the image itself (N, d).

    The features are what the last linear layer reads, whatever the family: every detector ends
    in one, so the domain check needs no per-family code. Capturing them costs nothing extra.
    """
    last = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    try:
        views = tta_views(x, tta)
        logit = sum(network(v).float() for v in views) / len(views)
    finally:
        hook.remove()
    return logit, seen[0].flatten(1).float()


@torch.no_grad()
def logits_and_features(model: DetectorNet, images: np.ndarray, device: torch.device,
                        batch_size: int = 256, tta: bool = False, amp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """logit of P(FAKE) for an (N, H, W, 3) uint8 array (`tta` averages with the mirrored image),
    and the penultimate features the domain check reads (N, d).

    `amp` runs in bf16 (fp16 on older GPUs) where that pays (device.amp_enabled): about 2x faster on a
    CPU with native bf16, P(FAKE) within ~1e-2 of fp32; elsewhere on CPU it stays fp32.
    """
    model.eval().to(device)
    logits, feats = [], []
    for i in range(0, len(images), batch_size):  # slice first: `images` may be lazy (data/stream.CentreCrops)
        x = pixels_to(to_tensor(images[i : i + batch_size]), device)
        with autocast(device, enabled=amp):
            logit, f = forward_with_features(model, x, tta)
        logits.append(logit.cpu())
        feats.append(f.cpu())
    if not logits:
        return np.empty(0), np.empty((0, 0), np.float32)
    return torch.cat(logits).numpy().astype(np.float64), torch.cat(feats).numpy()


FILES_PER_PASS = 32  # files decoded at once by `image_logits_and_features`: at most 32 x 9 views held


def image_logits_and_features(model: DetectorNet, images: np.ndarray | CentreCrops, device: torch.device,
                              tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One logit and one feature row per image, as `predict` scores it: a split read from disk (a
    native-crop model's) through every view the model's policy cuts from each file (tiles, `rescale`,
    `reencode`), their logits and features averaged; so `evaluate` and calibration state what `predict`
    gives, not the figures of one centre crop. An in-memory split is `logits_and_features`."""
    if not isinstance(images, CentreCrops) or len(images) == 0:
        return logits_and_features(model, images, device, tta=tta)
    logits, feats = [], []
    for start in range(0, len(images), FILES_PER_PASS):
        views = [images.views(i, model.config).pixels for i in range(start, min(start + FILES_PER_PASS, len(images)))]
        logit, f = logits_and_features(model, np.concatenate(views), device, tta=tta)
        counts = [len(v) for v in views]
        logits.append(per_image_mean(logit, counts))
        feats.append(per_image_mean(f, counts))
    return np.concatenate(logits), np.concatenate(feats).astype(np.float32)


def per_image_mean(values: np.ndarray, counts: list[int]) -> np.ndarray:
    """The mean over each image's consecutive views (`counts` per image) of per-view values or rows."""
    edges = np.cumsum([0, *counts])
    return np.stack([values[a:b].mean(0) for a, b in zip(edges[:-1], edges[1:], strict=True)])


def sigmoid(z: np.ndarray) -> np.ndarray:
    """P from a logit, in float64."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))  # no overflow for large |z|


def combine_views(p_fake: np.ndarray, features: np.ndarray | None,
                  counts: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Per image: the mean logit of its views (then P(FAKE)) and the mean of their features.

    Logits, not probabilities, are averaged: one confident crop should move the verdict as much as
    its evidence says, not be capped at 1. One view per image passes through unchanged.
    """
    if all(c == 1 for c in counts):
        return p_fake, features
    q = np.clip(p_fake, 1e-7, 1 - 1e-7)
    p = sigmoid(per_image_mean(np.log(q) - np.log1p(-q), counts))
    return p, None if features is None else per_image_mean(features, counts)
