"""Inference throughput on CPU: PyTorch eager (fp32, bf16) and onnxruntime, batch 1 and 256; and
`aivsreal predict` on folders of camera-size photos.

    python benchmarks/inference.py
    flock /tmp/aivsreal-cpu.lock python benchmarks/inference.py --photos 48 --model wild cifake wild@512

The first form uses the models trained by benchmarks/cifake.py (benchmarks/runs/NAME/model.pt) when
present, else freshly initialised ones (throughput does not depend on the weights). Images/s are
medians over repeated timed calls, after a warm-up, on already-decoded pixels, over interleaved
rounds; TTA as the model file says.

`--photos N` (the second form) instead times the whole command a user runs, `aivsreal predict FOLDER
--model M --csv out.csv`, as a subprocess, on N 12 MP JPEGs (4000x3000, q90: real camera photos
from `--photo-source`, default /root/wild's REAL JPEGs, scaled to cover 4000x3000 with sensor-like
noise added; synthetic textures when there is no source) and on N 1 MP PNGs (1152x864). Per model
and folder: images/s end to end (median of `--rounds` runs), images/s past start-up ((N-1) / (time
for N - time for 1)), and peak memory: the largest process's peak RSS (wait4's ru_maxrss, what
`/usr/bin/time -v` reports) and the whole process tree's peak PSS (pool workers share the parent's
pages; polled every 50 ms). `M@S` is model M with `rescale` S set in its config, written to a temp
file for this measurement only. For every `rescale` model it also measures what JPEG draft decoding
changes against a full decode, per class, on the source's JPEGs whose shorter side is at least 2 S
(draft applies to JPEGs only, mostly REAL in our data). Both forms write benchmarks/results/
inference.{json,md}, each keeping the other's section.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from aivsreal.data.crops import decode_views
from aivsreal.device import cpu_bf16_native
from aivsreal.models import build_model, default_config
from aivsreal.models.file import ModelMeta, save_model
from aivsreal.models.hub import load_model
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


# ---------------------------------------------------------------- `--photos`: predict on camera-size photos

PHOTO, PNG_SIZE, UNIQUE = (4000, 3000), (1152, 864), 8  # 12 MP JPEGs, 1 MP PNGs; distinct images per folder
DEFAULT_SOURCE = Path("/root/wild")


def source_photos(source: Path | None, min_side: int = 2000) -> list[Path]:
    """Camera JPEGs to build the test photos from: the source's REAL JPEGs with a shorter side of at
    least `min_side`, in name order (empty without a source)."""
    if source is None or not source.is_dir():
        return []
    found = []
    for path in sorted(source.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg") and "REAL" in path.parts:
            with Image.open(path) as im:
                if min(im.size) >= min_side:
                    found.append(path)
    return found


def camera_like(path: Path | None, seed: int) -> np.ndarray:
    """A 4000x3000 RGB photo: a real one scaled to cover it (centre crop), or a synthetic texture, plus
    Gaussian noise (sigma 3) for a sensor's grain: upscaling alone leaves it smoother than a camera's."""
    rng = np.random.default_rng(seed)
    w, h = PHOTO
    if path is not None:
        im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        if im.height > im.width:
            im = im.rotate(90, expand=True)
        s = max(w / im.width, h / im.height)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BICUBIC)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        base = np.asarray(im.crop((left, top, left + w, top + h)), dtype=np.float32)
    else:
        y, x = np.mgrid[:h, :w].astype(np.float32)
        base = np.stack([128 + 80 * np.sin(x / (40 + 9 * c) + seed) * np.cos(y / (31 + 5 * c)) for c in range(3)], -1)
    base += 3 * rng.standard_normal(base.shape, dtype=np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


def photo_folders(root: Path, n: int, source: Path | None) -> tuple[dict[str, Path], str]:
    """Folders of N 12 MP JPEGs and N 1 MP PNGs (UNIQUE distinct images, hard-linked to N), each also as
    a one-image folder for the start-up time; and where the pixels came from."""
    unique = min(n, UNIQUE)
    picked = source_photos(source)[:unique]
    folders = {}
    for kind in ("jpeg12mp", "png1mp"):
        for suffix in ("", "_one"):
            (root / f"{kind}{suffix}").mkdir()
    for i in range(unique):
        pixels = camera_like(picked[i % len(picked)] if picked else None, i)
        Image.fromarray(pixels).save(root / "jpeg12mp" / f"{i:04d}.jpg", quality=90)
        Image.fromarray(pixels).resize(PNG_SIZE, Image.Resampling.BICUBIC).save(root / "png1mp" / f"{i:04d}.png")
    for kind, ext in (("jpeg12mp", "jpg"), ("png1mp", "png")):
        for i in range(unique, n):
            os.link(root / kind / f"{i % unique:04d}.{ext}", root / kind / f"{i:04d}.{ext}")
        os.link(root / kind / f"0000.{ext}", root / f"{kind}_one" / f"0000.{ext}")
        folders[kind] = root / kind
    origin = (f"{len(picked)} REAL camera JPEGs from {source} (shorter side >= 2000 px: "
              + ", ".join(p.name for p in picked) + ")") if picked else "synthetic textures"
    return folders, origin


def model_for(spec: str, tmp: Path) -> tuple[str, dict]:
    """`M` as given, or `M@S`: M with `rescale` S in its config, saved to a temp file (measurement only)."""
    ref, _, rescale = spec.partition("@")
    if not rescale:
        return ref, {}
    network, meta = load_model(ref)
    network.config.options = {**network.config.options, "rescale": int(rescale)}
    path = tmp / f"{Path(ref).stem}_rescale{rescale}.pt"
    save_model(path, network, meta)
    return str(path), {"rescale": int(rescale)}


def _tree(pid: int) -> list[int]:
    """The process and its descendants, from each /proc/PID/stat's parent id (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo += children.get(out[-1], [])
    return out


