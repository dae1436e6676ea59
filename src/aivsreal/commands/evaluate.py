"""`aivsreal evaluate`: re-score a saved model on its own splits and write metrics, plots and report.md.

`write_evaluation` is also how `train` writes its report: one writer for both verbs.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aivsreal.data.splits import DataOptions, RunData
from aivsreal.device import resolve_device
from aivsreal.evaluate.calibration import CalibrationOptions, calibrate_on_val
from aivsreal.evaluate.scores import Evaluation, score_splits
from aivsreal.models import DetectorNet
from aivsreal.models.file import ModelMeta, save_model, verdict
from aivsreal.models.hub import load_model, resolve_model
from aivsreal.report import figures
from aivsreal.report.markdown import write_report
from aivsreal.safe_io import writable_dir

log = logging.getLogger(__name__)


@dataclass
class SavedRun:
    """A saved model and its own data splits, loaded once for every verb that scores it on data."""

    path: Path  # where a recalibrated model is written: the file itself, else run_dir/model.pt (never the package)
    run_dir: Path  # where outputs go by default
    network: DetectorNet
    meta: ModelMeta
    data: RunData
    device: torch.device


def load_saved(model_path: str | Path, data: DataOptions, device: str = "auto") -> SavedRun:
    """The model, and the splits rebuilt from the recipe stored with it (never seed 0 by default)."""
    source = resolve_model(model_path)
    network, meta = load_model(source)
    dev = resolve_device(device)
    rd = data.for_model(meta.split).load(network.config.image_size, network.config.crop)
    if meta.data_fingerprint and meta.data_fingerprint != rd.fingerprint:
        log.warning("data: %s is not the data this model was trained on (fingerprint %s, trained on %s): "
                    "'test' may include images it trained on", rd.path, rd.fingerprint, meta.data_fingerprint)
    path = source.path if source.kind == "file" else source.run_dir / "model.pt"
    return SavedRun(path, source.run_dir, network, meta, rd, dev)


def summary_of(run_data: RunData, network: DetectorNet, device: torch.device, stored: dict[str, Any]) -> dict:
    """The JSON record a report is written from: model, data, training, device."""
    return {
        "model": stored.get("model", {"name": network.config.name, "config": network.config.to_dict(),
                                      "params": sum(p.numel() for p in network.parameters())}),
        "data": run_data.describe(),
        "training": stored.get("training", {}),
        "device": str(device),
        **({"processes": stored["processes"]} if "processes" in stored else {}),
    }


def write_evaluation(out_dir: Path, ev: Evaluation, summary: dict[str, Any],
                     history: list[dict[str, float]] | None) -> dict[str, Any]:
    """metrics.json, predictions_test.csv, plots and report.md; returns the completed summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = ev.meta
    if "test" in ev.scores:
        _write_predictions(out_dir / "predictions_test.csv", ev, meta.threshold)
    plots = {}
    for name in ev.scores:
        rel = f"plots/confusion_{name}.png"
        figures.confusion_matrix_png(ev.metrics[name]["confusion_matrix"], f"{name} confusion matrix", out_dir / rel)
        plots[f"Confusion matrix: {name}"] = rel
    figures.roc_pr_png({n: (s.labels, s.p_fake) for n, s in ev.scores.items()}, out_dir / "plots/roc_pr.png")
    plots["ROC and precision-recall curves"] = "plots/roc_pr.png"
    test = ev.scores.get("test")
    if test is not None:
        curves = {"test": (test.labels, test.p_fake)}
        if test.p_fake_before_temperature is not None:
            curves = {"before temperature scaling": (test.labels, test.p_fake_before_temperature),
                      f"temperature {meta.temperature:.3g}": (test.labels, test.p_fake)}
        figures.reliability_png(curves, out_dir / "plots/reliability.png")
        plots["Calibration: reliability diagram"] = "plots/reliability.png"
    if history:
        figures.training_curves_png(history, out_dir / "plots/training_curves.png")
        plots["Training curves"] = "plots/training_curves.png"
    summary = {**summary, "threshold": meta.threshold, "tta": meta.tta, "temperature": meta.temperature,
               "metrics": ev.metrics}
    if ev.operating_point:
        summary["operating_point"] = ev.operating_point
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    write_report(out_dir, summary, plots)
    return summary


def _write_predictions(path: Path, ev: Evaluation, threshold: float) -> None:
    test = ev.scores["test"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted", "p_fake"])
        for name, y, p in zip(test.names, test.labels, test.p_fake, strict=True):
            w.writerow([name, "FAKE" if y else "REAL", verdict(p, threshold), f"{p:.6f}"])


def evaluate_run(run: SavedRun, out: Path, calibration: CalibrationOptions | None = None) -> tuple[dict, Evaluation]:
    """Score a loaded SavedRun on train/val/test and write the report files into `out`.

    With `calibration`, the temperature/threshold fitted on val are written into the model file.
    """
    if calibration and calibration.requested:
        run.meta = calibrate_on_val(run.network, run.data.val, run.device, run.meta, calibration)
        save_model(run.path, run.network, run.meta)
        log.info("calibration stored in %s", run.path)
    rd = run.data
    ev = score_splits(run.network, {"train": rd.train, "val": rd.val, "test": rd.test}, run.device, run.meta,
                      leaked=rd.leaked)
    summary = summary_of(rd, run.network, run.device, run.meta.summary)
    return write_evaluation(out, ev, summary, read_history(run.run_dir / "history.csv")), ev


def evaluate_saved(model_path: str | Path, out_dir: str | Path | None, data: DataOptions,
                   device: str = "auto", calibration: CalibrationOptions | None = None) -> dict[str, Any]:
    run = load_saved(model_path, data, device)
    return evaluate_run(run, writable_dir(out_dir or run.run_dir), calibration)[0]


def read_history(path: Path) -> list[dict[str, float]] | None:
    if not path.exists():
        return None
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


