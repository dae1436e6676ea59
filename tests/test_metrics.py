import numpy as np
import pytest

from aivsreal.data.splits import first_occurrences, leaked_mask, pixel_hashes
from aivsreal.evaluate.metrics import binary_metrics


def test_hand_made_case_with_real_as_positive():
    # 4 REAL (label 0), 4 FAKE (label 1). Predicted FAKE when p >= 0.5.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p_fake = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.4, 0.6])
    m = binary_metrics(labels, p_fake)
    # REAL predicted for idx 0,1,2 (true REAL) and 6 (true FAKE): TP=3, FP=1, FN=1 (idx 3).
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4) and m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(0.75)
    assert m["positive_class"] == "REAL"
    # ROC-AUC by counting pairs (REAL, FAKE) where REAL has the lower P(fake): 12 of 16.
    assert m["roc_auc"] == pytest.approx(12 / 16)
    assert m["per_class"]["FAKE"] == {"count": 4, "predicted": 4, "precision": 0.75, "recall": 0.75}


def test_threshold_moves_predictions():
    labels = np.array([0, 1])
    assert binary_metrics(labels, np.array([0.3, 0.4]), threshold=0.35)["accuracy"] == 1.0
    assert binary_metrics(labels, np.array([0.3, 0.4]), threshold=0.5)["accuracy"] == 0.5


def test_duplicates_and_leaks_by_pixels():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 255, (5, 4, 4, 3), dtype=np.uint8)
    train[3] = train[1]
    assert first_occurrences(pixel_hashes(train)).tolist() == [0, 1, 2, 4]
    test = np.stack([train[2], rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), train[4]])
    assert leaked_mask(pixel_hashes(test), pixel_hashes(train)).tolist() == [True, False, True]
