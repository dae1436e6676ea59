"""From a data path to the decoded train / val / test arrays a run uses.

The validation split is carved from train with a fixed seed; test is only scored at the
end. Exact duplicate images inside train are dropped (CIFAKE has 920 pairs) so none can
straddle train and val, and test images identical to a train image are flagged so the
test score can be reported with and without them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from aivsreal.data.cache import DecodedSplit, check_skipped, default_cache_dir, load_split
from aivsreal.data.download import default_data_path
from aivsreal.data.sources import (
    Split,
    balanced_indices,
    balanced_limit,
    find_splits,
    stored_sizes,
    stratified_split,
)
from aivsreal.data.stream import CentreCrops, padded_note, scan, select

log = logging.getLogger(__name__)
HELD_OUT_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class SplitRecipe:
    """How a run drew its train / val / test: a saved model keeps it, and every verb that scores
    the model on its data rebuilds the splits from it, so "test" is never the model's own train."""

    val_fraction: float = 0.1
    seed: int = 0
    limit: int | None = None  # at most this many images per split (balanced)
    held_out_fraction: float = HELD_OUT_TEST_FRACTION  # test share carved when the data has no test split

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitRecipe:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class RunData:
    path: str
    train: DecodedSplit
    val: DecodedSplit
    test: DecodedSplit
    leaked: np.ndarray  # test images identical to a train image
    recipe: SplitRecipe
    fingerprint: str  # digest of the file list, sizes and labels the splits were drawn from
    notes: list[str] = field(default_factory=list)
    train_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # stored (w, h), sampled

    def describe(self) -> dict:
        return {"path": self.path, "train": len(self.train), "val": len(self.val),
                "test": len(self.test), "test_identical_to_train": int(self.leaked.sum()),
                **asdict(self.recipe), "fingerprint": self.fingerprint, "notes": self.notes}


def take(d: DecodedSplit, index: np.ndarray) -> DecodedSplit:
    return DecodedSplit(select(d.images, index), d.labels[index], [d.names[i] for i in index], d.skipped)


def fingerprint(splits: dict[str, Split]) -> str:
    h = hashlib.sha256()
    for name in sorted(splits):
        for ref, label in zip(splits[name].refs, splits[name].labels.tolist(), strict=True):
            h.update(f"{name}|{ref.name}|{ref.size}|{label}\n".encode())
    return h.hexdigest()[:16]


def prepare(path: str | Path, image_size: int, cache_dir: Path | None, recipe: SplitRecipe = SplitRecipe(),
            strict: bool = False, crop: int | None = None) -> RunData:
    """The run's splits: decoded in memory at `image_size`, or, with `crop`, read from disk as they
    are used (data/stream.py); duplicates are found by pixels, or by file bytes when not decoded."""
    splits = find_splits(path)
    digest = fingerprint(splits)
    seed, limit, held_out = recipe.seed, recipe.limit, recipe.held_out_fraction
    notes: list[str] = []
    if "all" in splits:  # the user's own REAL/ FAKE/ folders: hold out a test split
        everything = splits["all"]
        keep, held = stratified_split(everything.labels, held_out, seed)
        splits = {"train": everything.subset(keep), "test": everything.subset(held)}
        notes.append(f"no train/test layout: {held_out:.0%} of the images were held out as test (seed {seed})")
    elif "test" not in splits:
        keep, held = stratified_split(splits["train"].labels, held_out, seed)
        splits = {"train": splits["train"].subset(keep), "test": splits["train"].subset(held)}
        notes.append(f"no test split: {held_out:.0%} of train held out as test (seed {seed})")
    # Test is carved before --limit subsamples, so any limit draws test from the same held-out images.
    train_refs: Split = balanced_limit(splits["train"], limit, seed)
    test_refs: Split = balanced_limit(splits["test"], limit, seed)
    if limit:
        notes.append(f"--limit {limit}: a balanced random subset of at most {limit} images per split")

    if crop:  # the scan read every header already: the domain check gets all the train sizes
        (train, train_hashes, train_sizes), (test, test_hashes, _) = (on_disk(s, crop, strict)
                                                                       for s in (train_refs, test_refs))
        notes += [n for n in [padded_note(train_sizes, crop)] if n]
    else:
        train, test = (load_split(s, image_size, cache_dir, strict) for s in (train_refs, test_refs))
        train_hashes, test_hashes = pixel_hashes(train.images), pixel_hashes(test.images)
        train_sizes = stored_sizes(train_refs, seed=seed)
    for name, d in (("train", train), ("test", test)):
        if d.skipped:
            notes.append(f"{len(d.skipped)} unreadable {name} image(s) skipped, e.g. {d.skipped[0]}")
    unique = first_occurrences(train_hashes)
    if len(unique) < len(train):
        notes.append(f"{len(train) - len(unique)} exact duplicate image(s) dropped from train")
        train = take(train, unique)
    leaked = leaked_mask(test_hashes, train_hashes)
    if leaked.any():
        notes.append(f"{int(leaked.sum())} test image(s) are identical to a train image; "
                     "test is also reported without them")
    fit, held = stratified_split(train.labels, recipe.val_fraction, seed)
    return RunData(str(path), take(train, fit), take(train, held), test, leaked, recipe, digest, notes,
                   train_sizes)


