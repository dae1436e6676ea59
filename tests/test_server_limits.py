"""The real server on 127.0.0.1 against hostile clients: chunked bodies past the cap, stalled bodies and
headers, requests asking for too many pixels or files; the decode budget that bounds memory, and the
per-file byte limit of `predict`.

Bounded: a few sockets, each with a timeout, loopback only; at most one 64 MP decode (64 MB) or 64 MiB read at a time.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from conftest import record_budgets, serving, synthetic_image
from fastapi.testclient import TestClient
from PIL import Image

from aivsreal.data.images import declared_pixels
from aivsreal.models import build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.serve import app as app_module
from aivsreal.serve.limits import PixelBudget


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = tmp_path_factory.mktemp("m") / "model.pt"
    save_model(model, build_model(default_config("fast")))
    # per-file cap 0.01 MB: the request cap is 64 files' worth + 1 MB of multipart overhead, ~1.6 MB
    with serving(model, "--max-upload-mb", "0.01", "--body-timeout", "1", "--header-timeout", "1") as url:
        yield int(url.rpartition(":")[2])


def status_of(sock: socket.socket) -> int:
    sock.settimeout(20)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ")[1])


def test_chunked_body_over_the_cap_is_refused_as_it_streams(server):
    with socket.create_connection(("127.0.0.1", server), timeout=20) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'
        s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"x" * 65536
        try:
            for _ in range(200):  # up to 13 MB, far past the ~1.6 MB cap
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server closed the connection: refused mid-stream
        assert status_of(s) == 413


def test_a_stalled_body_gets_408(server):
    with socket.create_connection(("127.0.0.1", server), timeout=20) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                  b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
        started = time.time()
        assert status_of(s) == 408 and time.time() - started < 15


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server hangs up (recv gives b"") before `seconds` have passed."""
    sock.settimeout(seconds)
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False


def test_stalled_and_trickled_headers_are_cut_off(server):
    """Slowloris: sockets that never finish their headers lose their connection at the deadline (1 s here)."""
    socks = [socket.create_connection(("127.0.0.1", server), timeout=5) for _ in range(3)]
    try:
        socks[0].sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n")  # stops mid-headers
        socks[1].sendall(b"GET /api/health HTTP/1.1\r\n")
        # socks[2] says nothing at all
        trickler = socket.create_connection(("127.0.0.1", server), timeout=5)
        started, cut = time.time(), False
        try:
            for byte in b"GET /api/health HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                trickler.sendall(bytes([byte]))  # a byte every 0.2 s: never a complete header block
                time.sleep(0.2)
                if time.time() - started > 8:
                    break
        except OSError:
            cut = True
        assert cut or closed_within(trickler, 5)
        assert time.time() - started < 8
        assert all(closed_within(s, 5) for s in socks)
    finally:
        for s in socks:
            s.close()


