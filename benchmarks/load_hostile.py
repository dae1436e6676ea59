"""The server under hostile load: giant images, big-byte uploads, slow clients, photo floods, all at once.

    python benchmarks/load_hostile.py                      # both bundled detectors, every case
    python benchmarks/load_hostile.py --model wild         # one detector (the others' rows are kept)

Each case starts the real server (`aivsreal serve`, default limits) on 127.0.0.1, attacks it, and
meanwhile sends a normal request (one 640x480 JPEG) every 0.5 s from 127.0.0.1; attackers connect
from 127.0.0.2..11 (Linux routes all of 127/8 to loopback), as other machines would. Cases:

- giants: `--clients` clients post requests of 4 files that are 8000x7999 images of 16 KB-1 MB
  (64 megapixels each once decoded) for `--seconds`;
- big_bytes: `--clients` clients each post one request of `--big-files` files of 9.9 MB (a small JPEG
  padded with zeros), streamed, reading the answer as soon as it comes;
- trickle: `--trickle` sockets that send a partial header block and then a byte every 10 s, and as
  many that send whole headers (Content-Length 100000) and then a body byte every 10 s, each
  reconnecting when cut, for `--seconds`;
- photos: `--clients` clients each post one request of `--photos` ordinary 1024x768 JPEGs (smooth
  synthetic scenes, ~110 KB);
- mixed: big_bytes, trickle and photos at once, each client repeating, for `--seconds`.

Recorded per case: server RSS (peak: VmHWM reset at the attack's start; before; 2 s after), spooled
temporary-file bytes on disk (sampled every 0.1 s), answers by status, HTTP 500s, and the normal
requests' statuses, share answered 200 within 5 s and p99 latency. Writes
benchmarks/results/load_hostile.{json,md}. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import select
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from load_test import start_server
from PIL import Image

from aivsreal.report.provenance import provenance

RESULTS = Path(__file__).parent / "results"
GOAL_RSS_MB = 1536
BUDGET_MB = 512  # the server's default byte budget (serve --byte-budget-mb)
GOAL_NORMAL_OK = 0.90  # normal requests answered 200 within 5 s during a slow-client attack
CASES = ("giants", "big_bytes", "trickle", "photos", "mixed")
ATTACKERS = [f"127.0.0.{k}" for k in range(2, 12)]
BOUNDARY = b"hostileboundary"
TRICKLE_S = 10.0  # a slow client's pause between bytes


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def photo(seed: int, size: tuple[int, int] = (1024, 768)) -> bytes:
    """An ordinary photo's bytes and statistics: a smooth random scene, JPEG q90 (~110 KB at 1024x768)."""
    small = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    return jpeg(Image.fromarray(small).resize(size, Image.BICUBIC))


def padded_jpeg(size: int = int(9.9 * 2**20)) -> bytes:
    """A small valid JPEG and then zeros up to `size` bytes: decoders stop at the end marker."""
    data = jpeg(Image.fromarray(np.full((64, 64, 3), 120, np.uint8)))
    return data + b"\0" * (size - len(data))


def giant_files() -> dict[str, bytes]:
    """Small files, huge images: what decodes to the most memory per byte sent."""
    files = {}
    for name, image, fmt in (("rgb.png", Image.new("RGB", (8000, 7999), (120, 30, 200)), "PNG"),
                             ("palette.png", Image.new("P", (8000, 7999), 3), "PNG"),
                             ("photo.jpg", Image.new("RGB", (8000, 7999), (10, 200, 90)), "JPEG")):
        buf = io.BytesIO()
        image.save(buf, fmt, optimize=fmt == "PNG")
        files[name] = buf.getvalue()
    return files


