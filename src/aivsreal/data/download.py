"""Get CIFAKE for users who are online; everyone else points `--data` at a local copy."""

from __future__ import annotations

import os
from pathlib import Path

from aivsreal.data.cache import default_cache_dir
from aivsreal.errors import AivsrealError

KAGGLE_DATASET = "birdy654/cifake-real-and-ai-generated-synthetic-images"


def default_data_path() -> Path:
    """`$AIVSREAL_DATA`, else a previous download in the cache dir, else a fresh download."""
    env = os.environ.get("AIVSREAL_DATA")
    if env:
        return Path(env)
    marker = default_cache_dir() / "cifake-path.txt"
    if marker.exists() and Path(marker.read_text().strip()).exists():
        return Path(marker.read_text().strip())
    return download_cifake()


def download_cifake() -> Path:
    """Download with kagglehub (needs Kaggle credentials: ~/.kaggle/kaggle.json or KAGGLE_* vars)."""
    try:
        import kagglehub
    except ImportError:
        raise AivsrealError(
            "no --data given and CIFAKE is not downloaded; install the downloader with "
            "`pip install 'aivsreal[download]'` (Kaggle credentials needed), or pass --data PATH "
            "to a local copy with train/ and test/ folders or zips"
        ) from None
    try:
        path = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as e:  # network down, no credentials, dataset terms not accepted...
        raise AivsrealError(
            f"could not download {KAGGLE_DATASET} from Kaggle ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}); check network and Kaggle "
            "credentials, or pass --data PATH to a local copy"
        ) from None
    marker = default_cache_dir() / "cifake-path.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(path))
    return path
