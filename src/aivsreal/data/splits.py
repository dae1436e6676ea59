"""From a data path to the decoded train / val / test arrays a run uses.

The validation split is carved from train with a fixed seed; test is only scored at the
end. Exact duplicate images inside train are dropped (CIFAKE has 920 pairs) so none can
straddle train and val, and test images identical to a train image are flagged so the
test score can be reported with and without them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aivsreal.data.cache import DecodedSplit, load_split
from aivsreal.data.sources import Split, balanced_limit, find_splits, stratified_split
from aivsreal.evaluate.metrics import first_occurrences, leaked_mask, pixel_hashes

log = logging.getLogger(__name__)
HELD_OUT_TEST_FRACTION = 0.2


@dataclass
class RunData:
    path: str
    train: DecodedSplit
    val: DecodedSplit
    test: DecodedSplit
    leaked: np.ndarray  # test images identical to a train image
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"path": self.path, "train": len(self.train), "val": len(self.val),
                "test": len(self.test), "test_identical_to_train": int(self.leaked.sum()),
                "notes": self.notes}


def _take(d: DecodedSplit, index: np.ndarray) -> DecodedSplit:
    return DecodedSplit(d.images[index], d.labels[index], [d.names[i] for i in index], d.skipped)


def prepare(
    path: str | Path,
    image_size: int,
    cache_dir: Path | None,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    strict: bool = False,
) -> RunData:
    splits = find_splits(path)
    notes: list[str] = []
    if "all" in splits:  # the user's own REAL/ FAKE/ folders: hold out a test split
        everything = splits["all"]
        keep, held = stratified_split(everything.labels, HELD_OUT_TEST_FRACTION, seed)
        splits = {"train": everything.subset(keep), "test": everything.subset(held)}
        notes.append(f"no train/test layout: {HELD_OUT_TEST_FRACTION:.0%} of the images were held out "
                     f"as test (seed {seed})")
    train_refs: Split = balanced_limit(splits["train"], limit, seed)
    test_refs: Split | None = splits.get("test")
    if test_refs is None:
        keep, held = stratified_split(train_refs.labels, HELD_OUT_TEST_FRACTION, seed)
        train_refs, test_refs = train_refs.subset(keep), train_refs.subset(held)
        notes.append(f"no test split: {HELD_OUT_TEST_FRACTION:.0%} of train held out as test")
    test_refs = balanced_limit(test_refs, limit, seed)
    if limit:
        notes.append(f"--limit {limit}: a balanced random subset of at most {limit} images per split")

    train = load_split(train_refs, image_size, cache_dir, strict)
    test = load_split(test_refs, image_size, cache_dir, strict)
    for name, d in (("train", train), ("test", test)):
        if d.skipped:
            notes.append(f"{len(d.skipped)} unreadable {name} image(s) skipped, e.g. {d.skipped[0]}")
    train_hashes = pixel_hashes(train.images)
    unique = first_occurrences(train_hashes)
    if len(unique) < len(train):
        notes.append(f"{len(train) - len(unique)} exact duplicate image(s) dropped from train")
        train = _take(train, unique)
    leaked = leaked_mask(pixel_hashes(test.images), train_hashes)
    if leaked.any():
        notes.append(f"{int(leaked.sum())} test image(s) are identical to a train image; "
                     "test is also reported without them")
    fit, held = stratified_split(train.labels, val_fraction, seed)
    return RunData(str(path), _take(train, fit), _take(train, held), test, leaked, notes)