def status_of(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process in MB, from /proc (Linux)."""
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def spool_bytes(pid: int) -> int:
    """Disk held by the process's open temporary files (Starlette's spooled uploads), in bytes."""
    total, tmp = 0, tempfile.gettempdir()
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        try:
            if os.readlink(f"{fds}/{fd}").startswith(tmp):
                total += os.stat(f"{fds}/{fd}").st_blocks * 512
        except OSError:
            pass  # closed meanwhile
    return total


def multipart(parts: list[tuple[str, bytes]]) -> tuple[int, Callable[[], Iterator[bytes]]]:
    """(length, chunks) of a multipart body of `files` parts, generated as it is sent (a client holds
    one file, not the request)."""
    heads = [b'--%s\r\nContent-Disposition: form-data; name="files"; filename="%s"\r\n'
             b"Content-Type: application/octet-stream\r\n\r\n" % (BOUNDARY, name.encode()) for name, _ in parts]
    tail = b"--%s--\r\n" % BOUNDARY
    length = sum(len(h) + len(d) + 2 for h, (_, d) in zip(heads, parts, strict=True)) + len(tail)

    def chunks() -> Iterator[bytes]:
        for head, (_, data) in zip(heads, parts, strict=True):
            yield head
            for i in range(0, len(data), 2**20):
                yield data[i : i + 2**20]
            yield b"\r\n"
        yield tail

    return length, chunks


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), body


def post_streamed(port: int, parts: list[tuple[str, bytes]], source: str = "127.0.0.1") -> tuple[int, bytes]:
    """POST /api/predict with a generated body; an answer that comes before the body is all sent (a
    refusal) is read at once. (0, b"") when the server hung up without one."""
    length, chunks = multipart(parts)
    with socket.socket() as s:
        s.settimeout(120)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; "
                      b"boundary=%s\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, length))
            for chunk in chunks():
                if select.select([s], [], [], 0)[0]:
                    break  # answered early
                s.sendall(chunk)
            return read_answer(s)
        except OSError:
            return 0, b""


class Tally:
    """Answers of one case, from many threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # whole-request statuses, attack traffic
        self.files: Counter[str] = Counter()  # per-file statuses inside 200 answers
        self.normal: list[tuple[int, float]] = []  # (status, seconds)
        self.slow: Counter[str] = Counter()  # trickling sockets: how each ended

    def answer(self, status: int, body: bytes) -> None:
        with self.lock:
            self.requests[str(status) if status else "no answer"] += 1
            if status == 200:
                self.files.update(str(e["status"]) for e in json.loads(body)["results"])


def normal_client(port: int, stop: threading.Event, tally: Tally, image: bytes) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/api/predict", timeout=30,
                           files={"files": ("normal.jpg", image, "image/jpeg")})
            status = r.status_code
        except httpx.HTTPError:
            status = 0
        with tally.lock:
            tally.normal.append((status, time.perf_counter() - started))
        stop.wait(0.5)


async def trickler(port: int, source: str, whole_headers: bool, stop: threading.Event, tally: Tally) -> None:
    """One slow client, reconnecting whenever it is cut: a byte every 10 s, of headers or of a body."""
    head = (b"POST /api/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n" if whole_headers else b"POST /api/predict HTTP/1.1\r\nHost: bench\r\n")
    kind = "body" if whole_headers else "headers"
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            tally.slow[f"{kind}: connect failed"] += 1
            await asyncio.sleep(1)
            continue
        try:
            writer.write(head)
            ending = "open at the end"
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(4096), TRICKLE_S)
                except TimeoutError:
                    writer.write(b"x")  # one more byte every 10 s
                    continue
                ending = f"answered {data.split(b' ')[1].decode()}" if data.startswith(b"HTTP/1.1 ") else "cut"
                break
            tally.slow[f"{kind}: {ending}"] += 1
        except OSError:
            tally.slow[f"{kind}: cut"] += 1
        finally:
            writer.close()


def trickle_attack(port: int, n: int, stop: threading.Event, tally: Tally) -> None:
    async def run() -> None:
        await asyncio.gather(*(trickler(port, ATTACKERS[k % len(ATTACKERS)], k % 2 == 1, stop, tally)
                               for k in range(2 * n)))

    asyncio.run(run())


