"""Small datasets the tests make themselves: tiny JPEGs in the CIFAKE layout."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

# Keep each test process to the cores it has, and quiet.
os.environ.setdefault("AIVSREAL_CACHE_DIR", str(Path(__file__).parent / ".cache-never-used"))

SHARED_CIFAKE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifake"


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def synthetic_image(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """REAL: dark, smooth; FAKE: bright with a fine checkerboard. Easy to learn, on purpose."""
    base = rng.integers(20, 90, size=(1, 1, 3)) if label == 0 else rng.integers(150, 230, size=(1, 1, 3))
    img = np.broadcast_to(base, (size, size, 3)).astype(np.int32) + rng.integers(-15, 15, (size, size, 3))
    if label == 1:
        img += (np.indices((size, size)).sum(0) % 2 * 20)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root: Path, per_class: dict[str, int], seed: int = 0, size: int = 32) -> Path:
    """Write `root/{split}/{REAL,FAKE}/N.jpg` with per_class={'train': n, 'test': m}."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for label, cls in enumerate(("REAL", "FAKE")):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{i}.jpg").write_bytes(jpeg_bytes(synthetic_image(label, rng, size)))
    return root


def zip_folder(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return zip_path


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data", {"train": 96, "test": 32})


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, run folder) of a `fast` model trained on tiny data once per session.

    Copy model.pt before changing it: other tests read the same file.
    """
    from aivsreal.cli import main

    root = tmp_path_factory.mktemp("trained")
    data = make_dataset(root / "data", {"train": 96, "test": 32}, seed=1)
    out = root / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--cache-dir", str(root / "cache"),
                 "--epochs", "4", "--batch-size", "16", "--lr", "0.05"]) == 0
    return data, out


@contextlib.contextmanager
def serving(model: Path, *extra: str) -> Iterator[str]:
    """`aivsreal serve` in a subprocess on a free loopback port; yields its URL once /api/health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "aivsreal", "serve", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--device", "cpu", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url + "/api/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stdout.read().decode()) from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    """A `fast` model file straight from its seeded initialisation: for tests of loading and refusing,
    where what it answers does not matter."""
    import torch

    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import save_model

    path = tmp_path_factory.mktemp("m") / "model.pt"
    torch.manual_seed(0)
    save_model(path, build_model(default_config("fast")))
    return path


def benchmark_script(name: str) -> ModuleType:
    """benchmarks/NAME.py imported as a module: the scripts are not part of the package, but their
    parts that decide results (folds, weights, member selection) deserve tests too."""
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def record_budgets(monkeypatch: pytest.MonkeyPatch) -> tuple[list, list[tuple[int, ...]]]:
    """Every PixelBudget the server app makes, in order, and what each held at every Detector.decode call."""
    from aivsreal.predict.detector import Detector
    from aivsreal.serve import app as app_module
    from aivsreal.serve.limits import PixelBudget

    budgets: list[PixelBudget] = []
    held: list[tuple[int, ...]] = []

    class Recorded(PixelBudget):
        def __init__(self, capacity: int):
            super().__init__(capacity)
            budgets.append(self)

    real_decode = Detector.decode

    def decode(self, image):
        held.append(tuple(b.in_use for b in budgets))
        return real_decode(self, image)

    monkeypatch.setattr(app_module, "PixelBudget", Recorded)
    monkeypatch.setattr(Detector, "decode", decode)
    return budgets, held
