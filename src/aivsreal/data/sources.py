"""Find REAL/FAKE images in a folder or zip, whatever the nesting, and split them.

CIFAKE ships as `train/{REAL,FAKE}` and `test/{REAL,FAKE}`, as a folder, one Kaggle zip, or
(our offline copy) `train.zip` + `test.zip`. Any folder of `REAL/` and `FAKE/` sub-folders works
too: without a test split we carve one, with a fixed seed, so test is still never trained on.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from aivsreal.data.images import BadImageError, is_image_name, read_limited, stored_size
from aivsreal.data.inputs import image_members, open_zip, read_member
from aivsreal.errors import AivsrealError

log = logging.getLogger(__name__)
CLASS_NAMES = ("REAL", "FAKE")  # label 0 = REAL, label 1 = FAKE; the model outputs logit P(FAKE)
SPLIT_ALIASES = {"train": "train", "training": "train", "test": "test", "testing": "test"}


@dataclass(frozen=True)
class ImageRef:
    """Where one image's bytes live: a file on disk, or a member of a zip."""

    container: str  # the zip file, or the root folder
    name: str  # member name in the zip, or path relative to the root folder
    size: int
    stamp: int  # CRC-32 for zip members, mtime in ns for files
    in_zip: bool = False

    def read_bytes(self, zf: zipfile.ZipFile | None = None) -> bytes:
        """The bytes, refusing (BadImageError) a member or file over MAX_FILE_BYTES before reading it,
        and anything on disk that is not a regular file."""
        if zf is None:
            return read_limited(Path(self.container) / self.name)
        return read_member(zf, self.name, self.display)

    @property
    def display(self) -> str:
        """A zip member as `predict` writes it (`archive.zip!member`, data/inputs.py), a file as its path."""
        return f"{self.container}!{self.name}" if self.in_zip else str(Path(self.container) / self.name)


def read_ref(ref: ImageRef) -> bytes:
    """A ref's bytes, its zip opened once per process (`open_zip`)."""
    return ref.read_bytes(open_zip(ref.container) if ref.in_zip else None)


@dataclass
class Split:
    refs: list[ImageRef]
    labels: np.ndarray  # int64, 1 = FAKE

    def __len__(self) -> int:
        return len(self.refs)

    def subset(self, index: np.ndarray) -> Split:
        return Split([self.refs[i] for i in index], self.labels[index])


def stored_sizes(split: Split, n: int = 2000, seed: int = 0) -> np.ndarray:
    """(width, height) as stored, from the headers of up to `n` random images of a split: what the
    domain check learns the training geometry from. Unreadable headers are left out."""
    picks = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    sizes: list[tuple[int, int]] = []
    zips: dict[str, zipfile.ZipFile] = {}
    try:
        for i in picks:
            ref = split.refs[i]
            if ref.in_zip and ref.container not in zips:
                zips[ref.container] = zipfile.ZipFile(ref.container)  # once: its directory has 100k entries
            zf = zips[ref.container] if ref.in_zip else None
            try:
                size = stored_size(ref.read_bytes(zf))
            except (BadImageError, OSError, zipfile.BadZipFile):
                size = None
            if size:
                sizes.append(size)
    finally:
        for zf in zips.values():
            zf.close()
    return np.array(sizes, dtype=np.int64).reshape(-1, 2)


def find_splits(root: str | Path) -> dict[str, Split]:
    """Index every image under `root` by split and class; raise one clear error on a bad layout."""
    root = Path(root).expanduser()
    if not root.exists():
        raise AivsrealError(f"data path not found: {root}")
    refs = _list_images(root)
    grouped: dict[str, dict[str, list[ImageRef]]] = {}
    for ref in refs:
        found = _split_and_class(ref.name)
        if found is not None:
            split, cls = found
            grouped.setdefault(split, {"REAL": [], "FAKE": []})[cls].append(ref)
    if not grouped:
        raise AivsrealError(
            f"{root}: no REAL/ and FAKE/ image folders found "
            "(expected train/REAL, train/FAKE, test/REAL, test/FAKE, or just REAL/ and FAKE/)"
        )
    if "all" in grouped and len(grouped) > 1:
        del grouped["all"]  # loose REAL/FAKE folders beside a proper train/test layout
    splits = {}
    for split, by_class in sorted(grouped.items()):
        for cls in CLASS_NAMES:
            if not by_class[cls]:
                where = cls if split == "all" else f"{split}/{cls}"
                raise AivsrealError(f"{root}: {where} has no images")
        ordered = sorted(by_class["REAL"], key=_ref_key) + sorted(by_class["FAKE"], key=_ref_key)
        labels = np.array([0] * len(by_class["REAL"]) + [1] * len(by_class["FAKE"]), dtype=np.int64)
        splits[split] = Split(ordered, labels)
    if "train" not in splits and "all" not in splits:
        raise AivsrealError(f"{root}: found {', '.join(splits)} but no train/REAL and train/FAKE")
    return splits


def _ref_key(ref: ImageRef) -> tuple[str, str]:
    return ref.container, ref.name


def _split_and_class(name: str) -> tuple[str, str] | None:
    parts = PurePosixPath(name).parts
    if len(parts) < 2 or parts[-2].upper() not in CLASS_NAMES:
        return None
    cls = parts[-2].upper()
    split = SPLIT_ALIASES.get(parts[-3].lower(), None) if len(parts) >= 3 else None
    return (split or "all", cls)


def _list_images(root: Path) -> list[ImageRef]:
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise AivsrealError(f"{root}: not a folder or a zip file")
        return _list_zip(root)
    files, irregular = [], []
    for dirpath, _, names in os.walk(root):
        for n in names:
            if is_image_name(n):
                p = Path(dirpath) / n
                try:
                    st = p.stat()
                except OSError:  # a dangling link
                    irregular.append(p)
                    continue
                if not stat.S_ISREG(st.st_mode):  # a FIFO named x.jpg would hang the reader
                    irregular.append(p)
                    continue
                files.append(ImageRef(str(root), p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    if irregular:
        log.warning("skipped %d image name(s) that are not regular files (FIFO, device, dangling link), "
                    "e.g. %s", len(irregular), irregular[0])
    if files:
        return files
    # Nothing extracted: read the zips beside it (Kaggle's archive.zip, or train.zip + test.zip).
    zips = sorted(p for p in root.iterdir() if p.suffix.lower() == ".zip")
    return [ref for z in zips for ref in _list_zip(z)]


def _list_zip(path: Path) -> list[ImageRef]:
    try:
        with zipfile.ZipFile(path) as zf:
            return [ImageRef(str(path), info.filename, info.file_size, info.CRC, in_zip=True)
                    for info in image_members(zf)]
    except zipfile.BadZipFile as e:
        raise AivsrealError(f"{path}: corrupt zip file ({e})") from None


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with `fraction` of each class held out, reproducibly."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def balanced_indices(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most `limit` items, half of each class, for quick runs."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    per_class = max(1, limit // 2)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in (0, 1)]))


def balanced_limit(split: Split, limit: int | None, seed: int) -> Split:
    if limit is None or limit >= len(split):
        return split
    return split.subset(balanced_indices(split.labels, limit, seed))
