"""Decode a split once, in parallel, into a uint8 array cached on disk.

Decoding 120k JPEGs takes a minute on two cores; loading the cached array takes a second.
The cache key covers every file's name, size and CRC/mtime plus the decode size, so any
change to the data gives a new key. Files are written to a temporary name and renamed, so a
crash never leaves a half-written cache under a real name; a damaged one is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aivsreal.data.images import BadImageError, decode_image
from aivsreal.data.sources import ImageRef, Split, read_ref
from aivsreal.data.stream import CentreCrops
from aivsreal.errors import AivsrealError
from aivsreal.safe_io import atomic_write

log = logging.getLogger(__name__)
CACHE_FORMAT = 2  # 2: a content digest binds each file to its split
CHUNK = 2000


@dataclass
class DecodedSplit:
    images: np.ndarray | CentreCrops  # (N, size, size, 3) uint8; crops read on demand for --crop runs
    labels: np.ndarray  # (N,) int64, 1 = FAKE
    names: list[str]  # where each image came from, for reports and error messages
    skipped: list[str]  # unreadable files that were left out

    def __len__(self) -> int:
        return len(self.labels)


def default_cache_dir() -> Path:
    env = os.environ.get("AIVSREAL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aivsreal"


def cache_key(split: Split, size: int) -> str:
    h = hashlib.sha256(f"aivsreal-decode-v{CACHE_FORMAT}|{size}".encode())
    for ref, label in zip(split.refs, split.labels.tolist(), strict=True):
        h.update(f"{ref.container}|{ref.name}|{ref.size}|{ref.stamp}|{label}\n".encode())
    return h.hexdigest()[:40]


def load_split(
    split: Split,
    size: int,
    cache_dir: Path | None = None,
    strict: bool = False,
    workers: int | None = None,
) -> DecodedSplit:
    """The decoded split, from the cache when it is there and sound, else decoded and cached.

    With `cache_dir=None` nothing is written (used for one-off prediction batches).
    """
    path = None
    if cache_dir is not None:
        key = cache_key(split, size)
        path = Path(cache_dir) / f"{key}.npz"
        cached = _read_cache(path, size, key)
        if cached is not None:
            check_skipped(cached.skipped, strict)
            return cached
    decoded = _decode_all(split, size, workers)
    check_skipped(decoded.skipped, strict)
    if path is not None:
        _write_cache(path, decoded, key)
    return decoded


def check_skipped(skipped: list[str], strict: bool) -> None:
    if not skipped:
        return
    if strict:
        raise AivsrealError(f"{len(skipped)} unreadable image(s), first: {skipped[0]} (--strict)")
    log.warning("skipped %d unreadable image(s), first: %s", len(skipped), skipped[0])


def _decode_all(split: Split, size: int, workers: int | None) -> DecodedSplit:
    n = len(split)
    chunks = [split.refs[i : i + CHUNK] for i in range(0, n, CHUNK)]
    workers = workers or os.cpu_count() or 1
    if len(chunks) <= 1 or workers <= 1:
        results = [_decode_chunk(c, size) for c in chunks]
    else:
        # fork where we can (as torch's DataLoader does): the workers only run PIL and numpy,
        # and spawn would re-import the caller's main script, breaking unguarded user scripts.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(_progress(pool.map(_decode_chunk, chunks, [size] * len(chunks)), n))
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    skipped: list[str] = []
    start = 0
    for chunk, (arr, good, bad) in zip(chunks, results, strict=True):
        images[start : start + len(chunk)][good] = arr
        ok[start : start + len(chunk)] = good
        skipped.extend(bad)
        start += len(chunk)
    keep = np.flatnonzero(ok)
    return DecodedSplit(
        images=images[keep] if len(keep) < n else images,
        labels=split.labels[keep],
        names=[split.refs[i].display for i in keep],
        skipped=skipped,
    )


def _progress(results, total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, desc="decode", unit="img", disable=not sys.stderr.isatty())
    for r in results:
        bar.update(len(r[1]))
        yield r
    bar.close()


def _decode_chunk(refs: list[ImageRef], size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    arrays, good, bad = [], np.zeros(len(refs), dtype=bool), []
    for i, ref in enumerate(refs):
        try:
            arrays.append(decode_image(read_ref(ref), size))
            good[i] = True
        except BadImageError as e:
            bad.append(f"{ref.display} ({e})" if ref.display not in str(e) else str(e))
        except Exception as e:  # noqa: BLE001 - one unreadable member is that member's problem (zip errors...)
            bad.append(f"{ref.display} (cannot read: {type(e).__name__})")
    arr = np.stack(arrays) if arrays else np.empty((0, size, size, 3), np.uint8)
    return arr, good, bad


def content_digest(split_key: str, labels: np.ndarray, names: list[str], images: np.ndarray) -> str:
    """Binds a cache file to its split: a cache of another split renamed to this key, or one whose
    labels were flipped, does not match and is rebuilt."""
    h = hashlib.blake2b(split_key.encode(), digest_size=20)
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    h.update("\n".join(names).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def _read_cache(path: Path, size: int, key: str) -> DecodedSplit | None:
    if not path.exists():
        return None
    try:
        if not path.is_file():
            raise IsADirectoryError("not a file")
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            images, labels, names = z["images"], z["labels"], z["names"].tolist()
        if meta["format"] != CACHE_FORMAT or images.shape[1:] != (size, size, 3) \
                or not len(images) == len(labels) == len(names):
            raise ValueError("shape mismatch")
        if meta.get("digest") != content_digest(key, labels, names, images):
            raise ValueError("it does not belong to this data")
        return DecodedSplit(images, labels, names, meta["skipped"])
    except Exception as e:  # any damage at all (truncated, foreign file, another split's): rebuild it
        log.warning("decode cache %s is damaged or not this data's (%s: %s); rebuilding it", path, type(e).__name__, e)
        if path.is_file():
            path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, d: DecodedSplit, key: str) -> None:
    meta = json.dumps({"format": CACHE_FORMAT, "skipped": d.skipped,
                       "digest": content_digest(key, d.labels, d.names, d.images)})
    try:
        atomic_write(path, lambda f: np.savez(f, images=d.images, labels=d.labels, names=np.array(d.names),
                                              meta=np.array(meta)))
    except OSError as e:  # a read-only or full cache folder costs speed, never the run
        log.warning("decode cache disabled: cannot write %s (%s)", path, e.strerror or e)
