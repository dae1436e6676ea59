"""Hardening II (issue 51, items 1, 2, 4): the byte budget, slow clients, bounded tiled inference.

The real server (uvicorn with `connection_guard`) runs in a thread on 127.0.0.1 with small limits so
that each attack is a few sockets and a few seconds: a 2 MB byte budget, a 1 s grace before the
240 bytes/s minimum body rate, a 2 s header deadline, 16 connections in all and 6 per client address.
Attackers connect from 127.0.0.2..5 (Linux routes all of 127/8 to loopback), normal clients from
127.0.0.1, as distinct machines would.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn
from conftest import record_budgets, synthetic_image
from fastapi.testclient import TestClient
from PIL import Image

from aivsreal.serve import app as app_module
from aivsreal.serve.batcher import BatchingPredictor, views_per_pass
from aivsreal.serve.connections import connection_guard

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="binds 127.0.0.2..5 (Linux loopback)")

GRACE_S, HEADER_S, MAX_CONNECTIONS, PER_CLIENT = 1.0, 2.0, 16, 6


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(synthetic_image(seed % 2, np.random.default_rng(seed))).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(untrained_model):
    """(port, app) of a live server with the small limits above."""
    app = app_module.create_app(untrained_model, device="cpu", byte_budget_mb=2, body_grace_s=GRACE_S,
                                budget_wait_s=0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", limit_concurrency=None,
                            http=connection_guard(HEADER_S, MAX_CONNECTIONS, PER_CLIENT))
    live = uvicorn.Server(config)
    thread = threading.Thread(target=live.run, daemon=True)
    thread.start()
    for _ in range(300):
        if live.started:
            break
        time.sleep(0.05)
    yield port, app
    live.should_exit = True
    thread.join(10)


def connect(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.settimeout(15)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one response, read to the end of its Content-Length; (0, {}, b"") if the
    server hung up without one."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return 0, {}, b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split()[1]), headers, body
    except ConnectionResetError:
        return 0, {}, b""


def normal_requests(port: int, n: int, pause_s: float = 0.2) -> list[int]:
    """Statuses of `n` one-image predictions from 127.0.0.1, one after another, each on a new connection."""
    statuses = []
    for i in range(n):
        r = httpx.post(f"http://127.0.0.1:{port}/api/predict", timeout=20,
                       files={"files": (f"{i}.png", png_bytes(i), "image/png")})
        statuses.append(r.status_code)
        time.sleep(pause_s)
    return statuses


def body_head(length: int) -> bytes:
    return (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: %d\r\n\r\n" % length)


def test_trickling_bodies_are_cut_off_and_normal_requests_still_answered(server):
    """A byte every 0.3 s resets any stall timer; under 240 bytes/s past the 1 s grace it is a 408. The
    address's connections past its cap of 6 get a JSON 503 with Retry-After; another address is served."""
    port, _ = server
    tricklers = [connect(port, "127.0.0.2") for _ in range(PER_CLIENT + 4)]
    outcomes: list[tuple[int, float, bytes]] = []

    def trickle(sock: socket.socket) -> None:
        started = time.monotonic()
        try:
            sock.sendall(body_head(100_000))
            for byte in b"--b\r\n" + b"x" * 200:  # would take a minute
                sock.sendall(bytes([byte]))
                sock.settimeout(0.3)
                try:
                    status, _, body = answer(sock)
                    outcomes.append((status, time.monotonic() - started, body))
                    return
                except TimeoutError:
                    sock.settimeout(15)
        except OSError:
            pass
        outcomes.append((0, time.monotonic() - started, b""))

    with ThreadPoolExecutor(len(tricklers) + 1) as pool:
        attacks = [pool.submit(trickle, s) for s in tricklers]
        time.sleep(0.3)
        normal = pool.submit(normal_requests, port, 5)
        for a in attacks:
            a.result()
        statuses = normal.result()
    for s in tricklers:
        s.close()
    assert statuses == [200] * 5
    cut = [body for status, _, body in outcomes if status == 408]
    refused = [body for status, _, body in outcomes if status == 503]
    assert len(cut) == PER_CLIENT and len(refused) == 4, outcomes
    assert all("slower than 240 bytes/s" in json.loads(body)["error"] for body in cut)  # not the stall timer
    assert "6 connections open" in json.loads(refused[0])["detail"]


def test_connections_waiting_for_headers_give_way_to_new_ones(server):
    """16 partial-header sockets from four addresses fill the server; each new connection takes the place
    of the longest-waiting one, so normal requests are answered; none outlives the 2 s header deadline."""
    port, _ = server
    idle = []
    for k in range(MAX_CONNECTIONS):
        s = connect(port, f"127.0.0.{2 + k % 4}")
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")  # never finished
        idle.append(s)
    time.sleep(0.2)
    try:
        assert normal_requests(port, 3, pause_s=0) == [200] * 3
        assert all(answer(s)[0] == 0 for s in idle)  # each hung up without an answer (a 15 s socket timeout)
    finally:
        for s in idle:
            s.close()


