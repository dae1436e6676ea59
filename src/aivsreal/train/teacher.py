"""Distillation: a teacher's P(FAKE) per training image, read from a predictions CSV (`--teacher`).

A small student trained on a stronger model's soft outputs as well as on the labels often beats
the same student trained on labels alone (Hinton et al. 2015): the teacher says which images are
hard, and how hard. The teacher is any model whose P(FAKE) on the training images was written to a
CSV with `path` and `p_fake` columns (as `aivsreal predict --csv` and `predictions_test.csv` write
them; benchmarks/cifake_ensemble.py --teacher-out writes one for an ensemble). The teacher is
scored once, before training, on the images as they are; the student then sees them flipped and
shifted: for flips and 2-pixel shifts the teacher's answer should not change.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from aivsreal.errors import AivsrealError

TEACHER_SHARE = 0.5  # target = (1 - share) * smoothed label + share * teacher's P(FAKE)


def teacher_targets(path: str | Path, names: list[str]) -> np.ndarray:
    """The teacher's P(FAKE) for each of `names` (the training images, in order)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"path", "p_fake"} <= set(reader.fieldnames or ()):
                raise AivsrealError(f"--teacher {path}: needs 'path' and 'p_fake' columns "
                                    f"(got {', '.join(reader.fieldnames or ()) or 'none'})")
            given = {row["path"]: row["p_fake"] for row in reader}
    except OSError as e:
        raise AivsrealError(f"--teacher {path}: cannot read it ({e.strerror or e})") from None
    missing = [n for n in names if n not in given]
    if missing:
        raise AivsrealError(f"--teacher {path}: no p_fake for {len(missing)} of the {len(names)} training images "
                            f"(first: {missing[0]}); score the same training split with the teacher")
    out = np.empty(len(names), np.float32)
    for i, name in enumerate(names):
        try:
            p = float(given[name])
        except ValueError:
            p = math.nan
        if not 0.0 <= p <= 1.0:
            raise AivsrealError(f"--teacher {path}: p_fake of {name} is {given[name]!r}, not a probability in [0, 1]")
        out[i] = p
    return out
