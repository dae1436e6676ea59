"""One inference thread that batches concurrent requests together.

The web service gets many small requests at once; running each on its own would make
torch threads fight over the cores and leave the model's batch dimension unused. Requests
put their images on a queue; one worker takes whatever is waiting (up to `max_batch`),
runs one forward pass and hands each caller its slice. The model is touched by that one
thread only, so there is no shared state to race on.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import numpy as np

from aivsreal.predict.detector import Detector


class BatchingPredictor:
    def __init__(self, detector: Detector, max_batch: int = 256, wait_s: float = 0.005):
        self.detector, self.max_batch, self.wait_s = detector, max_batch, wait_s
        self._queue: queue.Queue[tuple[np.ndarray, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="aivsreal-inference", daemon=True)
        self._thread.start()

    def predict(self, pixels: np.ndarray, timeout: float | None = 60.0) -> tuple[np.ndarray, np.ndarray | None]:
        """`Detector.score` for an (N, H, W, 3) uint8 array; blocks until the worker has scored it."""
        if len(pixels) == 0:
            return np.empty(0), None
        future: Future = Future()
        self._queue.put((pixels, future))
        return future.result(timeout=timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

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
            try:
                probs, features = self.detector.score(np.concatenate([p for p, _ in batch]))
            except Exception as e:  # hand the failure to every waiting caller
                for _, fut in batch:
                    fut.set_exception(e)
                continue
            start = 0
            for pixels, fut in batch:
                end = start + len(pixels)
                fut.set_result((probs[start:end], None if features is None else features[start:end]))
                start = end