def test_a_request_past_the_byte_budget_gets_503_json_with_retry_after(server):
    """A body's bytes are held as they stream: 1.2 MB sent of a 1.4 MB request holds 1.2 MB of the 2 MB
    budget; a 1 MB request then waits 0.5 s and gets 503; /api/health (no body) is answered meanwhile;
    once the first request ends every byte is given back."""
    port, app = server
    budget = app.state.byte_budget
    hog = connect(port, "127.0.0.3")
    try:
        body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n\r\n"
                + b"x" * 1_400_000 + b"\r\n--b--\r\n")
        hog.sendall(body_head(len(body)) + body[:1_200_000])
        for _ in range(100):
            if budget.in_use >= 1_200_000:
                break
            time.sleep(0.05)
        assert budget.in_use >= 1_200_000
        r = httpx.post(f"http://127.0.0.1:{port}/api/predict", timeout=20,
                       files={"files": ("big.jpg", b"\xff\xd8" + b"\0" * 1_000_000, "image/jpeg")})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"] == r.json()["detail"] and "MB of request bodies" in r.json()["error"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
        hog.sendall(body[1_200_000:])
        status, _, body = answer(hog)
        assert status == 400 and json.loads(body)["results"][0]["status"] == 400  # not an image: its own 400
    finally:
        hog.close()
    time.sleep(0.2)
    assert budget.in_use == 0 and budget.peak >= 1_200_000


def test_a_client_that_sends_its_whole_body_before_reading_gets_the_refusal(server):
    """A 50 MB body, refused from its Content-Length before a byte is read (413 here; the budget's 503 takes
    the same path): the server reads and discards the rest, so the client's send completes and it reads
    the answer. Closing with unread data is a reset that loses it (7 of 8 big uploads read no answer)."""
    port, _ = server
    body = b"x" * (50 * 2**20)
    with connect(port, "127.0.0.4") as s:
        s.sendall(body_head(len(body)) + body)
        status, _, refused = answer(s)
    assert status == 413 and "request is over" in json.loads(refused)["error"]


class Recorder:
    """A stand-in detector: P(fake) = each view's first pixel / 255, and the views of each forward pass."""

    def __init__(self):
        self.passes: list[int] = []

    def score(self, pixels):
        self.passes.append(len(pixels))
        return pixels[:, 0, 0, 0] / 255.0, None


def test_a_tiled_request_is_scored_in_bounded_passes_and_answered_in_order():
    """One request of 100 views (eleven 9-tile photos and one more) with 32 views a pass: four passes, the
    scores each caller gets are its own. A 224 px model reads 8 views a pass, a 32 px one 256."""
    assert views_per_pass(224) == 8 and views_per_pass(32) == 256 and views_per_pass(4096) == 1
    rec = Recorder()
    predictor = BatchingPredictor(rec, max_batch=32)
    try:
        pixels = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1).repeat(3, axis=3)
        p, _ = predictor.predict(pixels, images=12)
    finally:
        predictor.close()
    assert max(rec.passes) <= 32 and sum(rec.passes) == 100
    np.testing.assert_allclose(p, np.arange(100) / 255.0)
    assert predictor.queued_images == 0


def test_grad_cam_runs_on_the_inference_thread_inside_the_queue(untrained_model, monkeypatch):
    """Grad-CAM is inference too (a forward and a backward pass per image): it waits its turn on the model's
    thread and holds queue slots, so an explain request cannot bypass the bound; the heap is handed back
    when the queue runs dry."""
    from aivsreal.explain.gradcam import Explainer

    seen = []
    real = Explainer.explain

    def explain(self, batch, **kw):
        seen.append(threading.current_thread().name)
        return real(self, batch, **kw)

    monkeypatch.setattr(Explainer, "explain", explain)
    with TestClient(app_module.create_app(untrained_model, device="cpu", max_queued_images=2)) as c:
        files = [("files", (f"{i}.png", png_bytes(i), "image/png")) for i in range(2)]
        r = c.post("/api/predict?explain=1", files=files)
        assert r.status_code == 200 and all("gradcam_png" in e for e in r.json()["results"])
        assert seen == ["aivsreal-inference"]
        predictor = c.app.state.predictor
        for _ in range(50):
            if predictor.trims:
                break
            time.sleep(0.05)
        assert predictor.trims >= 1 and predictor.queued_images == 0


def test_decoded_views_are_held_in_a_budget_and_a_refused_request_decodes_nothing(untrained_model, monkeypatch):
    """Each request holds its worst case of decoded views (files x views x input size squared) from before
    its first decode until it is scored; a request the queue would refuse gets 503 before any decode."""
    budgets, held = record_budgets(monkeypatch)
    with TestClient(app_module.create_app(untrained_model, device="cpu", max_queued_images=3)) as c:
        files = [("files", (f"{i}.png", png_bytes(i), "image/png")) for i in range(3)]
        assert c.post("/api/predict", files=files).status_code == 200
        assert budgets[1].capacity == app_module.VIEW_PIXELS and [h[1] for h in held] == [3 * 32 * 32] * 3
        assert budgets[1].in_use == 0
        held.clear()
        r = c.post("/api/predict", files=files + [("files", ("3.png", png_bytes(3), "image/png"))])
        assert r.status_code == 503 and "queue is full" in r.json()["error"] and held == []
