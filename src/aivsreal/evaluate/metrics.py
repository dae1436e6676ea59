"""Binary detection metrics, stated with REAL as the positive class, as the seed reported them.

Labels are 1 = FAKE and scores are P(FAKE); for the REAL-positive figures we flip both.
Per-class precision/recall are reported too, so FAKE-positive readers are served as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from aivsreal.evaluate.calibration import expected_calibration_error

POSITIVE = "REAL"


def binary_metrics(labels: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    labels = np.asarray(labels).astype(int)
    p_fake = np.asarray(p_fake, dtype=np.float64)
    pred = (p_fake >= threshold).astype(int)
    is_real, pred_real, score_real = labels == 0, pred == 0, 1.0 - p_fake
    cm = skm.confusion_matrix(labels, pred, labels=[0, 1])  # rows true REAL/FAKE, cols predicted
    both_classes = len(np.unique(labels)) == 2
    per_class = {}
    for cls, name in enumerate(("REAL", "FAKE")):
        tp = int(cm[cls, cls])
        per_class[name] = {
            "count": int(cm[cls].sum()),
            "predicted": int(cm[:, cls].sum()),
            "precision": _ratio(tp, cm[:, cls].sum()),
            "recall": _ratio(tp, cm[cls].sum()),
        }
    return {
        "n": int(len(labels)),
        "positive_class": POSITIVE,
        "threshold": float(threshold),
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "precision": float(skm.precision_score(is_real, pred_real, zero_division=0)),
        "recall": float(skm.recall_score(is_real, pred_real, zero_division=0)),
        "f1": float(skm.f1_score(is_real, pred_real, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(is_real, score_real)) if both_classes else float("nan"),
        "average_precision": float(skm.average_precision_score(is_real, score_real))
        if both_classes else float("nan"),
        "log_loss": float(skm.log_loss(labels, np.clip(p_fake, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "ece": expected_calibration_error(labels, p_fake),
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
    }


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0
