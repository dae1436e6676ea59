"""Run a trained detector on pixels, files, bytes or PIL images: the Python API and `predict`."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aivsreal.data.crops import MAX_TILES, decode_views, read_views
from aivsreal.data.images import BadImageError
from aivsreal.device import resolve_device
from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet, ModelConfig
from aivsreal.models.card import model_card
from aivsreal.models.domain import DomainVerdict
from aivsreal.models.file import ModelMeta, verdict
from aivsreal.models.hub import ModelRef, load_model, save_pretrained
from aivsreal.models.network import logits_and_features


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))  # no overflow for large |z|


def predict_logits(model: DetectorNet, images: np.ndarray, device: torch.device,
                   batch_size: int = 256, tta: bool = False, amp: bool = True) -> np.ndarray:
    return logits_and_features(model, images, device, batch_size, tta, amp)[0]


Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # pixels -> P(FAKE), features


class TorchScorer:
    def __init__(self, model: DetectorNet, device: torch.device, tta: bool, amp: bool, temperature: float = 1.0):
        self.model, self.device, self.tta, self.amp = model.to(device), device, tta, amp
        self.temperature = temperature

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = logits_and_features(self.model, pixels, self.device, tta=self.tta, amp=self.amp)
        return sigmoid(logits / self.temperature), features


@dataclass
class Prediction:
    source: str
    label: str | None  # "REAL", "FAKE", or None when the image could not be read
    p_fake: float | None
    error: str | None = None
    in_domain: bool | None = None  # None: unreadable, or a model without a domain check (before 0.2)
    domain_score: float | None = None  # > 1: unlike the training images (see models/domain.py)
    domain_reason: str | None = None  # one line when out of domain


def combine_views(p_fake: np.ndarray, features: np.ndarray | None,
                  counts: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Per image: the mean logit of its views (then P(FAKE)) and the mean of their features.

    Logits, not probabilities, are averaged: one confident crop should move the verdict as much as
    its evidence says, not be capped at 1. One view per image passes through unchanged.
    """
    if all(c == 1 for c in counts):
        return p_fake, features
    edges = np.cumsum([0, *counts])
    q = np.clip(p_fake, 1e-7, 1 - 1e-7)
    logit = np.log(q) - np.log1p(-q)
    p = sigmoid(np.array([logit[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]))
    f = None if features is None else np.stack([features[a:b].mean(0) for a, b in zip(edges[:-1], edges[1:],
                                                                                        strict=True)])
    return p, f


@dataclass
class DecodedInput:
    source: str
    pixels: np.ndarray | None  # (V, S, S, 3) views the model reads; None when unreadable
    size: tuple[int, int] | None = None  # (width, height) as stored, for the domain check
    error: str | None = None


ImageInput = str | Path | bytes | np.ndarray | Any  # Any: a PIL image


class Detector:
    """A trained model ready for inference.

    >>> det = Detector.load("runs/cifake/model.pt")
    >>> [p.label for p in det.predict(["cat.jpg", "render.png"])]
    """

    def __init__(self, scorer: Scorer, config: ModelConfig, meta: ModelMeta,
                 network: DetectorNet | None = None):
        self.scorer, self.config, self.meta = scorer, config, meta
        self.threshold = meta.threshold
        self.tta = meta.tta
        self.image_size = config.image_size
        self.name = config.name
        self.network = network

    @classmethod
    def load(cls, path: ModelRef = None, device: str = "auto", backend: str = "torch",
             precision: str = "bf16") -> Detector:
        """A model file, a saved folder, a bundled detector's name or a Hub repo id; None: the default
        bundled detector. `backend="onnx"` reads a file from `aivsreal export`."""
        if backend == "onnx":
            from aivsreal.predict.onnx import OnnxScorer

            scorer = OnnxScorer(Path(path or ""))
            return cls(scorer, scorer.config, scorer.meta)
        if backend != "torch":
            raise AivsrealError(f"unknown backend {backend!r} (torch, onnx)")
        network, meta = load_model(path)
        return cls.from_network(network, meta, device, precision)

    @classmethod
    def from_pretrained(cls, folder_or_repo_id: str | Path, device: str = "auto", precision: str = "bf16") -> Detector:
        """A folder written by `save_pretrained`, or a Hugging Face Hub repo id (downloaded once, then cached)."""
        return cls.load(folder_or_repo_id, device=device, precision=precision)

    def save_pretrained(self, folder: str | Path, card_extra: str = "", half: bool = False) -> Path:
        """model.safetensors + config.json + README.md (the model card): a folder to share or push to the Hub."""
        if self.network is None:
            raise AivsrealError("save_pretrained needs a torch model (this detector runs an ONNX file)")
        return save_pretrained(folder, self.network, self.meta, model_card(Path(folder).name, self.config,
                                                                           self.meta, card_extra), half=half)

    @classmethod
    def from_network(cls, network: DetectorNet, meta: ModelMeta, device: str | torch.device = "auto",
                     precision: str = "bf16") -> Detector:
        if precision not in ("bf16", "fp32"):
            raise AivsrealError(f"unknown precision {precision!r} (bf16, fp32)")
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        scorer = TorchScorer(network, dev, meta.tta, amp=precision == "bf16", temperature=meta.temperature)
        return cls(scorer, network.config, meta, network)

    @property
    def crop(self) -> int | None:
        return self.config.crop

    @property
    def max_views(self) -> int:
        return MAX_TILES if self.crop else 1

    def to_pixels(self, image: ImageInput) -> np.ndarray:
        """One input of any supported kind -> (size, size, 3) uint8, exactly as in training (a native-crop
        model's first tile)."""
        return self.decode(image)[0][0]

    def decode(self, image: ImageInput) -> tuple[np.ndarray, tuple[int, int] | None]:
        """The (V, size, size, 3) views the model reads from one input, and its (width, height) as stored."""
        if isinstance(image, (str, Path)):
            return read_views(image, self.image_size, self.crop)
        if isinstance(image, bytes):
            return decode_views(image, self.image_size, self.crop)
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise BadImageError(f"expected an HxWx3 uint8 array, got {image.dtype} {image.shape}")
            from PIL import Image

            image = Image.fromarray(image)
        buf = io.BytesIO()
        image.save(buf, format="PNG")  # lossless: the pixels reach the model unchanged
        return decode_views(buf.getvalue(), self.image_size, self.crop)[0], image.size

    def score(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """P(FAKE) per image and the features the domain check reads (None where the backend has none).

        A non-finite output (damaged weights) is refused, never reported as REAL.
        """
        p, features = self.scorer(pixels)
        if not np.all(np.isfinite(p)):
            raise AivsrealError(f"model {self.name!r} produced non-finite P(fake) (NaN or inf): its weights "
                                "are damaged; retrain or re-download it")
        return p, features

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        return self.score(pixels)[0]

    def domain(self, features: np.ndarray | None, sizes: list[tuple[int, int] | None]) -> list[DomainVerdict | None]:
        """The domain check per image; None each when the model file has none (trained before 0.2)."""
        if self.meta.domain is None:
            return [None] * len(sizes)
        return self.meta.domain.assess(features, sizes)

    def label(self, p_fake: float) -> str:
        return verdict(p_fake, self.threshold)

    def predict(self, images: Iterable[ImageInput], batch_size: int = 256) -> list[Prediction]:
        return list(self.iter_predict(images, batch_size))

    def iter_predict(self, images: Iterable[ImageInput], batch_size: int = 256) -> Iterator[Prediction]:
        """Stream predictions in input order; unreadable inputs yield a Prediction with `error`."""
        for batch in self.decoded_batches(images, batch_size):
            yield from self.score_decoded(batch, batch_size)

    def decoded_batches(self, images: Iterable[ImageInput], batch_size: int) -> Iterator[list[DecodedInput]]:
        """Inputs decoded as in training, `batch_size` at a time, in order; unreadable ones carry their error."""
        batch: list[DecodedInput] = []
        for image in images:
            source = str(image) if isinstance(image, (str, Path)) else f"<{type(image).__name__}>"
            try:
                batch.append(DecodedInput(source, *self.decode(image)))
            except BadImageError as e:
                batch.append(DecodedInput(source, None, None, str(e)))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def score_views(self, views: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """P(FAKE) and features per image from each image's (V, S, S, 3) views (see `combine_views`)."""
        p, features = self.score(np.concatenate(views))
        return combine_views(p, features, [len(v) for v in views])

    def score_decoded(self, items: list[DecodedInput], batch_size: int = 256) -> Iterator[Prediction]:
        """Predictions, with their domain check, for already-decoded items, in order."""
        good = [item for item in items if item.pixels is not None]
        scored: list[Prediction] = []
        step = max(batch_size // self.max_views, 1)
        for i in range(0, len(good), step):
            chunk = good[i : i + step]
            p, features = self.score_views([item.pixels for item in chunk])
            scored += self.verdicts([item.source for item in chunk], p, features, [item.size for item in chunk])
        answers = iter(scored)
        for item in items:
            yield next(answers) if item.pixels is not None else Prediction(item.source, None, None, item.error)

    def verdicts(self, sources: list[str], p_fake: np.ndarray, features: np.ndarray | None,
                 sizes: list[tuple[int, int] | None]) -> list[Prediction]:
        """Scores -> Predictions: the label rule and the domain check, in one place for every front end."""
        out = []
        for source, p, dom in zip(sources, p_fake.tolist(), self.domain(features, sizes), strict=True):
            pred = Prediction(source, self.label(p), p)
            if dom is not None:
                pred.in_domain, pred.domain_reason = dom.in_domain, dom.reason
                pred.domain_score = round(dom.score, 4) if np.isfinite(dom.score) else None
            out.append(pred)
        return out


@dataclass(frozen=True)
class DetectorSpec:
    """How to load a detector, as the command line says it: what a remote worker is sent instead of the
    detector itself, so that every engine loads it the same way."""

    model: ModelRef = None
    device: str = "auto"
    backend: str = "torch"
    precision: str = "bf16"
    threshold: float | None = None  # None: the model's own

    def load(self) -> Detector:
        det = Detector.load(self.model, device=self.device, backend=self.backend, precision=self.precision)
        if self.threshold is not None:
            det.threshold = self.threshold
        return det
