"""How the detector holds up when images are re-saved, blurred, resized or noisy.

What users ask about most: a fake that went through a social network arrives re-compressed
and resized. Each perturbation is applied to the test images as the model sees them (at
`image_size`; for CIFAKE that is the original 32x32 JPEG decoded as-is), then the model
scores them with its own threshold, test-time flip and temperature.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """Pillow's (libjpeg's) encoder at `quality`, with its default 4:2:0 chroma subsampling."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(jpeg_bytes(im, quality))).convert("RGB")) for im in images])


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each channel with a Gaussian of `sigma` pixels (kernel to 4 sigma, mirrored edges)."""
    blurred = gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect", truncate=4.0)
    return _to_uint8(blurred)


def rescale(images: np.ndarray, factor: float) -> np.ndarray:
    """Down to `factor` of the size and back up, both bicubic: detail finer than the small size is lost."""
    h, w = images.shape[1:3]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    bicubic = Image.Resampling.BICUBIC
    return np.stack([np.asarray(Image.fromarray(im).resize(small, bicubic).resize((w, h), bicubic))
                     for im in images])


def gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Add N(0, sigma^2) noise in 0..255 pixel units (sigma 5 = 5/255), fixed seed, clipped and rounded."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=images.shape)
    return _to_uint8(images.astype(np.float64) + noise)


def hflip(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images[:, :, ::-1])


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Perturbation:
    family: str
    strength: float  # the x axis of the plot; 0 is the clean image
    label: str
    apply: Callable[[np.ndarray], np.ndarray]


PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation("JPEG quality", 95, "JPEG q95", lambda x: jpeg(x, 95)),
    Perturbation("JPEG quality", 75, "JPEG q75", lambda x: jpeg(x, 75)),
    Perturbation("JPEG quality", 50, "JPEG q50", lambda x: jpeg(x, 50)),
    Perturbation("Gaussian blur sigma (px)", 0.5, "blur sigma 0.5", lambda x: gaussian_blur(x, 0.5)),
    Perturbation("Gaussian blur sigma (px)", 1.0, "blur sigma 1", lambda x: gaussian_blur(x, 1.0)),
    Perturbation("downscale-upscale factor", 0.5, "resize 0.5x and back", lambda x: rescale(x, 0.5)),
    Perturbation("Gaussian noise sigma (/255)", 2, "noise sigma 2/255", lambda x: gaussian_noise(x, 2)),
    Perturbation("Gaussian noise sigma (/255)", 5, "noise sigma 5/255", lambda x: gaussian_noise(x, 5)),
    Perturbation("horizontal flip", 1, "horizontal flip", hflip),
)
CLEAN_STRENGTH = {"JPEG quality": 100, "downscale-upscale factor": 1.0}  # where "clean" sits on each x axis


@dataclass
class RobustnessRow:
    family: str
    strength: float
    label: str
    n: int
    accuracy: float
    roc_auc: float
    fake_recall: float  # share of FAKE images still flagged
    real_flagged: float  # share of REAL images called FAKE (false positives)

    def change_from(self, clean: RobustnessRow) -> str:
        """Accuracy change against the clean row, in points; empty for the clean row itself."""
        return "" if self is clean else f"{(self.accuracy - clean.accuracy) * 100:+.2f} pt"


def measure(scorer: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
            threshold: float, perturbations: tuple[Perturbation, ...] = PERTURBATIONS) -> list[RobustnessRow]:
    """One row for the clean images, then one per perturbation; `scorer` maps pixels to P(FAKE)."""
    labels = np.asarray(labels).astype(int)
    clean = Perturbation("clean", 0, "clean", lambda x: x)
    rows = []
    for pert in (clean, *perturbations):
        p_fake = scorer(pert.apply(images))
        flagged, fake = p_fake >= threshold, labels == 1
        rows.append(RobustnessRow(
            pert.family, pert.strength, pert.label, len(labels), float(np.mean(flagged == fake)),
            float(roc_auc_score(labels, p_fake)) if len(np.unique(labels)) == 2 else float("nan"),
            float(flagged[fake].mean()) if fake.any() else float("nan"),
            float(flagged[~fake].mean()) if (~fake).any() else float("nan"),
        ))
    return rows


def rows_to_dicts(rows: list[RobustnessRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def markdown_table(rows: list[RobustnessRow]) -> str:
    lines = ["| perturbation | accuracy | change | AUC | FAKE recall | REAL flagged as FAKE |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.label} | {r.accuracy:.4f} | {r.change_from(rows[0])} | {r.roc_auc:.4f} | "
                     f"{r.fake_recall:.4f} | {r.real_flagged:.4f} |")
    return "\n".join(lines)
