"""Scale out: images/s of `predict --engine ray` with 1 and 2 actors against the default engine.

    flock /tmp/aivsreal-cpu.lock python benchmarks/scale_out.py --data ../shared/data/cifake --photos ~/wild

Two sets: the 20,000 CIFAKE test images (extracted from test.zip to a temporary folder: both engines
read files) and 500 large photos (the first, in sorted order, of at least 1 megapixel under
--photos). Each engine scores the whole set as `predict` does, rows written (the default engine's
CSV, the Ray engine's Parquet shards), timed from the call to the last row: the default engine's
time includes loading the detector, Ray's includes starting its actors, each of which loads it. The
local Ray itself is started after the default engine's run of each round (its idle processes would
slow the default engine) and before the Ray runs (on a cluster it is already running); its start
time is reported apart. Rounds interleave the engines so that a slow spell of this shared
machine hits them all alike; figures are medians. The last round's Ray rows are checked against
the default engine's (labels, errors, P(fake) within 1e-6). Writes benchmarks/results/scale_out.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

from aivsreal.data.inputs import expand_inputs
from aivsreal.predict.batch import score_to_csv
from aivsreal.predict.detector import Prediction
from aivsreal.predict.ray_engine import import_ray, score_on_ray
from aivsreal.predict.spec import DetectorSpec
from aivsreal.report.provenance import provenance

RESULTS = Path(__file__).parent / "results"


def extract_cifake(test_zip: Path, folder: Path, limit: int) -> list[str]:
    with zipfile.ZipFile(test_zip) as zf:
        members = sorted(n for n in zf.namelist() if not n.endswith("/"))[:limit]
        for name in members:
            zf.extract(name, folder)
    return sorted(expand_inputs([str(folder)]))


def large_photos(root: Path, n: int, min_pixels: int = 1_000_000) -> list[str]:
    picked = []
    for path in sorted(expand_inputs([str(root)])):
        try:
            with Image.open(path) as im:
                if im.width * im.height >= min_pixels:
                    picked.append(path)
        except Exception:  # noqa: BLE001 - only readable photos are timed
            continue
        if len(picked) == n:
            break
    return picked


def run_default(spec: DetectorSpec, paths: list[str], tmp: Path) -> tuple[float, list[Prediction]]:
    start = time.perf_counter()
    preds = list(score_to_csv(spec.load(), paths, tmp / "default.csv"))
    return time.perf_counter() - start, preds


def run_ray(spec: DetectorSpec, paths: list[str], tmp: Path, actors: int, batch_size: int) -> tuple[float, list]:
    out = Path(tempfile.mkdtemp(dir=tmp, prefix=f"ray{actors}-"))
    start = time.perf_counter()
    preds = list(score_on_ray(spec, paths, out, actors=actors, batch_size=batch_size))
    return time.perf_counter() - start, preds


def agreement(ours: list[Prediction], theirs: list[Prediction]) -> dict:
    by_path = {p.source: p for p in theirs}
    same_rows = len(ours) == len(theirs) == len(by_path) and all(p.source in by_path for p in ours)
    labels = all(p.label == by_path[p.source].label and p.error == by_path[p.source].error for p in ours)
    dp = [abs(p.p_fake - by_path[p.source].p_fake) for p in ours if p.p_fake is not None]
    return {"same_rows": same_rows, "labels_and_errors_identical": labels, "max_abs_dp_fake": max(dp, default=0.0)}


def measure(name: str, paths: list[str], spec: DetectorSpec, actors: list[int], rounds: int, batch_size: int,
            tmp: Path) -> dict:
    """Per round: the default engine with no Ray running (its idle processes would slow it), then a local
    Ray started (timed apart) for the Ray runs and shut down."""
    ray = import_ray()
    seconds: dict[str, list[float]] = {"default": [], **{f"ray, {n} actor(s)": [] for n in actors}}
    ray_start: list[float] = []
    for r in range(rounds):
        t, default_rows = run_default(spec, paths, tmp)
        seconds["default"].append(t)
        checks = {}
        start = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        ray_start.append(time.perf_counter() - start)
        try:
            for n in actors:
                t, rows = run_ray(spec, paths, tmp, n, batch_size)
                seconds[f"ray, {n} actor(s)"].append(t)
                checks[f"{n} actor(s)"] = agreement(rows, default_rows)
        finally:
            ray.shutdown()
        print(f"{name} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in seconds.items()), flush=True)
    ips = {k: len(paths) / statistics.median(v) for k, v in seconds.items()}
    return {"set": name, "n": len(paths), "images_per_s": ips, "seconds": seconds, "ray_start_s": ray_start,
            "errors": sum(p.error is not None for p in default_rows), "agreement": checks}


NOT_MEASURED = [
    "more than one machine: the multi-node recipe in docs/scale_out.md (ray start --head, then --address) was "
    "not run across hosts here, only on this one machine",
    "GPU actors (--device cuda gives each actor one GPU)",
    "fsspec/object-store inputs (s3://): the engine lists local files, folders and globs only",
]


def markdown(result: dict) -> str:
    lines = ["# Scale out: `predict --engine ray` against the default engine", "",
             f"Written by `{result['provenance']['command']}` on {result['provenance']['date'][:10]}: "
             f"{result['machine']}. Model `{result['model']}`; images/s are medians over {result['rounds']} "
             "interleaved rounds, timed from the call to the last row written (see the script's docstring). "
             "The default engine runs with no Ray running; a local Ray is then started for the Ray runs (median "
             f"start {statistics.median(sum((s['ray_start_s'] for s in result['sets']), [])):.1f} s, not in the "
             "figures) and shut down after them.", "",
             "| set | images | default | " + " | ".join(f"Ray, {n} actor(s)" for n in result["actors"]) +
             " | Ray 1 actor vs default | 2 actors vs 1 |",
             "|---|---|---|" + "---|" * len(result["actors"]) + "---|---|"]
    for s in result["sets"]:
        ips = s["images_per_s"]
        one, two = ips.get("ray, 1 actor(s)"), ips.get("ray, 2 actor(s)")
        lines.append(f"| {s['set']} | {s['n']:,} | {ips['default']:,.0f} | " +
                     " | ".join(f"{ips[f'ray, {n} actor(s)']:,.0f}" for n in result["actors"]) +
                     f" | {one / ips['default'] - 1:+.1%} | " + (f"{two / one:.2f}x |" if one and two else "- |"))
    lines += ["", "Same numbers (last round, Ray rows against the default engine's):", ""]
    for s in result["sets"]:
        for n, a in s["agreement"].items():
            lines.append(f"- {s['set']}, {n}: same rows {a['same_rows']}, labels and errors identical "
                         f"{a['labels_and_errors_identical']}, max |dP(fake)| {a['max_abs_dp_fake']:.1e}")
    lines += ["", "Not measured:", "", *[f"- {m}" for m in result["not_measured"]], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="CIFAKE folder with test.zip")
    ap.add_argument("--photos", help="a folder of photos; the first --n-photos of at least 1 MP are timed")
    ap.add_argument("--limit", type=int, default=20_000, help="CIFAKE test images (default: all 20,000)")
    ap.add_argument("--n-photos", type=int, default=500)
    ap.add_argument("--model", default="cifake")
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    import_ray()  # one line now, not after the extraction, when the extra is missing
    spec = DetectorSpec(args.model, device="cpu")
    result = {"provenance": provenance().to_dict(), "model": args.model, "rounds": args.rounds,
              "actors": args.actors, "machine": f"{os.cpu_count()} CPUs, load average before "
              f"{os.getloadavg()[0]:.1f}", "sets": [], "not_measured": NOT_MEASURED}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sets = [("CIFAKE test", extract_cifake(Path(args.data) / "test.zip", tmp / "cifake", args.limit))]
        if args.photos:
            sets.append((f"large photos (>= 1 MP, {Path(args.photos).name})",
                         large_photos(Path(args.photos).expanduser(), args.n_photos)))
        for name, paths in sets:
            result["sets"].append(measure(name, paths, spec, args.actors, args.rounds, args.batch_size, tmp))
    result["machine"] += f", after {os.getloadavg()[0]:.1f} (a machine shared with other jobs)"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_out.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "scale_out.md").write_text(markdown(result))
    print(markdown(result), file=sys.stdout)


if __name__ == "__main__":
    main()
