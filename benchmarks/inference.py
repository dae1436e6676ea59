"""Inference throughput on CPU: PyTorch eager (fp32, bf16) and onnxruntime, batch 1 and 256.

    python benchmarks/inference.py

Uses the models trained by benchmarks/cifake.py (benchmarks/runs/NAME/model.pt) when present,
else freshly initialised ones (throughput does not depend on the weights). Writes
benchmarks/results/inference.{json,md}. Images/s are medians over repeated timed calls,
after a warm-up, on already-decoded pixels, over interleaved rounds; TTA as the model file says.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aivsreal.device import cpu_bf16_native
from aivsreal.models import build_model, default_config
from aivsreal.models.file import ModelMeta, save_model
from aivsreal.predict.detector import Detector
from aivsreal.predict.onnx import export_onnx
from aivsreal.report.provenance import provenance

RESULTS = Path(__file__).parent / "results"


def images_per_s(det: Detector, batch: int, min_seconds: float = 3.0) -> float:
    pixels = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    det.predict_proba(pixels)
    det.predict_proba(pixels)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        det.predict_proba(pixels)
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def model_file(name: str, tmp: Path) -> tuple[Path, str]:
    trained = Path("benchmarks/runs") / name / "model.pt"
    if trained.exists():
        return trained, "trained"
    path = tmp / f"{name}.pt"
    save_model(path, build_model(default_config(name)), ModelMeta(tta=True))
    return path, "untrained"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["fast", "efficientnet_lite0"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    ap.add_argument("--rounds", type=int, default=3, help="repeat every measurement; report the median")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="time each measurement for at least this long (and at least 5 calls)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            path, origin = model_file(name, Path(tmp))
            onnx_path = export_onnx(path, Path(tmp) / f"{name}.onnx")
            # Built one at a time and freed after: an idle onnxruntime session's thread pool
            # alone slows torch on these 2 cores by ~15% (measured).
            backends = {"torch fp32": (path, {"precision": "fp32"}), "torch bf16": (path, {"precision": "bf16"}),
                        "onnxruntime fp32": (onnx_path, {"backend": "onnx"})}
            # Rounds interleave the backends so a slow spell of the machine hits them all alike.
            speeds: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.rounds):
                for backend, (file, options) in backends.items():
                    det = Detector.load(file, device="cpu", **options)
                    for batch in args.batches:
                        speeds.setdefault((backend, batch), []).append(images_per_s(det, batch, args.seconds))
                    tta = det.tta
                    del det
                    gc.collect()
            for (backend, batch), values in speeds.items():
                rows.append({"model": name, "weights": origin, "backend": backend, "batch": batch, "tta": tta,
                             "img_per_s": statistics.median(values), "rounds": [round(v) for v in values]})
                print(json.dumps(rows[-1]), flush=True)
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": "python benchmarks/inference.py "
            + " ".join(sys.argv[1:]), "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cpu_bf16_native": cpu_bf16_native()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inference.json").write_text(json.dumps(
        {"provenance": provenance().to_dict(), "meta": meta, "rows": rows}, indent=2))
    lines = [f"Measured {meta['date']} on {meta['cpus']} CPU cores (torch {meta['torch']}): `{meta['command']}`. "
             f"Images/s on decoded 32x32 pixels: median of {args.rounds} interleaved rounds, each the median of "
             f"timed calls over {args.seconds:g} s; TTA (2 passes) as each model uses it. Run-to-run spread on "
             "this VM is about ±20%." + ("" if meta["cpu_bf16_native"] else " This CPU has no native bf16, so the "
                              "`torch bf16` rows ran in fp32 (aivsreal/device.py)."), "",
             "| model | backend | " + " | ".join(f"batch {b} img/s" for b in args.batches) + " |",
             "|---|---|" + "---|" * len(args.batches)]
    for name in args.models:
        for backend in ("torch fp32", "torch bf16", "onnxruntime fp32"):
            got = {r["batch"]: r["img_per_s"] for r in rows if r["model"] == name and r["backend"] == backend}
            lines.append(f"| `{name}` | {backend} | " + " | ".join(f"{got[b]:,.0f}" for b in args.batches) + " |")
    (RESULTS / "inference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
