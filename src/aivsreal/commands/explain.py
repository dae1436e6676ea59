"""`aivsreal explain`: a Grad-CAM PNG (image | overlay) per input file, and a CSV listing them.

The picture is the whole view the model read: a native-crop model's every tile explained and put back
on its canvas (explain/overlays.py `picture`), not its first tile."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from aivsreal.explain.gradcam import Explainer
from aivsreal.explain.overlays import panels, picture, png_bytes
from aivsreal.predict.detector import Detector
from aivsreal.safe_io import writable_dir

BATCH = 64


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
    explainer = Explainer(det, layer)
    out = writable_dir(out)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for batch in det.decoded_batches(paths, BATCH):
        preds = list(det.score_decoded(batch))
        good = [i for i, pred in enumerate(preds) if pred.error is None]
        cams = iter(explainer.explain_each([batch[i].pixels for i in good], target=target,
                                           p_fake=np.array([preds[i].p_fake for i in good])))
        for pred, item in zip(preds, batch, strict=True):
            if pred.error is not None:
                rows.append({"source": pred.source, "label": "ERROR", "p_fake": "", "explained": "", "file": "",
                             "error": pred.error})
                continue
            name = _png_name(pred.source, used)
            (out / name).write_bytes(png_bytes(panels(picture(item.pixels, next(cams), item.layout, size))))
            rows.append({"source": pred.source, "label": pred.label, "p_fake": f"{pred.p_fake:.4f}",
                         "explained": pred.label if target == "predicted" else target, "file": name, "error": ""})
    with open(out / "explanations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["source", "label", "p_fake", "explained", "file", "error"])
        w.writeheader()
        w.writerows(rows)
    return rows
