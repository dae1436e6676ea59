"""One epoch's training batches: slices of the in-memory array, or views decoded from disk by worker
processes for splits left there (`--crop N`, see data/stream.py).

A view's randomness comes from (seed, epoch, image), not from the worker that draws it: a resumed
run, and any number of workers, trains on the same views.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from aivsreal.data.cache import DecodedSplit
from aivsreal.data.crops import random_crop
from aivsreal.data.images import BadImageError
from aivsreal.data.sources import ImageRef
from aivsreal.data.stream import CentreCrops, decode_at
from aivsreal.models import pixels_to, to_tensor
from aivsreal.train.augment import CodecChain, degrade

if TYPE_CHECKING:
    from aivsreal.train.loop import TrainConfig

PREFETCH = 2  # batches each worker decodes ahead


class TrainViews(Dataset):
    """One random native training view per (image, epoch) key, the same for REAL and FAKE."""

    def __init__(self, refs: list[ImageRef], crop: int, chain: CodecChain | None, seed: int):
        self.refs, self.crop, self.chain, self.seed = refs, crop, chain, seed

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        index, epoch = key
        rng = np.random.default_rng((self.seed, epoch, index))
        pixels = decode_at(self.refs[index])
        view = self.chain.view(pixels, self.crop, rng) if self.chain else random_crop(pixels, self.crop, rng)
        return torch.from_numpy(np.ascontiguousarray(view))


def training_views(images: CentreCrops, order: torch.Tensor, batch_size: int, epoch: int,
                   chain: CodecChain | None, seed: int, workers: int) -> Iterator[torch.Tensor]:
    """(B, 3, crop, crop) uint8 batches of training views, in `order`, full batches only."""
    n = len(order) // batch_size * batch_size
    batches = [[(i, epoch) for i in order[s : s + batch_size].tolist()] for s in range(0, n, batch_size)]
    loader = DataLoader(TrainViews(images.refs, images.crop, chain, seed), batch_sampler=batches,
                        num_workers=workers, prefetch_factor=PREFETCH if workers else None)
    try:
        for x in loader:
            yield x.permute(0, 3, 1, 2)
    except BadImageError as e:  # from a worker, the message carries its traceback: keep the last line
        reason = str(e).strip()
        if "Traceback" in reason:
            reason = reason.splitlines()[-1].partition(": ")[2]
        raise BadImageError(f"{reason}; remove or replace that file, then run again with --resume") from None


def epoch_batches(data: DecodedSplit, x_all: torch.Tensor | None, order: torch.Tensor, cfg: TrainConfig,
                  gen: torch.Generator, epoch: int, device: torch.device
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's (pixels on the device, their row indices), in `order`: slices of the in-memory
    array, or views decoded from disk by worker processes (--crop runs)."""
    starts = range(0, len(order), cfg.batch_size)
    if x_all is None:
        chain = CodecChain() if cfg.codec_chain else None
        views = training_views(data.images, order, cfg.batch_size, epoch, chain, cfg.seed, cfg.workers)
        for s, x in zip(starts, views, strict=True):
            yield pixels_to(x, device), order[s : s + cfg.batch_size]
        return
    for s in starts:
        idx = order[s : s + cfg.batch_size]
        if cfg.degrade > 0:
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))  # resumable
            yield pixels_to(to_tensor(degrade(data.images[idx.numpy()], cfg.degrade, rng)), device), idx
        else:
            yield pixels_to(x_all[idx], device), idx
