"""Run a trained detector on pixels, files, bytes or PIL images: the Python API and `predict`."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aivsreal.data.crops import TileLayout, Views, decode_views, read_views
from aivsreal.data.images import BadImageError
from aivsreal.device import resolve_device
from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet, ModelConfig
from aivsreal.models.card import model_card
from aivsreal.models.domain import DomainVerdict
from aivsreal.models.file import ModelMeta, experimental_notice, verdict
from aivsreal.models.hub import ModelRef, load_model, save_pretrained
from aivsreal.models.network import combine_views, logits_and_features, sigmoid

log = logging.getLogger(__name__)
MAX_PASS_PIXELS = 16 * 224 * 224  # network input pixels per forward pass (Detector.views_per_pass)
MAX_HELD_VIEW_BYTES = 64 * 2**20  # decoded views waiting to be scored (Detector.window)


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
    """One verdict: what `Detector.predict`, `aivsreal predict`, the REST API and the web page report per image.

    An unreadable input gets `error` and no label, so one bad file never stops a batch. The domain fields say
    whether the image is like the model's training images; a verdict on one that is not is unreliable
    (docs/detectors.md, "Domain check").
    """

    source: str
    label: str | None  # "REAL", "FAKE", or None when the image could not be read
    p_fake: float | None
    error: str | None = None
    in_domain: bool | None = None  # None: unreadable, or a model without a domain check (before 0.2)
    domain_score: float | None = None  # > 1: unlike the training images (see models/domain.py)
    domain_reason: str | None = None  # one line when out of domain
    experimental: bool | None = None  # marked experimental (Detector.experimental says why); None: no verdict


@dataclass
class DecodedInput:
    source: str
    pixels: np.ndarray | None  # (V, S, S, 3) views the model reads; None when unreadable
    size: tuple[int, int] | None = None  # (width, height) as stored, for the domain check
    layout: TileLayout | None = None  # where a native-crop model's tiles lie on its canvas (Grad-CAM)
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
        if meta.experimental:  # once per load: the CLI's stderr line, the server's log, the API user's warning
            log.warning("this detector is experimental: %s", experimental_notice(meta.experimental))

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
        """A network already in memory (just trained, or loaded by the caller) with its metadata.

        `precision="bf16"` uses bf16 autocast where the device does it natively; "fp32" is exact.
        """
        if precision not in ("bf16", "fp32"):
            raise AivsrealError(f"unknown precision {precision!r} (bf16, fp32)")
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        scorer = TorchScorer(network, dev, meta.tta, amp=precision == "bf16", temperature=meta.temperature)
        return cls(scorer, network.config, meta, network)

    @property
    def experimental(self) -> str | None:
        """Why this detector's verdicts are not to be relied on (its metadata says so); None when it is not
        marked experimental. Every Prediction carries the flag as `experimental`."""
        return self.meta.experimental

    @property
    def crop(self) -> int | None:
        """N for a native-crop model, which reads N px tiles at the image's own resolution; None for one that
        reads the whole image resized."""
        return self.config.crop

    @property
    def max_views(self) -> int:
        """How many views one image can cost: up to 9 native tiles for a native-crop model, else 1."""
        return self.config.max_tiles

    def window(self, batch_size: int) -> int:
        """How many images to decode before scoring them: `batch_size`, fewer when their views would hold
        more than MAX_HELD_VIEW_BYTES (nine 224 px tiles are 1.35 MB an image: 256 images, 347 MB)."""
        side = self.crop or self.image_size
        return max(min(batch_size, MAX_HELD_VIEW_BYTES // (self.max_views * side * side * 3)), 1)

    def to_pixels(self, image: ImageInput) -> np.ndarray:
        """One input of any supported kind -> (size, size, 3) uint8, exactly as in training (a native-crop
        model's first tile)."""
        return self.decode(image)[0][0]

    @property
    def view_reader(self) -> Callable[[str | Path], Views]:
        """`read_views` with this model's view policy, as a plain function a process pool can carry."""
        return partial(read_views, image_size=self.image_size, crop=self.crop, max_tiles=self.config.max_tiles,
                       rescale=self.config.rescale, draft=self.config.draft, reencode=self.config.reencode)

    def decode(self, image: ImageInput) -> Views:
        """The (V, size, size, 3) views the model reads from one input, its (width, height) as stored, and
        where a native-crop model's tiles lie on the canvas they were cut from."""
        if isinstance(image, (str, Path)):
            return self.view_reader(image)
        if isinstance(image, bytes):
            return self.decode_bytes(image)
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise BadImageError(f"expected an HxWx3 uint8 array, got {image.dtype} {image.shape}")
            from PIL import Image

            image = Image.fromarray(image)
        buf = io.BytesIO()
        image.save(buf, format="PNG")  # lossless: the pixels reach the model unchanged
        return self.decode_bytes(buf.getvalue())._replace(size=image.size)

    def decode_bytes(self, data: bytes) -> Views:
        """`decode` for an encoded file in memory: the one place every option of the model's view
        (crop, rescale, draft, reencode, max_tiles) reaches the decoder."""
        return decode_views(data, self.image_size, self.crop, self.config.max_tiles, rescale=self.config.rescale,
                            draft=self.config.draft, reencode=self.config.reencode)

    def score(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """P(FAKE) per image and the features the domain check reads (None where the backend has none).

        A non-finite output (damaged weights) is refused, never reported as REAL. The views go through
        the network `views_per_pass` at a time, whatever the caller holds: memory follows the pass.
        """
        step = self.views_per_pass(pixels.shape[1:3])
        parts = [self.scorer(pixels[i : i + step]) for i in range(0, len(pixels), step)] or [self.scorer(pixels)]
        p = np.concatenate([part[0] for part in parts])
        features = None if parts[0][1] is None else np.concatenate([part[1] for part in parts])
        if not np.all(np.isfinite(p)):
            raise AivsrealError(f"model {self.name!r} produced non-finite P(fake) (NaN or inf): its weights "
                                "are damaged; retrain or re-download it")
        return p, features

    def views_per_pass(self, view: tuple[int, ...]) -> int:
        """How many views one forward pass takes: MAX_PASS_PIXELS of network input (at least one view).

        A pass's activations grow with its pixels, not with its image count: on the Lite2 probe one pass
        of 256 native 224 px tiles peaked at 2.7 GB RSS; `predict` over 56 12 MP JPEGs with rescale 512
        peaked at 1,214 MB with passes of 32 views, 1,040 MB with 16, 961 MB with 8, in the same time
        for 32 and 16 (2 CPU cores). CIFAKE's 32 px batches of 256 fit in one pass, as before.
        """
        side = max(self.config.input_size, *view) if view else self.config.input_size
        return max(MAX_PASS_PIXELS // (side * side), 1)

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """P(FAKE) for a (N, size, size, 3) uint8 batch of decoded pixels, as `to_pixels` makes them."""
        return self.score(pixels)[0]

    def domain(self, features: np.ndarray | None, sizes: list[tuple[int, int] | None]) -> list[DomainVerdict | None]:
        """The domain check per image; None each when the model file has none (trained before 0.2)."""
        if self.meta.domain is None:
            return [None] * len(sizes)
        return self.meta.domain.assess(features, sizes)

    def label(self, p_fake: float) -> str:
        """"FAKE" or "REAL" by the model's own threshold (calibrated or chosen at training, else 0.5)."""
        return verdict(p_fake, self.threshold)

    def predict(self, images: Iterable[ImageInput], batch_size: int = 256) -> list[Prediction]:
        """One `Prediction` per input, in order: paths, bytes, PIL images or HxWx3 uint8 arrays.

        All verdicts are held in memory; for a large folder, `iter_predict` streams them.
        """
        return list(self.iter_predict(images, batch_size))

    def iter_predict(self, images: Iterable[ImageInput], batch_size: int = 256) -> Iterator[Prediction]:
        """Stream predictions in input order; unreadable inputs yield a Prediction with `error`."""
        for batch in self.decoded_batches(images, batch_size):
            yield from self.score_decoded(batch, batch_size)

    def decoded_batches(self, images: Iterable[ImageInput], batch_size: int) -> Iterator[list[DecodedInput]]:
        """Inputs decoded as in training, `window(batch_size)` at a time, in order; unreadable ones carry their
        error. Only their views are kept: each full decode is freed before the next input is read."""
        batch: list[DecodedInput] = []
        size = self.window(batch_size)
        for image in images:
            source = str(image) if isinstance(image, (str, Path)) else f"<{type(image).__name__}>"
            try:
                batch.append(DecodedInput(source, *self.decode(image)))
            except BadImageError as e:
                batch.append(DecodedInput(source, None, error=str(e)))
            if len(batch) >= size:
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
            pred = Prediction(source, self.label(p), p, experimental=self.experimental is not None)
            if dom is not None:
                pred.in_domain, pred.domain_reason = dom.in_domain, dom.reason
                pred.domain_score = round(dom.score, 4) if np.isfinite(dom.score) else None
            out.append(pred)
        return out
