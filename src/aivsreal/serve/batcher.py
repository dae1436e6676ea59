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
"""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

from aivsreal.predict.detector import Detector


class Overloaded(Exception):
    """The inference queue cannot take this request now; `retry_after_s` is a guess at when it can."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class BatchingPredictor:
    def __init__(self, detector: Detector, max_batch: int = 256, wait_s: float = 0.005,
                 max_queued: int = 512, timeout: float = 60.0):
        self.detector, self.max_batch, self.wait_s = detector, max_batch, wait_s
        self.max_queued, self.timeout = max_queued, timeout
        self.queued_images = 0  # images accepted and not yet answered (waiting or being scored)
        self.seconds_per_image = 0.0  # measured on the last batch: the basis of Retry-After
        self._count = threading.Lock()
        self._queue: queue.Queue[tuple[np.ndarray, Future, int] | None] = queue.Queue()
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
        images = len(pixels) if images is None else images
        with self._count:
            if self.queued_images + images > self.max_queued:
                raise Overloaded(f"the inference queue is full ({self.queued_images} of {self.max_queued} images "
                                 f"waiting, this request has {images}): retry later", self.backlog_s())
            if self.queued_images and self.backlog_s(images) > self.timeout:  # an empty queue always admits
                raise Overloaded(f"the inference queue would take about {self.backlog_s(images):.0f} s, over the "
                                 f"{self.timeout:g} s limit: retry later", self.backlog_s())
            self.queued_images += images
        future: Future = Future()
        self._queue.put((pixels, future, images))
        try:
            return future.result(timeout=self.timeout)
        except TimeoutError:
            future.cancel()  # still queued: the worker skips it; being scored: its answer is dropped
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
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            size = len(item[0])
            while size < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=self.wait_s)
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
                size += len(nxt[0])
            live = []
            for entry in batch:  # a caller that gave up has cancelled its future: skip its images
                if entry[1].set_running_or_notify_cancel():
                    live.append(entry)
                else:
                    self._release(entry[2])
            if not live:
                continue
            started = time.perf_counter()
            try:
                probs, features = self.detector.score(np.concatenate([p for p, _, _ in live]))
            except Exception as e:  # hand the failure to every waiting caller
                for _, fut, images in live:
                    self._release(images)
                    fut.set_exception(e)
                continue
            self.seconds_per_image = (time.perf_counter() - started) / max(1, sum(n for _, _, n in live))
            start = 0
            for pixels, fut, images in live:
                end = start + len(pixels)
                self._release(images)
                fut.set_result((probs[start:end], None if features is None else features[start:end]))
                start = end