def _kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def timed_predict(model: str, folder: Path, csv: Path) -> dict:
    """One `aivsreal predict FOLDER --model M --csv CSV` run: wall time, the largest process's peak RSS
    (VmHWM) and the process tree's peak PSS, in MB, polled every 50 ms. (Not wait4's ru_maxrss: Linux
    carries this benchmark's own peak into a child it forks, through exec.)"""
    cmd = [sys.executable, "-m", "aivsreal", "predict", str(folder), "--model", model, "--csv", str(csv)]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_rss = peak_pss = 0
    while child.poll() is None:
        tree = _tree(child.pid)
        peak_rss = max(peak_rss, *(_kib(f"/proc/{p}/status", "VmHWM:") for p in tree))
        peak_pss = max(peak_pss, sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in tree))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        err = child.stderr.read().decode(errors="replace") if child.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed: {err.strip()[-500:]}")
    rows = len(csv.read_text().splitlines()) - 1
    if rows != len(list(folder.iterdir())):
        raise SystemExit(f"{csv}: {rows} rows for {len(list(folder.iterdir()))} images")
    return {"wall_s": wall, "max_rss_mb": peak_rss / 1024, "tree_pss_mb": peak_pss / 1024}


def draft_effect(model: str, rescale: int, source: Path | None, per_class: int) -> list[dict]:
    """Draft vs full decode before the same resize, on the source's JPEGs whose shorter side is >= 2x
    `rescale` (where draft applies), per class: mean |pixel difference| of the views, |delta P(FAKE)|,
    its mean sign (draft - full) and verdict flips."""
    if source is None or not source.is_dir():
        return []
    det = Detector.load(model, device="cpu", precision="fp32")
    rows = []
    for label in ("REAL", "FAKE"):
        files = []
        for path in sorted(source.rglob("*")):
            if path.suffix.lower() in (".jpg", ".jpeg") and label in path.parts:
                with Image.open(path) as im:
                    if min(im.size) >= 2 * rescale:
                        files.append(path)
        files = files[:: max(len(files) // per_class, 1)][:per_class]  # spread over the sources
        pixel_diff, p_draft, p_full = [], [], []
        for path in files:
            data = path.read_bytes()
            drafted = decode_views(data, det.image_size, det.crop, rescale=rescale, draft=True)[0]
            full = decode_views(data, det.image_size, det.crop, rescale=rescale, draft=False)[0]
            pixel_diff.append(float(np.abs(drafted.astype(np.int16) - full).mean()))
            p_draft.append(float(det.score_views([drafted])[0][0]))
            p_full.append(float(det.score_views([full])[0][0]))
        if not files:
            continue
        delta = np.array(p_draft) - np.array(p_full)
        flips = int(sum(det.label(a) != det.label(b) for a, b in zip(p_draft, p_full, strict=True)))
        rows.append({"class": label, "n": len(files), "mean_abs_pixel": float(np.mean(pixel_diff)),
                     "mean_abs_dp": float(np.abs(delta).mean()), "max_abs_dp": float(np.abs(delta).max()),
                     "mean_dp": float(delta.mean()), "verdict_flips": flips})
        print(json.dumps({"draft": model, **rows[-1]}), flush=True)
    return rows


def photos_case(args: argparse.Namespace) -> dict:
    rows, drafts = [], {}
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folders, origin = photo_folders(tmp, args.photos, args.photo_source)
        for spec in args.model:
            model, extra = model_for(spec, tmp)
            for kind, folder in folders.items():
                runs = {"n": [], "one": []}
                for _ in range(args.rounds):  # N then 1, alternating, so a slow spell hits both
                    runs["n"].append(timed_predict(model, folder, tmp / "out.csv"))
                    runs["one"].append(timed_predict(model, folder.with_name(folder.name + "_one"), tmp / "out.csv"))
                wall_n = statistics.median(r["wall_s"] for r in runs["n"])
                wall_1 = statistics.median(r["wall_s"] for r in runs["one"])
                rows.append({"model": spec, **extra, "images": kind, "n": args.photos,
                             "img_per_s": args.photos / wall_n,
                             "img_per_s_past_startup": (args.photos - 1) / max(wall_n - wall_1, 1e-9),
                             "startup_s": wall_1, "max_rss_mb": max(r["max_rss_mb"] for r in runs["n"]),
                             "tree_pss_mb": max(r["tree_pss_mb"] for r in runs["n"]),
                             "walls_s": [round(r["wall_s"], 2) for r in runs["n"]]})
                print(json.dumps(rows[-1]), flush=True)
            if extra.get("rescale"):
                drafts[spec] = draft_effect(model, extra["rescale"], args.photo_source, args.draft_images)
    return {"provenance": provenance().to_dict(), "meta": {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "photos": origin,
        "n": args.photos, "rounds": args.rounds, "torch": torch.__version__,
        "loadavg_before_after": [load_before, Path("/proc/loadavg").read_text().split()[:3]]},
        "rows": rows, "draft": drafts}


def photos_lines(section: dict) -> list[str]:
    meta = section["meta"]
    lines = ["## `aivsreal predict` on camera-size photos", "",
             f"Measured {meta['date']} on {meta['cpus']} CPU cores: `{section['provenance']['command']}`, "
             f"{meta['n']} images per folder from {meta['photos']}. Images/s: median of {meta['rounds']} runs of the "
             "whole command (start-up, model load, decode, scoring, CSV); past start-up: (N-1) / (time for N - time "
             "for one image). Peak RSS: the largest process's VmHWM (what `/usr/bin/time -v` reports); tree PSS: the "
             "command and its decoding workers together, shared pages counted once (polled every 50 ms). Goal "
             "(issue 50): >= 10 images/s and <= 1 GB on 12 MP photos. Load average (1, 5, 15 min) before and "
             f"after: {meta['loadavg_before_after']}: on a shared machine other jobs slow every row alike.", "",
             "| model | images | images/s | images/s past start-up | start-up s | peak RSS MB | tree PSS MB |",
             "|---|---|---|---|---|---|---|"]
    names = {"jpeg12mp": "12 MP JPEG q90", "png1mp": "1 MP PNG"}
    for r in section["rows"]:
        lines.append(f"| `{r['model']}` | {names[r['images']]} | {r['img_per_s']:.1f} | "
                     f"{r['img_per_s_past_startup']:.1f} | {r['startup_s']:.1f} | {r['max_rss_mb']:,.0f} | "
                     f"{r['tree_pss_mb']:,.0f} |")
    for spec, rows in section["draft"].items():
        lines += ["", f"JPEG draft decoding vs a full decode, `{spec}` (the same resize after either; JPEGs whose "
                  "shorter side is at least twice the rescale, spread over the sources; delta = draft - full):", "",
                  "| class | images | mean abs pixel diff (0-255) | mean abs delta P(FAKE) | max abs delta P(FAKE) "
                  "| mean delta P(FAKE) | verdicts changed |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['class']} | {r['n']} | {r['mean_abs_pixel']:.2f} | {r['mean_abs_dp']:.4f} | "
                  f"{r['max_abs_dp']:.4f} | {r['mean_dp']:+.4f} | {r['verdict_flips']} |" for r in rows]
    return lines


def pixels_case(args: argparse.Namespace) -> dict:
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
            "torch_threads": torch.get_num_threads(), "cpu_bf16_native": cpu_bf16_native(),
            "models": args.models, "batches": args.batches, "rounds": args.rounds, "seconds": args.seconds}
    return {"provenance": provenance().to_dict(), "meta": meta, "rows": rows}


def pixels_lines(result: dict) -> list[str]:
    meta, rows = result["meta"], result["rows"]
    models = meta.get("models") or list(dict.fromkeys(r["model"] for r in rows))
    batches = meta.get("batches") or sorted({r["batch"] for r in rows})
    lines = [f"Measured {meta['date']} on {meta['cpus']} CPU cores (torch {meta['torch']}): `{meta['command']}`. "
             f"Images/s on decoded 32x32 pixels: median of {meta.get('rounds', 3)} interleaved rounds, each the median "
             f"of timed calls over {meta.get('seconds', 3.0):g} s; TTA (2 passes) as each model uses it. Run-to-run "
             "spread on this VM is about ±20%." + ("" if meta.get("cpu_bf16_native", True) else " This CPU has no "
             "native bf16, so the `torch bf16` rows ran in fp32 (aivsreal/device.py)."), "",
             "| model | backend | " + " | ".join(f"batch {b} img/s" for b in batches) + " |",
             "|---|---|" + "---|" * len(batches)]
    for name in models:
        for backend in ("torch fp32", "torch bf16", "onnxruntime fp32"):
            got = {r["batch"]: r["img_per_s"] for r in rows if r["model"] == name and r["backend"] == backend}
            lines.append(f"| `{name}` | {backend} | " + " | ".join(f"{got[b]:,.0f}" for b in batches) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["fast", "efficientnet_lite0"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    ap.add_argument("--rounds", type=int, default=3, help="repeat every measurement; report the median")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="time each measurement for at least this long (and at least 5 calls)")
    ap.add_argument("--photos", type=int, metavar="N",
                    help="instead: time `aivsreal predict` on folders of N 12 MP JPEGs and N 1 MP PNGs")
    ap.add_argument("--model", nargs="+", default=["wild", "cifake", "wild@512"],
                    help="--photos: models to run (M@S: M with rescale S, for measurement only)")
    ap.add_argument("--photo-source", type=Path, default=DEFAULT_SOURCE if DEFAULT_SOURCE.is_dir() else None,
                    help="--photos: a folder with REAL/ (and FAKE/) JPEGs to build the photos from and to measure "
                         "draft decoding on")
    ap.add_argument("--draft-images", type=int, default=40, help="--photos: JPEGs per class for the draft check")
    args = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "inference.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    if args.photos:
        result["photos"] = photos_case(args)  # the pixel section, and its provenance, stay as they were
    else:
        result = {**pixels_case(args), **({"photos": result["photos"]} if "photos" in result else {})}
    path.write_text(json.dumps(result, indent=2))
    lines = pixels_lines(result) if "rows" in result else []
    if "photos" in result:
        lines += ["", *photos_lines(result["photos"])]
    (RESULTS / "inference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
