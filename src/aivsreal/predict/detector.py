"""Run a trained detector on pixels, files, bytes or PIL images: the Python API and `predict`."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aivsreal.data.images import BadImageError, decode_image, read_image_file
from aivsreal.device import autocast, resolve_device
from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet, ModelConfig, pixels_to, to_tensor, tta_logit
from aivsreal.models.file import ModelMeta, load_model, verdict


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))  # no overflow for large |z|


@torch.no_grad()
def predict_logits(model: DetectorNet, images: np.ndarray, device: torch.device,
                   batch_size: int = 256, tta: bool = False, amp: bool = True) -> np.ndarray:
    """logit of P(FAKE) for an (N, H, W, 3) uint8 array; `tta` averages with the mirrored image.

    `amp` runs in bf16 (fp16 on older GPUs): about 2x faster on CPU, P(FAKE) within ~1e-2 of fp32.
    """
    model.eval().to(device)
    x_all, out = to_tensor(images), []
    for i in range(0, len(x_all), batch_size):
        x = pixels_to(x_all[i : i + batch_size], device)
        with autocast(device, enabled=amp):
            out.append(tta_logit(model, x, tta).cpu())
    return torch.cat(out).numpy().astype(np.float64) if out else np.empty(0)


def predict_pixels(model: DetectorNet, images: np.ndarray, device: torch.device, batch_size: int = 256,
                   tta: bool = False, amp: bool = True, temperature: float = 1.0) -> np.ndarray:
    """P(FAKE) = sigmoid(logit / temperature); the temperature comes from `--calibrate`."""
    return sigmoid(predict_logits(model, images, device, batch_size, tta, amp) / temperature)


class TorchScorer:
    def __init__(self, model: DetectorNet, device: torch.device, tta: bool, amp: bool, temperature: float = 1.0):
        self.model, self.device, self.tta, self.amp = model.to(device), device, tta, amp
        self.temperature = temperature

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return predict_pixels(self.model, pixels, self.device, tta=self.tta, amp=self.amp,
                              temperature=self.temperature)


@dataclass
class Prediction:
    source: str
    label: str | None  # "REAL", "FAKE", or None when the image could not be read
    p_fake: float | None
    error: str | None = None


ImageInput = str | Path | bytes | np.ndarray | Any  # Any: a PIL image
Decoded = tuple[str, np.ndarray | None, str | None]  # source, pixels (None if unreadable), error


class Detector:
    """A trained model ready for inference.

    >>> det = Detector.load("runs/cifake/model.pt")
    >>> [p.label for p in det.predict(["cat.jpg", "render.png"])]
    """

    def __init__(self, scorer: Callable[[np.ndarray], np.ndarray], config: ModelConfig, meta: ModelMeta,
                 network: DetectorNet | None = None):
        self.scorer, self.config, self.meta = scorer, config, meta
        self.threshold = meta.threshold
        self.tta = meta.tta
        self.image_size = config.image_size
        self.name = config.name
        self.network = network

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", backend: str = "torch",
             precision: str = "bf16") -> Detector:
        """`backend="torch"` reads model.pt; `backend="onnx"` reads a file from `aivsreal export`."""
        if backend == "onnx":
            from aivsreal.predict.onnx import OnnxScorer

            scorer = OnnxScorer(Path(path))
            return cls(scorer, scorer.config, scorer.meta)
        if backend != "torch":
            raise AivsrealError(f"unknown backend {backend!r} (torch, onnx)")
        network, meta = load_model(path)
        return cls.from_network(network, meta, device, precision)

    @classmethod
    def from_network(cls, network: DetectorNet, meta: ModelMeta, device: str | torch.device = "auto",
                     precision: str = "bf16") -> Detector:
        if precision not in ("bf16", "fp32"):
            raise AivsrealError(f"unknown precision {precision!r} (bf16, fp32)")
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        scorer = TorchScorer(network, dev, meta.tta, amp=precision == "bf16", temperature=meta.temperature)
        return cls(scorer, network.config, meta, network)

    def to_pixels(self, image: ImageInput) -> np.ndarray:
        """One input of any supported kind -> (size, size, 3) uint8, exactly as in training."""
        if isinstance(image, (str, Path)):
            return read_image_file(image, self.image_size)
        if isinstance(image, bytes):
            return decode_image(image, self.image_size)
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise BadImageError(f"expected an HxWx3 uint8 array, got {image.dtype} {image.shape}")
            from PIL import Image

            image = Image.fromarray(image)
        buf = io.BytesIO()
        image.save(buf, format="PNG")  # lossless: the pixels reach the model unchanged
        return decode_image(buf.getvalue(), self.image_size)

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """P(FAKE) per image; a non-finite output (damaged weights) is refused, never reported as REAL."""
        p = self.scorer(pixels)
        if not np.all(np.isfinite(p)):
            raise AivsrealError(f"model {self.name!r} produced non-finite P(fake) (NaN or inf): its weights "
                                "are damaged; retrain or re-download it")
        return p

    def label(self, p_fake: float) -> str:
        return verdict(p_fake, self.threshold)

    def predict(self, images: Iterable[ImageInput], batch_size: int = 256) -> list[Prediction]:
        return list(self.iter_predict(images, batch_size))

    def iter_predict(self, images: Iterable[ImageInput], batch_size: int = 256) -> Iterator[Prediction]:
        """Stream predictions in input order; unreadable inputs yield a Prediction with `error`."""
        for batch in self.decoded_batches(images, batch_size):
            yield from self.score_decoded(batch, batch_size)

    def decoded_batches(self, images: Iterable[ImageInput], batch_size: int) -> Iterator[list[Decoded]]:
        """Inputs decoded as in training, `batch_size` at a time, in order; unreadable ones carry their error."""
        batch: list[Decoded] = []
        for image in images:
            source = str(image) if isinstance(image, (str, Path)) else f"<{type(image).__name__}>"
            try:
                batch.append((source, self.to_pixels(image), None))
            except BadImageError as e:
                batch.append((source, None, str(e)))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def score_decoded(self, items: list[Decoded], batch_size: int = 256) -> Iterator[Prediction]:
        """Predictions for already-decoded (source, pixels or None, error) items, in order."""
        good = [px for _, px, _ in items if px is not None]
        chunks = [self.predict_proba(np.stack(good[i : i + batch_size])) for i in range(0, len(good), batch_size)]
        probs = iter(np.concatenate(chunks) if chunks else [])
        for source, px, error in items:
            if px is None:
                yield Prediction(source, None, None, error)
            else:
                p = float(next(probs))
                yield Prediction(source, self.label(p), p)
