"""`aivsreal serve`: a REST API and a single-page UI around one trained model.

POST /api/predict takes one or many images (multipart field `files`). Each file is answered
on its own: a corrupt or oversized file gets an error entry while the others get verdicts.
With `?explain=1` each verdict also carries `gradcam_png`: the view the model read under its Grad-CAM
heat map for the predicted class, as a base64 PNG (a native-crop model's whole canvas, every tile's map
put back in place; explain/overlays.py `picture`).
Every verdict carries the domain check: `in_domain`, `domain_score` (> 1: unlike the training
images) and `domain_reason`, and `experimental` (true when the model's metadata marks it so; /api/model
says why in `experimental_reason`). The response status is 200 when at least one file was scored, else
the files' own status (400 unreadable, 413 too large).
Overload is an answer: when the inference queue is full, a wait passes its limit, or the request
bodies in the server hold the whole byte budget, the request gets 503 with Retry-After; any unexpected
error in any route is a JSON 500 of one line (the traceback is logged).
"""

from __future__ import annotations

import base64
import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio
import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

from aivsreal import __version__
from aivsreal.data.images import MAX_PIXELS, BadImageError, declared_pixels
from aivsreal.explain.gradcam import Explainer
from aivsreal.explain.overlays import blend, picture, png_bytes
from aivsreal.models.card import card_of
from aivsreal.models.hub import ModelSource, resolve_model
from aivsreal.models.network import combine_views
from aivsreal.predict.detector import Detector
from aivsreal.serve.batcher import BatchingPredictor, Overloaded, views_per_pass
from aivsreal.serve.connections import connection_guard
from aivsreal.serve.limits import (
    BodyLimit,
    ByteBudget,
    JsonErrors,
    PixelBudget,
    error_body,
    give_freed_images_back,
)

DEFAULT_MAX_MB = 10.0
MAX_FILES = 64
BODY_STALL_S = 30.0  # a client silent this long mid-body gets 408
MIN_BODY_RATE = 240.0  # bytes/s over the body so far, once BODY_GRACE_S have passed (Kestrel's default); else 408
BODY_GRACE_S = 5.0
HEADER_DEADLINE_S = 10.0  # a connection without complete request headers this long is closed
MAX_CONNECTIONS = 256  # open at once; past it a new one replaces the longest wait for headers, else 503
MAX_CONNECTIONS_PER_CLIENT = 32  # per client address; past it 503
# Request bodies, memory and spool together, across all requests: a byte that does not fit waits up to
# BUDGET_WAIT_S, then 503. The last BUDGET_RESERVE bytes (at most 1/8) serve only requests of at most SMALL_REQUEST.
BYTE_BUDGET_MB = 512.0
BUDGET_RESERVE = 32 * 2**20
SMALL_REQUEST = 2**20
BUDGET_WAIT_S = 10.0
# Decode memory: all requests together decode at most one maximum-size image's pixels at a time
# (about 256 MB in Pillow), and one request asks for at most four such images' worth.
DECODE_PIXELS = MAX_PIXELS
REQUEST_PIXELS = 4 * MAX_PIXELS
# Decoded views held by requests, from before their decode until they are scored: 32 MP (96 MB of uint8).
# A request holds its worst case, files x views per file (a tiled model's 9) x the input size squared: one
# 64-photo request to the 224 px `wild` detector (87 MB) at a time, dozens to a 32 px model. Past a wait of
# INFER_TIMEOUT_S, 503. Before: 8 such requests decoded side by side, and the server peaked at 1.7 GB.
VIEW_PIXELS = 32_000_000
# Inference backlog: images accepted and not yet scored, across all requests, and how long one request
# may wait for its scores. Past either the request gets 503 + Retry-After, never a 500.
MAX_QUEUED_IMAGES = 512
INFER_TIMEOUT_S = 60.0


def model_info(det: Detector, source: ModelSource) -> dict[str, Any]:
    summary = det.meta.summary
    metrics = summary.get("metrics", {})
    domain = det.meta.domain
    return {
        "name": det.name,
        "detector": source.name,
        "file": source.path.name,
        "aivsreal_version": det.meta.aivsreal_version,
        "image_size": det.config.image_size,
        "input_size": det.config.input_size,
        "threshold": det.threshold,
        "tta": det.tta,
        "temperature": det.meta.temperature,
        "operating_point": det.meta.operating_point,
        "positive_class_in_metrics": "REAL",
        "params": summary.get("model", {}).get("params"),
        "metrics": {split: {k: m.get(k) for k in ("n", "accuracy", "precision", "recall", "f1", "roc_auc",
                                                   "confusion_matrix", "domain_flagged")}
                    for split, m in metrics.items()},
        "domain": None if domain is None else {
            "short_side_px": list(domain.short_side), "max_aspect": domain.aspect[1],
            "feature_threshold": domain.threshold, "val_flagged": domain.val_flagged},
        "experimental": det.experimental is not None,
        "experimental_reason": det.experimental,  # one line, or None
        "card": card_of(source, det.config, det.meta),
    }


