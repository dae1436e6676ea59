"""Server memory under hostile uploads: N clients sending tiny files that declare huge images.

    python benchmarks/load_hostile.py --clients 8 --seconds 30

An 8000x7999 PNG of one colour is about 190 KB on the wire and 64 megapixels (about 256 MB in
Pillow) once decoded. Before the decode budget, 6 concurrent uploads of such files took the server
from 0.67 GB to 4.8 GB RSS. This starts the real server on 127.0.0.1 (an untrained `fast` model
unless `--model` is given: memory does not depend on the weights), sends such files from
`--clients` threads (`--files` per request, a mix of RGB PNG, palette PNG and JPEG) for
`--seconds`, samples the server's RSS every 20 ms, then checks that a normal image still gets its
verdict. Writes benchmarks/results/load_hostile.{json,md}. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
from load_test import run_clients, start_server
from PIL import Image

from aivsreal.report.provenance import provenance

RESULTS = Path(__file__).parent / "results"
GOAL_MB = 1536


def hostile_files() -> dict[str, bytes]:
    """Small files, huge images: what decodes to the most memory per byte sent."""
    files = {}
    for name, image, fmt in (("rgb.png", Image.new("RGB", (8000, 7999), (120, 30, 200)), "PNG"),
                             ("palette.png", Image.new("P", (8000, 7999), 3), "PNG"),
                             ("photo.jpg", Image.new("RGB", (8000, 7999), (10, 200, 90)), "JPEG")):
        buf = io.BytesIO()
        image.save(buf, fmt, optimize=fmt == "PNG")
        files[name] = buf.getvalue()
    return files


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc (Linux)."""
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model file (default: an untrained `fast` model)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--files", type=int, default=4, help="hostile files per request")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from aivsreal.models import build_model, default_config
            from aivsreal.models.file import save_model

            model = str(Path(tmp) / "model.pt")
            save_model(model, build_model(default_config("fast")))
        files = hostile_files()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = start_server(model, port)
        try:
            result = attack(server.pid, port, files, args)
        finally:
            server.terminate()
            server.wait(timeout=10)

    result = {"provenance": provenance().to_dict(), **result}
    result.update(date=datetime.now(UTC).strftime("%Y-%m-%d"),
                  command="python benchmarks/load_hostile.py " + " ".join(sys.argv[1:]),
                  files_sent={name: f"{len(data):,} bytes, 8000x7999" for name, data in files.items()},
                  goal_peak_rss_mb=GOAL_MB, goal_met=result["peak_rss_mb"] < GOAL_MB)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load_hostile.json").write_text(json.dumps(result, indent=2) + "\n")
    statuses = ", ".join(f"{n} x {s}" for s, n in sorted(result["file_statuses"].items()))
    (RESULTS / "load_hostile.md").write_text(
        f"Measured {result['date']}: `{result['command']}`\n\n"
        f"{args.clients} clients, each sending requests of {args.files} files that are 8000x7999 images "
        f"({', '.join(files)}; {min(map(len, files.values())):,}-{max(map(len, files.values())):,} bytes "
        f"each) for {result['seconds']} s. Server RSS sampled every 20 ms.\n\n"
        "| RSS before | peak RSS | RSS after | goal | requests | per-file answers | normal image after |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['rss_before_mb']} MB | **{result['peak_rss_mb']} MB** | {result['rss_after_mb']} MB | "
        f"< {GOAL_MB} MB: {'met' if result['goal_met'] else 'NOT met'} | {result['requests']} | {statuses} | "
        f"{result['normal_request_after']} |\n\n"
        "Before the decode budget (issue 11's report): 6 concurrent uploads of such a PNG took the "
        "server from 0.67 GB to 4.8 GB RSS. 413 answers are files past the 256-megapixel limit per "
        "request; decodes beyond one 64-megapixel image at a time wait for their turn.\n")
    print(json.dumps(result, indent=2))


def attack(pid: int, port: int, files: dict[str, bytes], args: argparse.Namespace) -> dict:
    before, _ = rss_mb(pid)
    samples: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    requests = [0]
    lock = threading.Lock()
    done = threading.Event()
    names = list(files)

    def sample() -> None:
        while not done.is_set():
            samples.append(rss_mb(pid)[0])
            time.sleep(0.02)

    def client(k: int) -> None:
        stop_at = time.perf_counter() + args.seconds
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            j = 0
            while time.perf_counter() < stop_at:
                picks = [names[(k + j + i) % len(names)] for i in range(args.files)]
                try:
                    r = http.post("/api/predict", files=[("files", (n, files[n])) for n in picks])
                    got = [e["status"] for e in r.json()["results"]] if r.status_code < 500 else [r.status_code]
                except Exception as e:  # noqa: BLE001 - a benchmark records, it does not stop
                    got, err = [], f"{type(e).__name__}: {e}"
                    with lock:
                        errors.append(err)
                with lock:
                    requests[0] += 1
                    statuses.update(got)
                j += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    elapsed = run_clients(client, args.clients)
    time.sleep(2)
    done.set()
    sampler.join()
    after, peak = rss_mb(pid)

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 90, 90)).save(buf, "PNG")
    r = httpx.post(f"http://127.0.0.1:{port}/api/predict", files={"files": ("ok.png", buf.getvalue())}, timeout=60)
    normal = "verdict" if r.status_code == 200 and "label" in r.json()["results"][0] else f"status {r.status_code}"
    return {"clients": args.clients, "files_per_request": args.files, "seconds": round(elapsed, 1),
            "requests": requests[0], "file_statuses": {str(s): n for s, n in statuses.items()},
            "client_errors": errors[:5], "rss_before_mb": round(before), "peak_rss_mb": round(max(peak, *samples)),
            "rss_after_mb": round(after), "normal_request_after": normal}


if __name__ == "__main__":
    main()
