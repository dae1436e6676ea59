"""What `aivsreal robustness` and `aivsreal report` do: stress a saved model, then put everything
(metrics, calibration, robustness, Grad-CAM examples) into one HTML file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from aivsreal.commands.train import DataOptions, evaluate_saved, writable_dir
from aivsreal.data.cache import DecodedSplit
from aivsreal.errors import AivsrealError
from aivsreal.evaluate import robustness
from aivsreal.explain.gradcam import default_layer, png_bytes, side_by_side
from aivsreal.predict.detector import Detector
from aivsreal.report import figures as plots
from aivsreal.report import html as html_report
from aivsreal.report.html import CamExample
from aivsreal.safe_io import atomic_write

log = logging.getLogger(__name__)


def measure_robustness(det: Detector, test: DecodedSplit, out: Path) -> list[robustness.RobustnessRow]:
    """Score the perturbed test split; write robustness.json, robustness.md and plots/robustness.png."""
    log.info("robustness: %d test images x %d perturbations", len(test), len(robustness.PERTURBATIONS))
    rows = robustness.measure(det.predict_proba, test.images, test.labels, det.threshold)
    (out / "robustness.json").write_text(json.dumps(robustness.rows_to_dicts(rows), indent=2))
    (out / "robustness.md").write_text(
        f"# Robustness of `{det.name}` (threshold {det.threshold:.4f})\n\n{robustness.markdown_table(rows)}\n\n"
        "![accuracy per perturbation strength](plots/robustness.png)\n")
    plots.robustness_png(rows, out / "plots/robustness.png")
    return rows


def run_robustness(model_path: str | Path, out_dir: str | Path | None, data: DataOptions,
                   device: str = "auto") -> list[robustness.RobustnessRow]:
    det = Detector.load(model_path, device=device)
    out = writable_dir(out_dir or Path(model_path).parent / "robustness")
    return measure_robustness(det, data.load(det.image_size).test, out)


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


def gradcam_examples(det: Detector, test: DecodedSplit, p_fake: np.ndarray, folder: Path,
                     k: int = 4) -> dict[str, list[CamExample]]:
    folder.mkdir(parents=True, exist_ok=True)
    groups = most_confident(test.labels, p_fake, det.threshold, k)
    chosen = np.concatenate(list(groups.values()))
    cams = det.explain(test.images[chosen], p_fake=p_fake[chosen]) if len(chosen) else []
    cam_of = dict(zip(chosen.tolist(), cams, strict=True))
    examples: dict[str, list[CamExample]] = {}
    for title, idx in groups.items():
        examples[title] = []
        for i in idx.tolist():
            png = folder / f"test_{i:06d}.png"
            png.write_bytes(png_bytes(side_by_side(test.images[i], cam_of[i], size=160)))
            examples[title].append(CamExample(png, test.names[i], "FAKE" if test.labels[i] else "REAL",
                                              "FAKE" if p_fake[i] >= det.threshold else "REAL", float(p_fake[i])))
    return examples


def build_report(model_path: str | Path, out_dir: str | Path | None, data: DataOptions, device: str = "auto",
                 examples: int = 4, command: str = "") -> Path:
    """Evaluate, stress and explain a saved model; returns the path of the self-contained report.html."""
    if examples < 0:
        raise AivsrealError(f"--examples must be 0 or more (got {examples})")
    out = writable_dir(out_dir or Path(model_path).parent / "report")
    summary = evaluate_saved(model_path, out, data, device)
    det = Detector.load(model_path, device=device)
    test = data.load(det.image_size).test
    rows = measure_robustness(det, test, out)
    log.info("Grad-CAM: %d most confident right and wrong test images per class", examples)
    cams = gradcam_examples(det, test, det.predict_proba(test.images), out / "gradcam", examples)
    page = html_report.render(summary, out, rows, cams, default_layer(det.network), command)
    path = out / "report.html"
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    return path
