"""`aivsreal explain`: a Grad-CAM PNG (image | overlay) per input file, and a CSV listing them."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from aivsreal.explain import png_bytes, side_by_side
from aivsreal.images import BadImageError
from aivsreal.pipeline import writable_dir
from aivsreal.predict import Detector

BATCH = 64


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _png_name(source: str, used: set[str]) -> str:
    """`cat.gradcam.png`; `cat-2.gradcam.png` for the second `cat.jpg` from another folder."""
    stem, n = Path(source).stem, 1
    name = f"{stem}.gradcam.png"
    while name in used:
        n += 1
        name = f"{stem}-{n}.gradcam.png"
    used.add(name)
    return name


def explain_files(model_path: str | Path, paths: Iterable[str], out: Path, target: str = "predicted",
                  layer: str | None = None, size: int = 224, device: str = "auto") -> list[dict[str, Any]]:
    """One row per input: source, label, p_fake, explained class, PNG file name (or the read error)."""
    det = Detector.load(model_path, device=device)
    out = writable_dir(out)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for batch in _batches(paths, BATCH):
        good, pixels = [], []
        for source in batch:
            try:
                pixels.append(det.to_pixels(source))
                good.append(len(rows))
                rows.append({"source": source})
            except BadImageError as e:
                rows.append({"source": source, "label": "ERROR", "p_fake": "", "explained": "", "file": "",
                             "error": str(e)})
        if not pixels:
            continue
        px = np.stack(pixels)
        p_fake = det.predict_proba(px)
        cams = det.explain(px, target=target, layer=layer, p_fake=p_fake)
        for slot, image, cam, p in zip(good, px, cams, p_fake, strict=True):
            label = "FAKE" if p >= det.threshold else "REAL"
            name = _png_name(rows[slot]["source"], used)
            (out / name).write_bytes(png_bytes(side_by_side(image, cam, size)))
            rows[slot].update(label=label, p_fake=f"{p:.4f}", explained=label if target == "predicted" else target,
                              file=name, error="")
    with open(out / "explanations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["source", "label", "p_fake", "explained", "file", "error"])
        w.writeheader()
        w.writerows(rows)
    return rows
