"""Splits too large for memory: images decoded when they are used (`aivsreal train --crop N`).

The in-memory path (data/cache.py) decodes every image once at the model's size: right for
CIFAKE's 32 px, impossible for photos at their own resolution (3,600 images at 2,000 px are
36 GB of pixels). Here a split holds file references only:
- training views are random native crops (through the codec chain), decoded by DataLoader worker
  processes a few batches ahead (train/batches.py);
- validation during training reads one deterministic centre crop per image, a batch at a time
  (`CentreCrops`); the final scores read every view `predict` would (`CentreCrops.views`).

Memory is bounded whatever the dataset size: each worker holds one decoded image (at most
MAX_PIXELS, 192 MB) and the loader at most `workers x PREFETCH` batches of crops; a test
measures it. An image smaller than the crop on a side is reflect-padded on that side, never
scaled up (`padded_note` says how many).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol, TypeVar

import numpy as np

from aivsreal.data.crops import Views, centre_crop, decode_views
from aivsreal.data.images import BadImageError, decode_native, stored_size
from aivsreal.data.sources import ImageRef, Split, read_ref

T = TypeVar("T")


class CentreCrops:
    """A split's evaluation pixels, decoded on demand: indexing gives one centre crop per image,
    (n, crop, crop, 3) uint8 like the in-memory arrays, so training's validation and the domain check
    read either the same way; `views` gives what `predict` reads, for the scores a report states."""

    def __init__(self, refs: list[ImageRef], crop: int):
        self.refs, self.crop = list(refs), crop

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.refs), self.crop, self.crop, 3

    def subset(self, index: np.ndarray) -> CentreCrops:
        return CentreCrops([self.refs[i] for i in index], self.crop)

    def __getitem__(self, index) -> np.ndarray:
        picks = np.arange(len(self.refs))[index]
        if picks.ndim == 0:
            return self._one(int(picks))
        out = np.empty((len(picks), self.crop, self.crop, 3), np.uint8)
        for k, i in enumerate(picks):
            out[k] = self._one(int(i))
        return out

    def _one(self, i: int) -> np.ndarray:
        return centre_crop(decode_at(self.refs[i]), self.crop)

    def views(self, i: int, policy: ViewPolicy) -> Views:
        """Every view a native-crop model's policy (its ModelConfig) cuts from image `i`, and where they lie:
        what `predict` reads from the same file (data/crops.decode_views), so that a report's figures and
        pictures are predict's."""
        return decode_at(self.refs[i], lambda data: decode_views(
            data, self.crop, self.crop, policy.max_tiles, rescale=policy.rescale, draft=policy.draft,
            reencode=policy.reencode))


class ViewPolicy(Protocol):
    """How a native-crop model cuts its views (models.network.ModelConfig has these)."""

    @property
    def max_tiles(self) -> int: ...
    @property
    def rescale(self) -> int | None: ...
    @property
    def draft(self) -> bool: ...
    @property
    def reencode(self) -> int | None: ...


def decode_at(ref: ImageRef, decode: Callable[[bytes], T] = decode_native) -> T:
    """`decode` (native pixels by default) of a file a split refers to, its name in any error."""
    try:
        return decode(read_ref(ref))
    except BadImageError as e:
        raise BadImageError(str(e) if ref.display in str(e) else f"{ref.display}: {e}") from None


def select(images: np.ndarray | CentreCrops, index: np.ndarray) -> np.ndarray | CentreCrops:
    """Rows of a split's images, staying lazy when they are."""
    return images.subset(index) if isinstance(images, CentreCrops) else images[index]


def padded_note(sizes: np.ndarray, crop: int) -> str | None:
    """How many images are smaller than the crop on a side (they are reflect-padded, not scaled)."""
    small = int(np.sum(sizes.min(axis=1) < crop)) if len(sizes) else 0
    return f"{small} image(s) smaller than {crop} px on a side: reflect-padded, never scaled up" if small else None


def scan(split: Split) -> tuple[Split, np.ndarray, list[bytes], list[str]]:
    """Read each file once, without decoding it: the images whose header is readable, their stored
    (width, height), a digest of their bytes (for duplicates and train/test leaks), and the skipped."""
    keep, sizes, digests, skipped = [], [], [], []
    for i, ref in enumerate(split.refs):
        try:
            data = read_ref(ref)
        except (BadImageError, OSError) as e:
            skipped.append(f"{ref.display} ({e})")
            continue
        size = stored_size(data)
        if size is None:
            skipped.append(f"{ref.display} (not a readable image)")
            continue
        keep.append(i)
        sizes.append(size)
        digests.append(hashlib.blake2b(data, digest_size=16).digest())
    return split.subset(np.array(keep, np.int64)), np.array(sizes, np.int64).reshape(-1, 2), digests, skipped
