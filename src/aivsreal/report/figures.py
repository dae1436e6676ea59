"""The report's figures, as PNG files. Matplotlib's Agg backend: no display needed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

CLASSES = ("REAL", "FAKE")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_matrix_png(cm: list[list[int]], title: str, path: Path) -> Path:
    """Seaborn-style annotated heat map: counts and row percentages in every cell."""
    cm = np.asarray(cm)
    row_pct = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    im = ax.imshow(row_pct, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{cm[i, j]:,}\n{row_pct[i, j]:.1%}", ha="center", va="center",
                    color="white" if row_pct[i, j] > 0.5 else "black", fontsize=11)
    ax.set_xticks([0, 1], [f"pred {c}" for c in CLASSES])
    ax.set_yticks([0, 1], [f"true {c}" for c in CLASSES])
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def roc_pr_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """ROC and precision-recall curves (REAL positive) for each named split."""
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
    for name, (labels, p_fake) in curves.items():
        is_real, score = labels == 0, 1.0 - p_fake
        fpr, tpr, _ = skm.roc_curve(is_real, score)
        roc.plot(fpr, tpr, label=f"{name} (AUC {skm.auc(fpr, tpr):.4f})")
        prec, rec, _ = skm.precision_recall_curve(is_real, score)
        pr.plot(rec, prec, label=f"{name} (AP {skm.average_precision_score(is_real, score):.4f})")
    roc.plot([0, 1], [0, 1], "k:", lw=1)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (REAL positive)")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (REAL positive)")
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is roc else "lower left")
    return _save(fig, path)


def training_curves_png(history: list[dict[str, float]], path: Path) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, style in (("train", "-o"), ("val", "-s")):
        loss.plot(epochs, [h[f"{key}_loss"] for h in history], style, ms=3, label=key)
        acc.plot(epochs, [h[f"{key}_acc"] for h in history], style, ms=3, label=key)
    loss.set(xlabel="epoch", ylabel="loss (BCE)", title="Loss")
    acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (loss, acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def reliability_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """Reliability diagram (mean P(FAKE) vs share of FAKE, per bin) over a histogram of P(FAKE)."""
    from aivsreal.evaluate.calibration import expected_calibration_error, reliability_bins

    fig, (rel, hist) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=(3, 1.3), sharex=True)
    rel.plot([0, 1], [0, 1], "k:", lw=1, label="perfectly calibrated")
    for name, (labels, p_fake) in curves.items():
        mean_p, frac_fake, _ = reliability_bins(labels, p_fake)
        ece = expected_calibration_error(labels, p_fake)
        rel.plot(mean_p, frac_fake, "-o", ms=3, label=f"{name} (ECE {ece:.4f})")
        hist.hist(p_fake, bins=30, range=(0, 1), histtype="step", lw=1.2, label=name)
    rel.set(ylabel="share of FAKE images", title="Reliability (test split)")
    hist.set(xlabel="predicted P(FAKE)", ylabel="images", yscale="log")
    for ax in (rel, hist):
        ax.grid(alpha=0.3)
    rel.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def robustness_png(rows: list, path: Path) -> Path:
    """Accuracy against perturbation strength, one panel per kind, starting from the clean images."""
    from aivsreal.evaluate.robustness import CLEAN_STRENGTH

    clean = rows[0]
    families = list(dict.fromkeys(r.family for r in rows[1:]))
    fig, axes = plt.subplots(1, len(families), figsize=(2.6 * len(families), 3), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        pts = [(CLEAN_STRENGTH.get(family, 0), clean.accuracy)]
        pts += [(r.strength, r.accuracy) for r in rows[1:] if r.family == family]
        pts.sort(key=lambda t: t[0], reverse=family in CLEAN_STRENGTH)  # from clean towards harsher
        xs, ys = zip(*pts, strict=True)
        ax.plot(range(len(xs)), ys, "-o", ms=4)
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_title(family, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    return _save(fig, path)
