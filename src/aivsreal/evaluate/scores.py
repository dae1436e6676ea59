"""Score a model on each split and write metrics.json, plots and report.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aivsreal.data.cache import DecodedSplit
from aivsreal.evaluate.calibration import expected_calibration_error, operating_point, sigmoid
from aivsreal.evaluate.metrics import binary_metrics
from aivsreal.models import Detector as Network
from aivsreal.predict.detector import predict_logits
from aivsreal.report import figures as plots
from aivsreal.report.markdown import write_report


def evaluate(
    model: Network,
    splits: dict[str, DecodedSplit],
    device: torch.device,
    out_dir: Path,
    summary: dict[str, Any],
    meta: dict[str, Any],
    leaked: np.ndarray | None = None,
    history: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Metrics for every split (plus test without the images leaked from train, if given).

    `meta` is how the model file says to read the model: tta, temperature, threshold and the
    operating point chosen on the validation split, if any.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tta, threshold = bool(meta.get("tta")), float(meta.get("threshold", 0.5))
    temperature = float(meta.get("temperature", 1.0))
    results, scores, uncalibrated = {}, {}, {}
    for name, data in splits.items():
        logits = predict_logits(model, data.images, device, tta=tta)
        p_fake = sigmoid(logits / temperature)
        results[name] = binary_metrics(data.labels, p_fake, threshold)
        scores[name] = (data.labels, p_fake)
        if temperature != 1.0:
            uncalibrated[name] = (data.labels, sigmoid(logits))
            results[name]["ece_before_temperature"] = expected_calibration_error(data.labels, sigmoid(logits))
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
    if "test" in scores:
        curves = {"test": scores["test"]}
        if "test" in uncalibrated:
            curves = {"before temperature scaling": uncalibrated["test"],
                      f"temperature {temperature:.3g}": scores["test"]}
        plots.reliability_png(curves, out_dir / "plots/reliability.png")
        figures["Calibration: reliability diagram"] = "plots/reliability.png"
    if history:
        plots.training_curves_png(history, out_dir / "plots/training_curves.png")
        figures["Training curves"] = "plots/training_curves.png"

    summary = {**summary, "threshold": threshold, "tta": tta, "temperature": temperature, "metrics": results}
    if meta.get("operating_point") and "test" in scores:
        summary["operating_point"] = {**meta["operating_point"], "threshold": threshold,
                                      "test": operating_point(*scores["test"], threshold).to_dict()}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    write_report(out_dir, summary, figures)
    return summary


def _write_predictions(path: Path, data: DecodedSplit, p_fake: np.ndarray, threshold: float) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted", "p_fake"])
        for name, y, p in zip(data.names, data.labels, p_fake, strict=True):
            w.writerow([name, "FAKE" if y else "REAL", "FAKE" if p >= threshold else "REAL", f"{p:.6f}"])
