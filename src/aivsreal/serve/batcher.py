"""One inference thread that batches concurrent requests together.

The web service gets many small requests at once; running each on its own would make
torch threads fight over the cores and leave the model's batch dimension unused. Requests
put their images on a queue; one worker takes whatever is waiting (up to `max_batch`),
runs one forward pass and hands each caller its slice. The model is touched by that one
thread only, so there is no shared state to race on.

The queue is bounded: at most `max_queued` images wait or are being scored at once, and a
caller waits at most `timeout` seconds. Past either, `predict` raises `Overloaded` (the
server answers 503 with Retry-After) instead of letting the backlog grow until every
caller times out: with the `wild` detector 6 clients x 64 photos left a third of them
waiting past the limit.

Memory follows the views in one forward pass, not the images in the queue: a tiled model reads
up to 9 views of 224 px per photo, and 256 of them at once took the `wild` server to 3.6 GB.
The worker scores at most `max_batch` views per pass (`views_per_pass`: a pixel budget), and
when the queue runs dry it hands the freed heap back to the system (it held 2.0 GB after a burst).
Grad-CAM runs on the same thread through `call`: a forward and a backward pass per view, it waits its
turn and holds queue slots like any scoring.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from aivsreal.predict.detector import Detector
from aivsreal.serve.limits import Overloaded, trim_freed_memory

__all__ = ["BatchingPredictor", "Overloaded", "views_per_pass"]

# Pixels in one forward pass: 8 views of 224 px (EfficientNet-Lite2's widest activations are ~5 MB a view
# in fp32, and several are alive at once); a 32 px model still reads up to 256 images at once.
PASS_PIXELS = 8 * 224 * 224
MAX_PASS_VIEWS = 256


def views_per_pass(input_size: int) -> int:
    return max(1, min(MAX_PASS_VIEWS, PASS_PIXELS // (input_size * input_size)))


@dataclass
class Job:
    """Queued work: views to score with the others, or a call of its own (Grad-CAM) on the model's thread."""

    future: Future
    images: int  # queue slots held
    pixels: np.ndarray | None = None
    call: Callable[[], Any] | None = None

    @property
    def views(self) -> int:
        return 0 if self.pixels is None else len(self.pixels)


class BatchingPredictor:
    def __init__(self, detector: Detector, max_batch: int = MAX_PASS_VIEWS, wait_s: float = 0.005,
                 max_queued: int = 512, timeout: float = 60.0):
        self.detector, self.max_batch, self.wait_s = detector, max_batch, wait_s
        self.max_queued, self.timeout = max_queued, timeout
        self.queued_images = 0  # images accepted and not yet answered (waiting or being scored)
        self.seconds_per_image = 0.0  # measured on the last batch: the basis of Retry-After
        self._count = threading.Lock()
        self.trims = 0  # times the heap was handed back after a burst
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="aivsreal-inference", daemon=True)
        self._thread.start()

    def backlog_s(self, images: int = 0) -> float:
        """Seconds the queue needs for what it holds plus `images` more (0 before the first batch)."""
        return (self.queued_images + images) * self.seconds_per_image

    def predict(self, pixels: np.ndarray, images: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """`Detector.score` for an (N, H, W, 3) uint8 array; blocks until the worker has scored it.

        `images`: how many queue slots this takes (default N; the server counts an image's tiles as one).
        Raises `Overloaded` at once when the queue is full or the wait would pass `timeout`, and after
        `timeout` seconds when it did; the slots are given back by the worker either way.
        """
        if len(pixels) == 0:
            return np.empty(0), None
        return self._submit(Job(Future(), len(pixels) if images is None else images, pixels=pixels))

    def call(self, fn: Callable[[], Any], images: int) -> Any:
        """`fn()` run on the model's thread, in turn with the batches, under the same bound and time limit."""
        return self._submit(Job(Future(), images, call=fn))

    def check(self, images: int) -> None:
        """`Overloaded` now if the queue could not take `images` more (nothing is held): a request that
        would be refused is refused before it decodes anything."""
        with self._count:
            self._refuse_if_full(images)

    def _refuse_if_full(self, images: int) -> None:
        if self.queued_images + images > self.max_queued:
            raise Overloaded(f"the inference queue is full ({self.queued_images} of {self.max_queued} images "
                             f"waiting, this request has {images}): retry later", self.backlog_s())
        if self.queued_images and self.backlog_s(images) > self.timeout:  # an empty queue always admits
            raise Overloaded(f"the inference queue would take about {self.backlog_s(images):.0f} s, over the "
                             f"{self.timeout:g} s limit: retry later", self.backlog_s())

    def _submit(self, job: Job) -> Any:
        images = job.images
        with self._count:
            self._refuse_if_full(images)
            self.queued_images += images
        self._queue.put(job)
        try:
            return job.future.result(timeout=self.timeout)
        except TimeoutError:
            job.future.cancel()  # still queued: the worker skips it; being scored: its answer is dropped
            raise Overloaded(f"inference did not finish within the {self.timeout:g} s limit: retry later",
                             self.backlog_s()) from None

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _release(self, images: int) -> None:
        with self._count:
            self.queued_images -= images

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            size = job.views
            while job.call is None and size < self.max_batch:  # a call runs alone
                try:
                    nxt = self._queue.get(timeout=self.wait_s)
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                if nxt.call is not None:
                    self._queue.put(nxt)  # after this batch, alone
                    break
                batch.append(nxt)
                size += nxt.views
            live = []
            for entry in batch:  # a caller that gave up has cancelled its future: skip its images
                if entry.future.set_running_or_notify_cancel():
                    live.append(entry)
                else:
                    self._release(entry.images)
            if live:
                self._answer(live)
            if self._queue.empty() and trim_freed_memory():  # the burst is over: give its heap back
                self.trims += 1

    def _answer(self, live: list[Job]) -> None:
        started = time.perf_counter()
        try:
            if live[0].call is not None:
                results = [live[0].call()]
            else:
                results = self._score(np.concatenate([job.pixels for job in live]), [job.views for job in live])
        except Exception as e:  # hand the failure to every waiting caller
            for job in live:
                self._release(job.images)
                job.future.set_exception(e)
            return
        if live[0].call is None:
            self.seconds_per_image = (time.perf_counter() - started) / max(1, sum(job.images for job in live))
        for job, result in zip(live, results, strict=True):
            self._release(job.images)
            job.future.set_result(result)

    def _score(self, pixels: np.ndarray, views: list[int]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Each job's slice of the scores, the views read `max_batch` per forward pass."""
        parts = [self.detector.score(pixels[i : i + self.max_batch]) for i in range(0, len(pixels), self.max_batch)]
        probs = np.concatenate([p for p, _ in parts])
        features = None if parts[0][1] is None else np.concatenate([f for _, f in parts])
        ends = np.cumsum(views)
        return [(probs[end - n : end], None if features is None else features[end - n : end])
                for n, end in zip(views, ends, strict=True)]