def on_disk(split: Split, crop: int, strict: bool) -> tuple[DecodedSplit, list[bytes], np.ndarray]:
    """A split left on disk (its images are lazy centre crops), its byte digests and stored sizes."""
    kept, sizes, digests, skipped = scan(split)
    check_skipped(skipped, strict)
    return DecodedSplit(CentreCrops(kept.refs, crop), kept.labels, [r.display for r in kept.refs], skipped), \
        digests, sizes


@dataclass
class DataOptions:
    """Where the data is and how to read it (the CLI's data options), plus the split recipe."""

    path: str | None = None  # None: $AIVSREAL_DATA, a previous download, or download now
    recipe: SplitRecipe = SplitRecipe()
    cache_dir: str | None = None
    no_cache: bool = False
    strict: bool = False
    score_limit: int | None = None  # subsample the rebuilt splits (a saved model scored on fewer images)

    def for_model(self, recipe: SplitRecipe | None) -> DataOptions:
        """The options that rebuild a saved model's own splits: the only way a verb that scores a saved
        model on data gets its splits. A --limit given now only subsamples those splits."""
        if recipe is None:
            return self
        return replace(self, recipe=recipe, score_limit=self.recipe.limit)

    def load(self, image_size: int, crop: int | None = None) -> RunData:
        path = Path(self.path) if self.path else default_data_path()
        cache = None if self.no_cache else Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        data = prepare(path, image_size, cache, self.recipe, self.strict, crop)
        if self.score_limit is None:
            return data
        train, val, test = (balanced_indices(d.labels, self.score_limit, self.recipe.seed)
                            for d in (data.train, data.val, data.test))
        return replace(data, train=take(data.train, train), val=take(data.val, val), test=take(data.test, test),
                       leaked=data.leaked[test],
                       notes=[*data.notes, f"--limit {self.score_limit}: scored on a balanced subset of each split"])


def pixel_hashes(images: np.ndarray) -> list[bytes]:
    """One digest per image, to find images that are exactly identical after decoding."""
    return [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in images]


def leaked_mask(test_hashes: list[bytes], train_hashes: list[bytes]) -> np.ndarray:
    """True for each test image identical to some training image (CIFAKE has 378)."""
    seen = set(train_hashes)
    return np.array([h in seen for h in test_hashes], dtype=bool)


def first_occurrences(hashes: list[bytes]) -> np.ndarray:
    """Indices that keep the first of each group of identical images (CIFAKE train has 920 pairs)."""
    seen: set[bytes] = set()
    keep = []
    for i, h in enumerate(hashes):
        if h not in seen:
            seen.add(h)
            keep.append(i)
    return np.array(keep, dtype=np.int64)

