"""Read and write torch files safely: never run code from a file, never leave half a file.

Files are read with `torch.load(weights_only=True)`, which only rebuilds tensors and plain
containers, so a crafted file cannot run code. Writes go to a temporary file that is
renamed into place: a crash or Ctrl-C leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from aivsreal.errors import AivsrealError


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read once, at import: os.umask can only be read by setting it


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write` on a temporary file beside `path`, fsync it, then rename it over `path`.

    The file gets the permissions a plain open() would give (mkstemp's are owner-only), so a
    model or report written here can be read by whoever could read the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def safe_load(path: str | Path, what: str = "model file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise AivsrealError(f"{what} not found: {path}")
    try:
        _check_zip(path, what)
        with warnings.catch_warnings(record=True) as seen:  # torch's notes on a refused file are noise
            warnings.simplefilter("always")
            obj = torch.load(path, map_location="cpu", weights_only=True)
        for w in seen:  # a file that loads: its warnings are the user's to see
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return obj
    except AivsrealError:
        raise
    except pickle.UnpicklingError:
        # torch's weights-only unpickler refuses any global it does not know; its wording changes
        # between versions, so decide by what the file is: a torch archive whose pickle was refused
        # holds code or Python objects, anything else is not a torch file at all.
        if zipfile.is_zipfile(path):
            raise AivsrealError(
                f"{path}: refused: it contains code or Python objects, not just weights (possibly "
                "malicious); only files written by aivsreal or plain state_dicts load"
            ) from None
        raise AivsrealError(f"{path}: not a readable {what} (not a PyTorch file)") from None
    except Exception as e:  # truncated zip, bad header, wrong magic...: untrusted input, one clear line
        raise AivsrealError(f"{path}: not a readable {what} ({type(e).__name__})") from None


def _check_zip(path: Path, what: str) -> None:
    """torch reads a zip archive's members without checking their CRC, so a flipped bit in a weight
    (a broken download or copy) would load silently: check every member's checksum first."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as zf:
        bad = zf.testzip()
    if bad is not None:
        raise AivsrealError(f"{path}: damaged {what}: the checksum of {bad} inside does not match (a broken "
                            "download or copy); fetch or copy the file again")


def writable_dir(path: str | Path) -> Path:
    """Fail before hours of training, not after; the probe name is unique because torchrun ranks
    probe the same folder at the same moment."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".aivsreal-write-test-"):
            pass
    except OSError as e:
        raise AivsrealError(f"output folder {path} is not writable ({e.strerror or e})") from None
    return path
