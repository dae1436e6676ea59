"""Score a model on each split and write metrics.json, plots and report.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aivsreal import plots
from aivsreal.decode_cache import DecodedSplit
from aivsreal.metrics import binary_metrics
from aivsreal.models import Detector as Network
from aivsreal.predict import predict_pixels
from aivsreal.report import write_report


def evaluate(
    model: Network,
    splits: dict[str, DecodedSplit],
    device: torch.device,
    out_dir: Path,
    summary: dict[str, Any],
    tta: bool = False,
    threshold: float = 0.5,
    leaked: np.ndarray | None = None,
    history: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Metrics for every split (plus test without the images leaked from train, if given)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results, scores = {}, {}
    for name, data in splits.items():
        p_fake = predict_pixels(model, data.images, device, tta=tta)
        results[name] = binary_metrics(data.labels, p_fake, threshold)
        scores[name] = (data.labels, p_fake)
        if name == "test":
            _write_predictions(out_dir / "predictions_test.csv", data, p_fake, threshold)
    if leaked is not None and "test" in scores and leaked.any():
        labels, p_fake = scores["test"]
        results["test (no train duplicates)"] = binary_metrics(labels[~leaked], p_fake[~leaked], threshold)

    figures = {}
    for name in splits:
        rel = f"plots/confusion_{name}.png"
        plots.confusion_matrix_png(results[name]["confusion_matrix"], f"{name} confusion matrix", out_dir / rel)
        figures[f"Confusion matrix: {name}"] = rel
    plots.roc_pr_png(scores, out_dir / "plots/roc_pr.png")
    figures["ROC and precision-recall curves"] = "plots/roc_pr.png"
    if history:
        plots.training_curves_png(history, out_dir / "plots/training_curves.png")
        figures["Training curves"] = "plots/training_curves.png"

    summary = {**summary, "threshold": threshold, "tta": tta, "metrics": results}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    write_report(out_dir, summary, figures)
    return summary


def _write_predictions(path: Path, data: DecodedSplit, p_fake: np.ndarray, threshold: float) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted", "p_fake"])
        for name, y, p in zip(data.names, data.labels, p_fake, strict=True):
            w.writerow([name, "FAKE" if y else "REAL", "FAKE" if p >= threshold else "REAL", f"{p:.6f}"])