def create_app(model_path: str | Path | None = None, max_upload_mb: float = DEFAULT_MAX_MB, device: str = "auto",
               body_timeout_s: float = BODY_STALL_S, precision: str = "bf16",
               max_queued_images: int = MAX_QUEUED_IMAGES, infer_timeout_s: float = INFER_TIMEOUT_S,
               byte_budget_mb: float = BYTE_BUDGET_MB, min_body_rate: float = MIN_BODY_RATE,
               body_grace_s: float = BODY_GRACE_S, budget_wait_s: float = BUDGET_WAIT_S) -> FastAPI:
    """`model_path`: any model reference (file, folder, bundled name, Hub id); None: the default detector.
    `precision="fp32"` answers exactly what `predict --precision fp32` does (bf16 is faster on CPUs with it).
    `max_queued_images`, `infer_timeout_s`: the inference queue's bound and a request's longest wait (503 past them).
    `byte_budget_mb`: request bodies held at once, all requests, memory and spool (503 past it; a request is at
    most this less the 32 MB kept for small ones; a byte that does not fit waits up to `budget_wait_s`).
    `min_body_rate` bytes/s after `body_grace_s` (408 below it)."""
    source = resolve_model(model_path)
    detector = Detector.load(source, device=device, precision=precision)
    predictor = BatchingPredictor(detector, max_batch=views_per_pass(detector.config.input_size),
                                  max_queued=max_queued_images, timeout=infer_timeout_s)
    info = model_info(detector, source)
    explainer = Explainer(detector, max_pass=predictor.max_batch)  # Grad-CAM's passes as small as scoring's
    max_bytes = int(max_upload_mb * 1024 * 1024)
    decode_budget = PixelBudget(DECODE_PIXELS)
    view_budget = PixelBudget(VIEW_PIXELS)
    view_pixels = detector.max_views * detector.config.input_size ** 2  # the most one file decodes to
    give_freed_images_back()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        predictor.close()

    app = FastAPI(title="aivsreal", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Is this image AI-generated? Upload images, get P(fake) and a verdict.")
    app.state.predictor = predictor
    capacity = int(byte_budget_mb * 2**20)
    budget = ByteBudget(capacity, reserve=min(BUDGET_RESERVE, capacity // 8), small=SMALL_REQUEST)
    app.state.byte_budget = budget

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        logging.getLogger("aivsreal.serve").warning("503: %s", exc)
        return JSONResponse(error_body(str(exc)), status_code=503, headers={"Retry-After": str(exc.retry_after_s)})

    # 64 files and their multipart overhead, and no more than the budget lets one big request hold
    max_request = min(max_bytes * MAX_FILES + 1024 * 1024, budget.limit(budget.capacity))
    app.add_middleware(BodyLimit, max_bytes=max_request, stall_s=body_timeout_s, budget=budget,
                       budget_wait_s=budget_wait_s, min_rate=min_body_rate, grace_s=body_grace_s)
    app.add_middleware(JsonErrors)  # outermost of ours: catches what BodyLimit and every route let through

    def take_out(spooled: BinaryIO) -> bytes:
        """A file's bytes, moved out of its spool: the spool is emptied (a temporary file's disk freed), so
        the request's bytes sit in memory or on disk, never both, and the byte budget covers them."""
        spooled.seek(0)
        data = spooled.read(max_bytes + 1)
        spooled.seek(0)
        spooled.truncate()
        return data

    def decode_one(entry: dict[str, Any], spooled: BinaryIO, request_pixels: int) -> tuple[Any, int]:
        """(views and stored size, or None with `entry` given its error; the request's pixels so far)."""
        data = take_out(spooled)
        size = declared_pixels(data)
        request_pixels += size
        if len(data) > max_bytes:
            entry.update(status=413, error=f"file is over the {max_upload_mb:g} MB limit")
        elif request_pixels > REQUEST_PIXELS:
            entry.update(status=413, error=f"over the {REQUEST_PIXELS:,}-pixel limit per request: "
                                          "send this file in another request")
        else:
            try:
                with decode_budget.hold(size):
                    decoded = detector.decode(data)
                entry["status"] = 200
                return decoded, request_pixels
            except BadImageError as e:
                entry.update(status=400, error=str(e))
        return None, request_pixels

    def score(uploads: list[tuple[str | None, BinaryIO]], explain: bool = False) -> list[dict[str, Any]]:
        """One entry per file, in order: a verdict, or a status and an error for that file alone.

        A request the queue would refuse is refused before it decodes; else it waits for room for its
        decoded views (`Overloaded` past the queue's time limit), and holds it until it is scored."""
        predictor.check(len(uploads))
        with view_budget.hold(len(uploads) * view_pixels, timeout=infer_timeout_s):
            return decode_and_score(uploads, explain)

    def decode_and_score(uploads: list[tuple[str | None, BinaryIO]], explain: bool) -> list[dict[str, Any]]:
        """Files are read out of their spool one at a time: only one file's bytes are ever in memory
        beside the spool."""
        entries: list[dict[str, Any]] = []
        pixels, sizes, layouts, slots = [], [], [], []
        request_pixels = 0
        for filename, spooled in uploads:
            entry: dict[str, Any] = {"filename": filename}
            decoded, request_pixels = decode_one(entry, spooled, request_pixels)
            if decoded is not None:
                pixels.append(decoded.pixels)
                sizes.append(decoded.size)
                layouts.append(decoded.layout)
                slots.append(len(entries))
            entries.append(entry)
        if pixels:
            flat, counts = np.concatenate(pixels), [len(v) for v in pixels]
            scores = predictor.predict(flat, images=len(pixels))  # Overloaded: 503
            probs, features = combine_views(*scores, counts)
            names = [entries[slot]["filename"] for slot in slots]
            for slot, pred in zip(slots, detector.verdicts(names, probs, features, sizes), strict=True):
                entries[slot].update(label=pred.label, p_fake=pred.p_fake, in_domain=pred.in_domain,
                                     domain_score=pred.domain_score, domain_reason=pred.domain_reason,
                                     experimental=pred.experimental)
            if explain:  # every view of each image, on the model's thread, in the queue's bound
                maps = predictor.call(lambda: explainer.explain(flat, p_fake=probs, views=counts), images=len(counts))
                for slot, px, cams, layout in zip(slots, pixels, np.split(maps, np.cumsum(counts)[:-1]), layouts,
                                                  strict=True):
                    drawn = png_bytes(blend(picture(px, cams, layout)))
                    entries[slot]["gradcam_png"] = base64.b64encode(drawn).decode("ascii")
        return entries

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": detector.name, "version": __version__}

    @app.get("/api/model")
    def model() -> dict[str, Any]:
        return info

    @app.post("/api/predict")
    async def predict(
        files: Annotated[list[UploadFile], File(description="one or more images")],
        explain: Annotated[bool, Query(description="add a Grad-CAM overlay (base64 PNG) per image")] = False,
    ) -> JSONResponse:
        if len(files) > MAX_FILES:
            raise HTTPException(413, f"at most {MAX_FILES} files per request")
        started = time.perf_counter()
        # Reading, decoding and scoring block; keep them off the event loop.
        entries = await anyio.to_thread.run_sync(score, [(upload.filename, upload.file) for upload in files], explain)
        elapsed_ms = (time.perf_counter() - started) * 1000
        status = 200 if any(e["status"] == 200 for e in entries) else max(e["status"] for e in entries)
        body = {"results": entries, "model": detector.name, "version": __version__,
                "threshold": detector.threshold, "time_ms": round(elapsed_ms, 2)}
        if explain:
            body["gradcam"] = {"layer": explainer.layer, "explains": "the predicted class", "colormap": "jet"}
        return JSONResponse(body, status_code=status)

    confusion_png = source.run_dir / "plots" / "confusion_test.png"

    @app.get("/api/model/confusion.png")
    def confusion() -> Response:
        if not confusion_png.is_file():
            raise HTTPException(404, "no confusion matrix saved beside this model")
        return Response(confusion_png.read_bytes(), media_type="image/png")

    page = resources.files("aivsreal.serve.web").joinpath("index.html").read_text()
    docs_page = resources.files("aivsreal.serve.web").joinpath("docs.html").read_text()

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        """The API's endpoints from /openapi.json, with no script or style from outside (works offline)."""
        return docs_page

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    return app


def serve(model_path: str | None, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = DEFAULT_MAX_MB,
          device: str = "auto", body_timeout_s: float = BODY_STALL_S,
          header_timeout_s: float = HEADER_DEADLINE_S, byte_budget_mb: float = BYTE_BUDGET_MB,
          min_body_rate: float = MIN_BODY_RATE, max_connections: int = MAX_CONNECTIONS,
          max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT) -> None:
    """uvicorn's `limit_concurrency` is off: it counted idle and slow sockets with real requests (64 slow
    clients made every request a 503); `connection_guard` caps connections per address and in all, and
    requests in flight are bounded by them, the byte budget and the inference queue."""
    import uvicorn

    app = create_app(model_path, max_upload_mb, device, body_timeout_s, byte_budget_mb=byte_budget_mb,
                     min_body_rate=min_body_rate)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=5, limit_concurrency=None,
                http=connection_guard(header_timeout_s, max_connections, max_connections_per_client))
