"""`aivsreal robustness`: a saved model's test accuracy under JPEG, blur, resize, noise and flip."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from aivsreal.commands.evaluate import load_saved
from aivsreal.data.cache import DecodedSplit
from aivsreal.data.splits import DataOptions
from aivsreal.evaluate import robustness
from aivsreal.predict.detector import Detector
from aivsreal.report import figures
from aivsreal.report.provenance import provenance
from aivsreal.safe_io import writable_dir

log = logging.getLogger(__name__)


def measure_robustness(det: Detector, test: DecodedSplit, out: Path,
                       clean_p_fake: np.ndarray | None = None) -> list[robustness.RobustnessRow]:
    """Score the perturbed test split; write robustness.json, robustness.md and plots/robustness.png."""
    log.info("robustness: %d test images x %d perturbations", len(test), len(robustness.PERTURBATIONS))
    # [:] reads a --crop run's test crops from disk into memory (use --limit on a large test split)
    rows = robustness.measure(det.predict_proba, test.images[:], test.labels, det.threshold,
                              clean_p_fake=clean_p_fake)
    (out / "robustness.json").write_text(json.dumps({"provenance": provenance().to_dict(),
                                                     "rows": robustness.rows_to_dicts(rows)}, indent=2))
    (out / "robustness.md").write_text(
        f"# Robustness of `{det.name}` (threshold {det.threshold:.4f})\n\n{robustness.markdown_table(rows)}\n\n"
        "![accuracy per perturbation strength](plots/robustness.png)\n")
    figures.robustness_png(rows, out / "plots/robustness.png")
    return rows


def run_robustness(model_path: str | Path, out_dir: str | Path | None, data: DataOptions,
                   device: str = "auto") -> list[robustness.RobustnessRow]:
    run = load_saved(model_path, data, device)
    out = writable_dir(out_dir or run.run_dir / "robustness")
    return measure_robustness(Detector.from_network(run.network, run.meta, run.device), run.data.test, out)
