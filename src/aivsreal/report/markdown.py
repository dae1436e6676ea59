"""`report.md`: the metrics and figures of a run, in one Markdown file a person can read."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from aivsreal import __version__

SEED = {"name": "seed notebook (Keras ResNet50V2, GPU)", "train": {"accuracy": 0.9735},
        "test": {"accuracy": 0.9614, "precision": 0.9807, "recall": 0.9414}}
COLUMNS = ("n", "accuracy", "precision", "recall", "f1", "roc_auc", "ece", "domain_flagged")


def format_cell(value: Any) -> str:
    """A table cell, Markdown or HTML: counts with thousands separators, rates to 4 decimals."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def metrics_table(results: dict[str, dict[str, Any]], with_seed: bool = True) -> str:
    lines = ["| split | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for split, m in results.items():
        lines.append(f"| {split} | " + " | ".join(format_cell(m.get(c)) for c in COLUMNS) + " |")
    if with_seed:
        for split in ("train", "test"):
            s = SEED[split]
            lines.append(f"| {split}: {SEED['name']} | " + " | ".join(format_cell(s.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def _calibration_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    test = summary["metrics"].get("test", {})
    if summary.get("temperature", 1.0) != 1.0 and "ece_before_temperature" in test:
        lines.append(f"Temperature scaling (fitted on val): T = {summary['temperature']:.4f}; test ECE "
                     f"{test['ece_before_temperature']:.4f} -> {test['ece']:.4f}.")
    op = summary.get("operating_point")
    if op:
        t = op["test"]
        lines.append(f"Threshold {op['threshold']:.4f} chosen on val for {op['target']} (FAKE flagged = positive); "
                     f"on test: precision {t['precision']:.4f}, FAKE recall {t['recall']:.4f}, FPR {t['fpr']:.4f}.")
    return ["## Calibration", "", *[f"- {line}" for line in lines], ""] if lines else []


def write_report(out_dir: Path, summary: dict[str, Any], figures: dict[str, str]) -> Path:
    """`summary` is metrics.json's content; `figures` maps a caption to a path relative to out_dir."""
    model, train = summary["model"], summary.get("training", {})
    lines = [
        f"# aivsreal report: `{model['name']}` on {summary['data']['path']}",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by aivsreal {__version__} "
        f"(torch {torch.__version__}, {platform.machine()}, {summary.get('device', 'cpu')}).",
        "",
        f"**Positive class: REAL**, as in the seed notebook: precision and recall below are for REAL; "
        f"the model outputs P(FAKE) and calls an image FAKE when P(FAKE) >= {summary['threshold']}. "
        + ("Predictions average the image and its mirror (test-time flip)." if summary.get("tta") else ""),
        "",
        "## Metrics",
        "",
        metrics_table(summary["metrics"]),
        "",
    ]
    notes = summary["data"].get("notes", [])
    if notes:
        lines += ["Data notes:", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["Per class (test):", "", "| class | images | precision | recall |", "|---|---|---|---|"]
    for cls, pc in summary["metrics"].get("test", {}).get("per_class", {}).items():
        lines.append(f"| {cls} | {pc['count']:,} | {pc['precision']:.4f} | {pc['recall']:.4f} |")
    lines.append("")
    lines += _calibration_lines(summary)
    for caption, rel in figures.items():
        lines += [f"## {caption}", "", f"![{caption}]({rel})", ""]
    if train:
        lines += [
            "## Training", "",
            f"- {train['epochs_run']} epochs in {train['seconds']:.0f} s "
            f"({train['median_img_per_s']:.0f} img/s median); best epoch {train['best_epoch']} "
            f"(val loss {train['best_val_loss']:.4f}){', stopped early' if train.get('stopped_early') else ''}"
            f"{', stopped by its time budget' if train.get('stopped_by_time_budget') else ''}.",
            f"- Model: {model['params']:,} parameters; config `{model['config']}`.",
            f"- Recipe: `{train['config']}`.",
            "- Training loss is measured against label-smoothed targets, validation loss against hard "
            "labels, so the two curves differ by a constant even without overfitting.",
            "",
        ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
