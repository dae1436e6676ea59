"""Load test of `aivsreal serve` on loopback: N concurrent clients, bounded in time and count.

    python benchmarks/load_test.py --model runs/fast/model.pt --data ../shared/data/cifake

Starts the real server on 127.0.0.1, sends single-image predictions from `--clients` threads
for `--seconds` (at most `--max-requests` per client), checks every answer against the
Python API's P(fake) for the same bytes, and writes benchmarks/results/load.{json,md}.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from aivsreal.predict.detector import Detector
from aivsreal.report.provenance import provenance

RESULTS = Path(__file__).parent / "results"


def sample_images(data: str | None, n: int) -> list[bytes]:
    """Real CIFAKE test JPEGs when available (as users would send), else random PNGs."""
    test_zip = Path(data or "") / "test.zip"
    if data and test_zip.exists():
        with zipfile.ZipFile(test_zip) as zf:
            names = [m for m in zf.namelist() if m.endswith(".jpg")]
            picks = np.random.default_rng(0).choice(len(names), n, replace=False)
            return [zf.read(names[i]) for i in picks]
    import io

    from PIL import Image

    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def start_server(model: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "aivsreal", "serve", "--model", model, "--host", "127.0.0.1",
                             "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def run_clients(client: Callable[[int], None], n: int) -> float:
    """Run `client(k)` for k in 0..n-1 in threads at once; the seconds until the last one ended."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", help="CIFAKE folder with test.zip (else random images)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=5000, help="per client")
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args()

    images = sample_images(args.data, args.images)
    expected = [p.p_fake for p in Detector.load(args.model, device="cpu").predict(images)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(args.model, port)
    latencies: list[float] = []
    failures: list[str] = []
    sent = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + args.seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for j in range(args.max_requests):
                if time.perf_counter() >= stop_at:
                    return
                i = (k * 7919 + j) % len(images)
                t = time.perf_counter()
                try:
                    r = http.post("/api/predict", files={"files": (f"{i}.jpg", images[i], "image/jpeg")})
                    got = r.json()["results"][0]["p_fake"] if r.status_code == 200 else None
                    ok = got is not None and abs(got - expected[i]) <= 1e-5
                    why = None if ok else f"image {i}: status {r.status_code}, p_fake {got} vs {expected[i]}"
                except Exception as e:
                    why = f"image {i}: {type(e).__name__}: {e}"
                with lock:
                    sent[0] += 1
                    if why:
                        failures.append(why)
                    else:
                        latencies.append(time.perf_counter() - t)

    elapsed = run_clients(client, args.clients)
    server.terminate()
    server.wait(timeout=10)

    lat_ms = np.array(latencies) * 1000
    result = {
        "provenance": provenance().to_dict(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "python benchmarks/load_test.py " + " ".join(sys.argv[1:]),
        "clients": args.clients, "seconds": round(elapsed, 1), "requests": sent[0],
        "correct": len(latencies), "failed_or_wrong": len(failures), "failures_sample": failures[:5],
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 1) if len(lat_ms) else None,
        "latency_ms_p99": round(float(np.percentile(lat_ms, 99)), 1) if len(lat_ms) else None,
        "latency_ms_mean": round(statistics.fmean(lat_ms), 1) if len(lat_ms) else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "load.md").write_text(
        f"Measured {result['date']}: `{result['command']}`\n\n"
        "| clients | seconds | requests | correct | failed or wrong | req/s | p50 ms | p99 ms |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {args.clients} | {result['seconds']} | {result['requests']} | {result['correct']} | "
        f"{result['failed_or_wrong']} | {result['requests_per_s']} | {result['latency_ms_p50']} | "
        f"{result['latency_ms_p99']} |\n")
    print(json.dumps(result, indent=2))
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