def test_a_keep_alive_connection_still_serves_requests(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        for _ in range(3):
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            response = b""
            while not response.endswith(b"}"):  # the whole JSON body, then the next request
                chunk = s.recv(4096)
                assert chunk, "the server closed a healthy keep-alive connection"
                response += chunk
            assert response.startswith(b"HTTP/1.1 200")
            time.sleep(0.6)  # under the 1 s deadline each time, past it in total


def png(pixels):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_declared_pixels_reads_the_header_only():
    giant = io.BytesIO()
    Image.new("1", (8000, 7999)).save(giant, "PNG")
    assert declared_pixels(giant.getvalue()) == 8000 * 7999 and len(giant.getvalue()) < 20_000
    assert declared_pixels(b"not an image") == 0


def test_files_past_the_request_pixel_cap_get_413_the_others_verdicts(tmp_path, monkeypatch):
    model = tmp_path / "model.pt"
    save_model(model, build_model(default_config("fast")))
    monkeypatch.setattr(app_module, "REQUEST_PIXELS", 3 * 32 * 32)
    files = [("files", (f"{i}.png", png(synthetic_image(i % 2, np.random.default_rng(i))), "image/png"))
             for i in range(5)]
    with TestClient(app_module.create_app(model, device="cpu")) as c:
        r = c.post("/api/predict", files=files)
    assert r.status_code == 200
    statuses = [e["status"] for e in r.json()["results"]]
    assert statuses == [200, 200, 200, 413, 413]
    assert "pixel limit per request" in r.json()["results"][3]["error"]


def test_pixel_budget_lets_small_decodes_overlap_and_giants_take_turns():
    budget, peak, lock = PixelBudget(100), [0], threading.Lock()

    def work(pixels):
        with budget.hold(pixels):
            with lock:
                peak[0] = max(peak[0], budget.in_use)
            time.sleep(0.05)

    def run(sizes):
        peak[0] = 0
        threads = [threading.Thread(target=work, args=(n,)) for n in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        return peak[0]

    assert run([60] * 6) == 60  # two 60s never overlap
    assert run([10] * 8) > 10  # small ones do
    assert run([500, 10]) <= 100  # over capacity: takes it all, alone
    assert budget.in_use == 0


def test_the_server_still_answers_after_hostile_clients(server):
    assert urllib.request.urlopen(f"http://127.0.0.1:{server}/api/health", timeout=5).status == 200


MEMORY_PROBE = """
import io, sys, threading
from PIL import Image
from aivsreal.data.images import decode_image
from aivsreal.serve.limits import give_freed_images_back
assert give_freed_images_back()
buf = io.BytesIO()
Image.new("RGB", (8000, 7999), (120, 30, 200)).save(buf, "PNG")
giant = buf.getvalue()
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) // 1024
base = rss()
for _ in range(6):  # one after another, each in a new thread (the server's worker threads)
    t = threading.Thread(target=decode_image, args=(giant, 32)); t.start(); t.join()
print(rss() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's mallopt")
def test_decoded_giants_are_given_back_to_the_system():
    """Six 64-megapixel decodes in six threads: without a fixed mmap threshold each thread's heap
    kept ~250 MB; with it, the process is back near where it started."""
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 150


@pytest.fixture(scope="module")
def giant_png():
    """8000x8000 grey: exactly MAX_PIXELS (64 MP), ~60 KB of PNG; 64 MB while Pillow decodes it (mode L)."""
    from aivsreal.data.images import MAX_PIXELS

    buf = io.BytesIO()
    Image.new("L", (8000, 8000), 128).save(buf, "PNG")
    assert declared_pixels(buf.getvalue()) == MAX_PIXELS == 64_000_000 and len(buf.getvalue()) < 200_000
    return buf.getvalue()


def test_more_than_64_files_in_one_request_is_a_413(untrained_model):
    one = png(synthetic_image(1, np.random.default_rng(0)))
    with TestClient(app_module.create_app(untrained_model, device="cpu")) as c:
        r = c.post("/api/predict", files=[("files", (f"{i}.png", one, "image/png")) for i in range(65)])
        assert r.status_code == 413 and r.json()["detail"] == "at most 64 files per request"
        r = c.post("/api/predict", files=[("files", (f"{i}.png", one, "image/png")) for i in range(64)])
    assert app_module.MAX_FILES == 64
    assert r.status_code == 200 and [e["status"] for e in r.json()["results"]] == [200] * 64


def test_the_real_request_pixel_budget_takes_four_64_megapixel_images_and_no_more(untrained_model, giant_png):
    """256 MP a request, unpatched: four maximum-size images fill it exactly; one pixel more is the next
    request's. Each giant decodes (64 MB at a time, the decode budget's capacity) and is scored."""
    assert app_module.REQUEST_PIXELS == 256_000_000
    small = png(synthetic_image(0, np.random.default_rng(1)))
    files = [("files", (f"giant{i}.png", giant_png, "image/png")) for i in range(4)]
    files += [("files", ("small.png", small, "image/png")), ("files", ("junk.png", b"junk", "image/png"))]
    with TestClient(app_module.create_app(untrained_model, device="cpu")) as c:
        r = c.post("/api/predict", files=files)
        assert r.status_code == 200
        results = r.json()["results"]
        assert [e["status"] for e in results] == [200, 200, 200, 200, 413, 413]
        assert all("256,000,000-pixel limit per request" in e["error"] for e in results[4:])
        assert all(e["label"] in ("REAL", "FAKE") and 0 < e["p_fake"] < 1 for e in results[:4])
        alone = c.post("/api/predict", files=[("files", ("small.png", small, "image/png"))])  # fits on its own
        assert alone.json()["results"][0]["status"] == 200


def test_every_decode_in_the_app_holds_its_pixels_in_the_decode_budget(untrained_model, giant_png, monkeypatch):
    """The app's budget has one maximum-size image's capacity, and each file decodes while holding its
    declared pixels (at least 1: undeclared junk too); all is given back after the request. (The app's
    second budget holds decoded views: test_server_slow_clients.py.)"""
    budgets, held = record_budgets(monkeypatch)
    files = [("files", ("giant.png", giant_png, "image/png")),
             ("files", ("small.png", png(np.zeros((50, 40, 3), np.uint8)), "image/png")),
             ("files", ("junk.png", b"junk", "image/png"))]
    with TestClient(app_module.create_app(untrained_model, device="cpu")) as c:
        r = c.post("/api/predict", files=files)
    assert [e["status"] for e in r.json()["results"]] == [200, 200, 400]
    held_while_decoding = [h[0] for h in held]
    assert len(budgets) == 2 and budgets[0].capacity == app_module.DECODE_PIXELS == 64_000_000
    assert held_while_decoding == [64_000_000, 50 * 40, 1] and budgets[0].in_use == 0


def sparse_file(path, size):
    """A file of `size` bytes that takes no disk and no time to make (a hole, read back as zeros)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_predict_refuses_a_file_over_64_mib_before_reading_it(untrained_model, tmp_path, capsys):
    """read_limited: one byte over MAX_FILE_BYTES is refused from its size; exactly the limit is read
    (and, being zeros, is no image); the image beside them is scored."""
    import csv

    from aivsreal.cli import main
    from aivsreal.data.images import MAX_FILE_BYTES

    assert MAX_FILE_BYTES == 64 * 2**20
    sparse_file(tmp_path / "over.png", MAX_FILE_BYTES + 1)
    sparse_file(tmp_path / "at.png", MAX_FILE_BYTES)
    (tmp_path / "ok.png").write_bytes(png(synthetic_image(0, np.random.default_rng(2))))
    assert main(["predict", str(tmp_path / "over.png"), str(tmp_path / "at.png"), str(tmp_path / "ok.png"),
                 "--model", str(untrained_model), "--device", "cpu", "--csv", str(tmp_path / "o.csv")]) == 0
    rows = {r["path"].rpartition("/")[2]: r for r in csv.DictReader(open(tmp_path / "o.csv"))}
    assert rows["over.png"]["error"].endswith("67,108,865 bytes, over the 67,108,864-byte limit per image")
    assert "not a readable image" in rows["at.png"]["error"]
    assert rows["ok.png"]["label"] in ("REAL", "FAKE") and not rows["ok.png"]["error"]
