"""Hold out whole sources: folds for measuring a detector on images from places it never saw.

A random split of a real-world set puts images of the same source (one camera roll, one
generator's gallery, one repository's crops) on both sides, and a detector then gets credit for
recognising the source instead of the traces. Here each fold holds out complete sources, and every
fold holds out both REAL and FAKE sources, so every test score is on unseen sources of each class.
"""

from __future__ import annotations

import numpy as np


def source_folds(sources: list[str], labels: np.ndarray, k: int = 4) -> np.ndarray:
    """Fold number (0..k-1) per image; all images of a source share one fold, whatever their class.

    A source counts for the class most of its images have. Sources are dealt per class, largest
    first, each to the fold with the fewest images of that class so far, so every fold holds out
    REAL and FAKE sources as long as each class has at least k sources (else a ValueError says how
    many it has). Deterministic.
    """
    labels = np.asarray(labels)
    names = np.asarray(sources)
    fold = np.full(len(names), -1)
    sizes = {s: int(np.sum(names == s)) for s in sorted(set(names))}
    majority = {s: int(np.mean(labels[names == s]) > 0.5) for s in sizes}
    for cls in (0, 1):
        group = sorted((s for s in sizes if majority[s] == cls), key=lambda s: (-sizes[s], s))
        if len(group) < k:
            raise ValueError(f"{len(group)} mostly-{'FAKE' if cls else 'REAL'} source(s): need at least {k} for "
                             f"{k} folds that each hold out both classes")
        load = np.zeros(k)
        for source in group:
            f = int(np.argmin(load))
            load[f] += sizes[source]
            fold[names == source] = f
    return fold
