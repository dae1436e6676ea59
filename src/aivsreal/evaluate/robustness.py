"""How the detector holds up when images are re-saved, blurred, resized or noisy.

What users ask about most: a fake that went through a social network arrives re-compressed
and resized. Each perturbation is applied to the test images as the model sees them (at
`image_size`; for CIFAKE that is the original 32x32 JPEG decoded as-is), then the model
scores them with its own threshold, test-time flip and temperature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from aivsreal.data.perturb import gaussian_blur, gaussian_noise, hflip, jpeg, rescale


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
            threshold: float, perturbations: tuple[Perturbation, ...] = PERTURBATIONS,
            clean_p_fake: np.ndarray | None = None) -> list[RobustnessRow]:
    """One row for the clean images, then one per perturbation; `scorer` maps pixels to P(FAKE).

    `clean_p_fake`: the clean images' scores when the caller already has them (the report does).
    """
    labels = np.asarray(labels).astype(int)
    clean = Perturbation("clean", 0, "clean", lambda x: x)
    rows = []
    for pert in (clean, *perturbations):
        p_fake = clean_p_fake if pert is clean and clean_p_fake is not None else scorer(pert.apply(images))
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