def flood(port: int, clients: int, make_parts: Callable[[int], list[tuple[str, bytes]]], stop: threading.Event | None,
          tally: Tally) -> None:
    """`clients` threads, each posting its parts once (stop None) or until `stop`."""
    def client(k: int) -> None:
        source = ATTACKERS[k % len(ATTACKERS)]
        while True:
            tally.answer(*post_streamed(port, make_parts(k), source))
            if stop is None or stop.is_set():
                return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_case(case: str, model: str, args: argparse.Namespace, data: dict) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(model, port)
    pid, tally, stop, done = server.pid, Tally(), threading.Event(), threading.Event()
    rss_samples, spool_samples = [], []
    try:
        time.sleep(1)
        before = status_of(pid)["VmRSS"]
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak of this attack alone

        def sample() -> None:
            while not done.is_set():
                rss_samples.append(status_of(pid)["VmRSS"])
                spool_samples.append(spool_bytes(pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        normal = threading.Thread(target=normal_client, args=(port, done, tally, data["normal"]))
        normal.start()
        started = time.perf_counter()
        big = lambda k: [(f"big{i}.jpg", data["big"]) for i in range(args.big_files)]  # noqa: E731
        photos = lambda k: [(f"photo{i}.jpg", data["photos"][(k + i) % len(data["photos"])])  # noqa: E731
                            for i in range(args.photos)]
        giants = lambda k: [(name, data["giants"][name]) for name in  # noqa: E731
                            [list(data["giants"])[(k + i) % 3] for i in range(4)]]
        if case == "giants":
            threading.Timer(args.seconds, stop.set).start()
            flood(port, args.clients, giants, stop, tally)
        elif case == "big_bytes":
            flood(port, args.clients, big, None, tally)
        elif case == "photos":
            flood(port, args.clients, photos, None, tally)
        elif case == "trickle":
            threading.Timer(args.seconds, stop.set).start()
            trickle_attack(port, args.trickle, stop, tally)
        else:  # mixed
            threading.Timer(args.seconds, stop.set).start()
            attacks = [threading.Thread(target=trickle_attack, args=(port, args.trickle, stop, tally)),
                       threading.Thread(target=flood, args=(port, max(1, args.clients // 2), big, stop, tally)),
                       threading.Thread(target=flood, args=(port, max(1, args.clients // 2), photos, stop, tally))]
            for t in attacks:
                t.start()
            for t in attacks:
                t.join()
        elapsed = time.perf_counter() - started
        time.sleep(2)
        done.set()
        sampler.join()
        normal.join()
        final = status_of(pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    normal_status = Counter(str(s) if s else "no answer" for s, _ in tally.normal)
    latencies = [t for _, t in tally.normal]
    ok = sum(1 for s, t in tally.normal if s == 200 and t <= 5)
    fives = tally.requests.get("500", 0) + normal_status.get("500", 0) + tally.files.get("500", 0)
    peak_rss = max(final["VmHWM"], *rss_samples)
    spool_mb = max(spool_samples, default=0) / 2**20
    row = {"case": case, "seconds": round(elapsed, 1), "rss_before_mb": round(before),
           "peak_rss_mb": round(peak_rss), "rss_after_mb": round(final["VmRSS"]),
           "peak_spool_mb": round(spool_mb, 1), "requests": dict(tally.requests), "file_statuses": dict(tally.files),
           "slow_clients": dict(tally.slow), "http_500": fives, "normal_requests": len(tally.normal),
           "normal_statuses": dict(normal_status),
           "normal_200_within_5s": round(ok / len(tally.normal), 3) if tally.normal else None,
           "normal_p99_s": round(float(np.percentile(latencies, 99)), 2) if latencies else None}
    goals = {"peak_rss": peak_rss <= GOAL_RSS_MB, "spool": spool_mb <= BUDGET_MB, "no_500": fives == 0}
    if case in ("trickle", "mixed"):
        goals["normal_during_slow_clients"] = bool(tally.normal) and ok / len(tally.normal) >= GOAL_NORMAL_OK
    row["goals_met"] = goals
    print(json.dumps(row), flush=True)
    return row


def markdown(result: dict) -> str:
    lines = ["# Server under hostile load", "",
             "Written by `benchmarks/load_hostile.py` (its docstring describes each case). Goals (issue 51): "
             f"peak RSS <= {GOAL_RSS_MB} MB, spool <= the {BUDGET_MB} MB byte budget, no HTTP 500, and during "
             f"slow-client attacks >= {GOAL_NORMAL_OK:.0%} of normal requests answered 200 within 5 s. "
             "Bold: a goal not met.", ""]
    for name, entry in result["models"].items():
        a = entry["settings"]
        lines += [f"## `{name}`", "",
                  f"Measured {entry['date']}: `{entry['command']}` ({entry['provenance'].get('cpu')}, "
                  f"{entry['provenance'].get('threads')} threads). Clients {a['clients']}, giants and mixed and "
                  f"trickle for {a['seconds']} s, {a['big_files']} x 9.9 MB files per big request, "
                  f"{a['photos']} photos per photo request, {a['trickle']} + {a['trickle']} slow sockets.", "",
                  "| case | s | RSS before | peak RSS | after | peak spool | attack answers | per-file | "
                  "slow sockets | 500s | normal: 200 in 5 s | normal p99 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in entry["cases"]:
            g = r["goals_met"]

            def mark(text: str, key: str, g=g) -> str:
                return text if g.get(key, True) else f"**{text}**"

            counts = lambda c: ", ".join(f"{n} x {s}" for s, n in sorted(c.items())) or "-"  # noqa: E731
            n, ok = r["normal_requests"], r["normal_200_within_5s"]
            share = "-" if ok is None else f"{ok:.0%} of {n}"
            rss, spool = f"{r['peak_rss_mb']} MB", f"{r['peak_spool_mb']} MB"
            lines.append(
                f"| {r['case']} | {r['seconds']} | {r['rss_before_mb']} MB | {mark(rss, 'peak_rss')} "
                f"| {r['rss_after_mb']} MB | {mark(spool, 'spool')} | {counts(r['requests'])} "
                f"| {counts(r['file_statuses'])} | {counts(r['slow_clients'])} | {mark(str(r['http_500']), 'no_500')} "
                f"| {mark(share, 'normal_during_slow_clients')} | {r['normal_p99_s']} s |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="a model reference, repeatable (default: cifake and wild)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0, help="giants, trickle and mixed")
    ap.add_argument("--big-files", type=int, default=32, help="9.9 MB files per big request")
    ap.add_argument("--photos", type=int, default=64, help="1024x768 photos per photo request")
    ap.add_argument("--trickle", type=int, default=50, help="slow sockets of each kind")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(CASES):
        sys.exit(f"unknown cases: {', '.join(sorted(unknown))}")
    data = {"giants": giant_files(), "big": padded_jpeg(), "photos": [photo(i) for i in range(16)],
            "normal": photo(999, (640, 480))}
    path = RESULTS / "load_hostile.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    result = {"provenance": provenance().to_dict(), "models": old.get("models", {})}
    command = "python benchmarks/load_hostile.py " + " ".join(sys.argv[1:])
    for model in args.model or ["cifake", "wild"]:
        rows = [run_case(case, model, args, data) for case in cases]
        result["models"][model] = {"provenance": result["provenance"], "command": command,
                                   "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                                   "settings": {k: getattr(args, k) for k in ("clients", "seconds", "big_files",
                                                                              "photos", "trickle")},
                                   "cases": rows}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "load_hostile.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
