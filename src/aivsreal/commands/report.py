"""`aivsreal report`: evaluate, stress and explain a saved model, then put it all into one HTML file.

The model and its data are loaded once and the test split is scored once: robustness reuses
the clean scores and the Grad-CAM examples are picked from them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from aivsreal.commands.evaluate import evaluate_run, load_saved
from aivsreal.commands.robustness import measure_robustness
from aivsreal.data.cache import DecodedSplit
from aivsreal.data.crops import Views
from aivsreal.data.splits import DataOptions
from aivsreal.data.stream import CentreCrops
from aivsreal.errors import AivsrealError
from aivsreal.explain.gradcam import Explainer
from aivsreal.explain.overlays import panels, picture, png_bytes
from aivsreal.predict.detector import Detector
from aivsreal.report import html
from aivsreal.report.html import CamExample
from aivsreal.safe_io import atomic_write, writable_dir

log = logging.getLogger(__name__)


def most_confident(labels: np.ndarray, p_fake: np.ndarray, threshold: float, k: int) -> dict[str, np.ndarray]:
    """Up to k test indices per group: each class right and wrong, most confident verdicts first."""
    labels, p_fake = np.asarray(labels), np.asarray(p_fake)
    predicted_fake = p_fake >= threshold
    confidence = np.where(predicted_fake, p_fake, 1.0 - p_fake)
    groups = {
        "REAL images called REAL": (labels == 0) & ~predicted_fake,
        "REAL images called FAKE (false positives)": (labels == 0) & predicted_fake,
        "FAKE images called FAKE": (labels == 1) & predicted_fake,
        "FAKE images called REAL (missed fakes)": (labels == 1) & ~predicted_fake,
    }
    out = {}
    for title, mask in groups.items():
        idx = np.flatnonzero(mask)
        out[title] = idx[np.argsort(-confidence[idx], kind="stable")[:k]]
    return out


def gradcam_examples(explainer: Explainer, test: DecodedSplit, p_fake: np.ndarray, folder: Path,
                     k: int = 4, domain_score: np.ndarray | None = None) -> dict[str, list[CamExample]]:
    folder.mkdir(parents=True, exist_ok=True)
    det = explainer.det
    groups = most_confident(test.labels, p_fake, det.threshold, k)
    chosen = np.concatenate(list(groups.values())).tolist()
    # the views predict reads: a split on disk (a native-crop model's) through its tiles, else the one image
    views = {i: test.images.views(i, det.config) if isinstance(test.images, CentreCrops)
             else Views(test.images[i][None], None) for i in chosen}
    cam_of = dict(zip(chosen, explainer.explain_each([views[i].pixels for i in chosen], p_fake=p_fake[chosen]),
                      strict=True))
    examples: dict[str, list[CamExample]] = {}
    for title, idx in groups.items():
        examples[title] = []
        for i in idx.tolist():
            png = folder / f"test_{i:06d}.png"
            png.write_bytes(png_bytes(panels(picture(views[i].pixels, cam_of[i], views[i].layout, size=160))))
            domain = None if domain_score is None else float(domain_score[i])
            examples[title].append(CamExample(png, test.names[i], "FAKE" if test.labels[i] else "REAL",
                                              det.label(float(p_fake[i])), float(p_fake[i]), domain))
    return examples


def build_report(model_path: str | Path, out_dir: str | Path | None, data: DataOptions, device: str = "auto",
                 examples: int = 4, command: str = "") -> Path:
    """Evaluate, stress and explain a saved model; returns the path of the self-contained report.html."""
    if examples < 0:
        raise AivsrealError(f"--examples must be 0 or more (got {examples})")
    run = load_saved(model_path, data, device)
    out = writable_dir(out_dir or run.run_dir / "report")
    summary, ev = evaluate_run(run, out)
    det = Detector.from_network(run.network, run.meta, run.device)
    test, p_fake = run.data.test, ev.scores["test"].p_fake
    rows = measure_robustness(det, test, out, clean_p_fake=p_fake)
    log.info("Grad-CAM: %d most confident right and wrong test images per class", examples)
    explainer = Explainer(det)
    cams = gradcam_examples(explainer, test, p_fake, out / "gradcam", examples, ev.scores["test"].domain_score)
    page = html.render(summary, out, rows, cams, explainer.layer, command)
    path = out / "report.html"
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    return path
