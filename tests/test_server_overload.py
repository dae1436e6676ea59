"""Overload is an answer, never a 500 (issue 51, item 3): a full inference queue or a wait past its limit
is a 503 with Retry-After and a JSON body; any unexpected error in any route is a JSON 500, never text/plain.

Bounded: the scorer is patched to block on an Event or raise; no wait is longer than a few seconds.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.routing import Route

from aivsreal.models import build_model, default_config
from aivsreal.models.file import save_model
from aivsreal.predict.detector import Detector
from aivsreal.serve.app import create_app


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("overload") / "model.pt"
    save_model(path, build_model(default_config("fast")))
    return path


def png(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def one_file(seed: int = 0) -> dict:
    return {"files": (f"{seed}.png", png(seed), "image/png")}


def assert_json_refusal(r, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert isinstance(r.json()["error"], str) and "\n" not in r.json()["error"]


@pytest.fixture
def blocked_scorer(monkeypatch):
    """Detector.score waits on the returned Event (at most 20 s), then scores as usual."""
    release, real_score = threading.Event(), Detector.score

    def score(self, pixels, *args, **kwargs):
        release.wait(20)
        return real_score(self, pixels, *args, **kwargs)

    monkeypatch.setattr(Detector, "score", score)
    yield release
    release.set()


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.01)


def test_a_full_inference_queue_is_a_503_with_retry_after_then_normal_again(model_path, blocked_scorer):
    app = create_app(model_path, device="cpu", max_queued_images=2, infer_timeout_s=30)
    predictor = app.state.predictor
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/api/predict", files=one_file(1))  # scoring, blocked
        wait_for(lambda: predictor.queued_images == 1)
        second = pool.submit(c.post, "/api/predict", files=one_file(2))  # waits in the queue
        wait_for(lambda: predictor.queued_images == 2)
        started = time.monotonic()
        r = c.post("/api/predict", files=one_file(3))
        assert time.monotonic() - started < 5  # refused at once, not after the wait
        assert_json_refusal(r, 503)
        assert int(r.headers["retry-after"]) >= 1 and "queue" in r.json()["error"]
        blocked_scorer.set()
        assert first.result(20).status_code == 200 and second.result(20).status_code == 200
        wait_for(lambda: predictor.queued_images == 0)  # no slot leaked
        again = c.post("/api/predict", files=[("files", (f"{i}.png", png(i), "image/png")) for i in range(2)])
        assert again.status_code == 200 and [e["status"] for e in again.json()["results"]] == [200, 200]
    assert predictor.queued_images == 0


def test_a_request_too_large_for_the_queue_is_a_503(model_path):
    app = create_app(model_path, device="cpu", max_queued_images=2)
    with TestClient(app) as c:
        r = c.post("/api/predict", files=[("files", (f"{i}.png", png(i), "image/png")) for i in range(3)])
    assert_json_refusal(r, 503)
    assert int(r.headers["retry-after"]) >= 1 and app.state.predictor.queued_images == 0


def test_an_inference_wait_past_its_limit_is_a_503_not_a_500(model_path, blocked_scorer):
    app = create_app(model_path, device="cpu", infer_timeout_s=0.5)
    with TestClient(app, raise_server_exceptions=False) as c:
        started = time.monotonic()
        r = c.post("/api/predict", files=one_file())
        assert time.monotonic() - started < 5
        assert_json_refusal(r, 503)
        assert int(r.headers["retry-after"]) >= 1 and "0.5 s" in r.json()["error"]
        blocked_scorer.set()
        wait_for(lambda: app.state.predictor.queued_images == 0)
        assert c.post("/api/predict", files=one_file()).status_code == 200


EXPECTED_ROUTES = {("GET", "/"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/api/health"),
                   ("GET", "/api/model"), ("GET", "/api/model/confusion.png"), ("POST", "/api/predict")}


def routes_of(app) -> list[tuple[str, str, Route]]:
    return [(method, route.path, route) for route in app.routes if isinstance(route, Route)
            for method in sorted(route.methods or ()) if method != "HEAD"]


def call(client: TestClient, method: str, path: str, query: str = ""):
    if method == "POST":
        return client.post(path + query, files=one_file())
    return client.request(method, path + query)


def test_every_route_answers_json_when_it_fails(model_path, monkeypatch, caplog):
    """A scorer that raises, then every route's own handler raising: each answer is a JSON 500 of one line
    (or a 503), never Starlette's plain-text 'Internal Server Error', and the error is logged."""

    def broken_score(self, pixels, *args, **kwargs):
        raise RuntimeError("the scorer broke\nwith a second line")

    monkeypatch.setattr(Detector, "score", broken_score)
    app = create_app(model_path, device="cpu")
    walked = routes_of(app)
    assert EXPECTED_ROUTES <= {(m, p) for m, p, _ in walked}
    with TestClient(app, raise_server_exceptions=False) as c:
        for query in ("", "?explain=1"):
            r = call(c, "POST", "/api/predict", query)
            assert r.status_code in (500, 503) and r.headers["content-type"].startswith("application/json")
            assert_json_refusal(r, r.status_code)
        for method, path, _ in walked:  # the scorer is not theirs: they answer as usual
            r = call(c, method, path)
            assert r.status_code in (200, 404, 500, 503) and not r.headers["content-type"].startswith("text/plain")

        def raising(scope, receive, send):
            raise RuntimeError(f"{scope['path']} broke")

        for _, _, route in walked:
            monkeypatch.setattr(route, "app", raising)
        for method, path, _ in walked:
            caplog.clear()
            r = call(c, method, path)
            assert_json_refusal(r, 500)
            assert "broke" not in r.json()["error"]  # the details go to the log, not the client
            assert any(f"{path} broke" in rec.getMessage() or (rec.exc_info and f"{path} broke" in str(rec.exc_info[1]))
                       for rec in caplog.records), (method, path)


def test_a_wait_the_queue_cannot_meet_is_refused_at_once():
    """From the measured seconds per image: a request that would wait past the limit is not queued
    (an empty queue takes any request: a slow first batch must not lock the server out)."""
    from aivsreal.serve.batcher import BatchingPredictor, Overloaded

    release = threading.Event()

    class Slow:
        def score(self, pixels):
            release.wait(10)
            return np.full(len(pixels), 0.5), None

    predictor = BatchingPredictor(Slow(), timeout=1.5)
    predictor.seconds_per_image = 1.0  # as if measured on an earlier batch
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(predictor.predict, np.zeros((1, 8, 8, 3), np.uint8))  # empty queue: admitted
            wait_for(lambda: predictor.queued_images == 1)
            started = time.monotonic()
            with pytest.raises(Overloaded, match="over the 1.5 s limit") as refused:
                predictor.predict(np.zeros((1, 8, 8, 3), np.uint8))
            assert time.monotonic() - started < 0.5 and refused.value.retry_after_s == 1
            release.set()
            assert len(first.result(10)[0]) == 1
        assert predictor.queued_images == 0
    finally:
        release.set()
        predictor.close()
