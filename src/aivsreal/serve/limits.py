"""Request limits enforced on what arrives, whatever the headers claim: bytes, time, pixels, connections.

A Content-Length check alone lets a chunked body (no Content-Length) stream without bound, and
Starlette spools a whole multipart body (to memory, then past 1 MB per file to a temporary file)
before an endpoint runs. `BodyLimit` counts the body in the ASGI receive path: past `max_bytes` it
stops reading and answers 413; every byte read is held in one `ByteBudget` shared by all requests
(memory and spool together) until the request ends, and a byte that does not fit waits briefly, then
the request gets 503; a client that sends nothing for `stall_s` mid-body, or sends slower than
`min_rate` once its grace period is over (one byte every 10 s resets any stall timer), gets 408.
Only these answers are swapped in; everything else passes through untouched. `JsonErrors` turns any
error that escapes a route into a JSON 500. The HTTP protocol's part, a header deadline and
connection caps, which no ASGI middleware can see, is in serve/connections.py.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

Message = dict[str, Any]


class Overloaded(Exception):
    """The inference queue cannot take this request now; `retry_after_s` is a guess at when it can."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class ByteBudget:
    """Request bodies in the server hold at most `capacity` bytes between them, counted as they stream.

    A body's bytes live in memory or in Starlette's spool file until the request ends, so the count
    covers both. The last `reserve` bytes are kept for small requests (a request holding at most
    `small` bytes): under a flood of big uploads a single photo still gets in. Waiting is polled: the
    budget is shared by requests on one event loop, and a poll needs no loop-bound primitive.
    """

    POLL_S = 0.02

    def __init__(self, capacity: int, reserve: int = 0, small: int = 0):
        self.capacity, self.reserve, self.small = capacity, min(reserve, capacity), small
        self.in_use = self.peak = 0

    def limit(self, holding: int) -> int:
        """What all requests together may hold once this request holds `holding` bytes."""
        return self.capacity if holding <= self.small else self.capacity - self.reserve

    def fits(self, more: int, holding: int) -> bool:
        return self.in_use + more <= self.limit(holding + more)

    async def wait_until_fits(self, more: int, holding: int, wait_s: float) -> bool:
        """True once `more` bytes would fit beside `holding` (nothing is taken); False after `wait_s`."""
        deadline = time.monotonic() + wait_s
        while not self.fits(more, holding):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.POLL_S)
        return True

    async def take(self, more: int, holding: int, wait_s: float) -> bool:
        if not await self.wait_until_fits(more, holding, wait_s):
            return False
        self.in_use += more  # no await between the check and this: one event loop, no race
        self.peak = max(self.peak, self.in_use)
        return True

    def give_back(self, n: int) -> None:
        self.in_use -= n


class BodyLimit:
    """One request's body: its size cap (413), its pace (408) and its share of the byte budget (503)."""

    def __init__(self, app: Callable, max_bytes: int, stall_s: float = 30.0, paths: tuple[str, ...] = ("/api/",),
                 budget: ByteBudget | None = None, budget_wait_s: float = 10.0, min_rate: float = 0.0,
                 grace_s: float = 5.0):
        self.app, self.max_bytes, self.stall_s, self.paths = app, max_bytes, stall_s, paths
        self.budget, self.budget_wait_s = budget, budget_wait_s
        self.min_rate, self.grace_s = min_rate, grace_s

    def busy(self) -> tuple[int, str, dict[str, str]]:
        """503: no room in the byte budget. Like 413 it keeps the connection: uvicorn then reads and discards
        the rest of the body (for at most the header deadline, `connection_guard`), so a client that sends
        its whole body before reading sees the answer; a close with unread data is a reset that loses it."""
        return (503, f"the server holds its {self.budget.capacity / 2**20:g} MB of request bodies (memory and "
                     "spool): retry later", {"Retry-After": str(math.ceil(self.budget_wait_s))})

    def patience(self, received: int, waited: float) -> float:
        """Seconds the client may still take to send its next bytes: the stall limit, and the minimum rate
        over the time spent waiting on it so far (`grace_s` at the start), whichever ends first."""
        if not self.min_rate:
            return self.stall_s
        return min(self.stall_s, max(self.grace_s, received / self.min_rate) - waited)

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await answer(send, 413, f"request is over {self.max_bytes / 2**20:g} MB", close=False)
        budget = self.budget
        if (budget and length.isdigit()
                and not await budget.wait_until_fits(int(length), 0, self.budget_wait_s)):
            return await answer(send, *self.busy(), close=False)  # refused before a byte of the body is read
        received, waited, held = 0, 0.0, 0
        refusal: tuple[int, str, dict[str, str]] | None = None

        async def limited_receive() -> Message:
            nonlocal received, waited, held, refusal
            if refusal:
                return {"type": "http.disconnect"}
            patience = self.patience(received, waited)
            started = time.monotonic()
            try:
                if patience <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), patience)
            except TimeoutError:
                waited += time.monotonic() - started
                refusal = (408, f"the request body came slower than {self.min_rate:g} bytes/s" if
                           self.min_rate and received < self.min_rate * waited else
                           f"the request body stalled for {self.stall_s:g} s", {})
                return {"type": "http.disconnect"}
            waited += time.monotonic() - started
            if message["type"] == "http.request":
                n = len(message.get("body", b""))
                received += n
                if received > self.max_bytes:
                    refusal = (413, f"request is over {self.max_bytes / 2**20:g} MB", {})
                    return {"type": "http.disconnect"}
                if budget and n:
                    if not await budget.take(n, held, self.budget_wait_s):
                        refusal = self.busy()
                        return {"type": "http.disconnect"}
                    held += n
            return message

        answered = False

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if refusal:  # the app saw a disconnect: replace whatever it says with the real reason
                if not answered:
                    answered = True
                    await answer(send, *refusal, close=refusal[0] == 408)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refusal:
                raise
        finally:
            if budget:
                budget.give_back(held)  # the app has returned: its spooled files are closed
        if refusal and not answered:
            await answer(send, *refusal, close=refusal[0] == 408)


def error_body(message: str) -> dict[str, str]:
    """A refusal's JSON body, one line: `error` as in the files' entries, `detail` as FastAPI and the page read."""
    line = " ".join(message.split())
    return {"error": line, "detail": line}


class JsonErrors:
    """Any exception that escapes the app becomes a logged JSON 500 of one line, never Starlette's text/plain one.

    Clients (and the web page) parse every answer as JSON; a plain-text 500 reads as "the server is broken"
    with no reason. The traceback goes to the log only: it can name files and internals.
    """

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as e:
            logging.getLogger("aivsreal.serve").exception("500 on %s %s: %s", scope.get("method"), scope.get("path"),
                                                          " ".join(str(e).split()) or type(e).__name__)
            if started:  # half an answer is out: only closing the connection is left
                raise
            body = json.dumps(error_body(f"internal server error ({type(e).__name__}); the server log has "
                                         "the details")).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


async def answer(send: Callable[[Message], Awaitable[None]], status: int, detail: str,
                  extra: dict[str, str] | None = None, close: bool = True) -> None:
    body = json.dumps(error_body(detail)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *([(b"connection", b"close")] if close else []),
                            *((k.lower().encode(), v.encode()) for k, v in (extra or {}).items())]})
    await send({"type": "http.response.body", "body": body})


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, looked up once (find_library runs a subprocess)."""
    return ctypes.CDLL(ctypes.util.find_library("c"))


def give_freed_images_back() -> bool:
    """Make glibc return a decoded image's memory to the system when it is freed (True if it could).

    glibc raises its mmap threshold after the first large free, so later 16 MB image blocks come
    from per-thread heaps that are kept, not returned: the server's worker threads each held a few
    hundred MB after one giant upload, 4 GB in all. A fixed threshold turns off that adjustment.
    Elsewhere than glibc this does nothing.
    """
    try:
        return bool(libc().mallopt(M_MMAP_THRESHOLD, 4 * 2**20))
    except (OSError, AttributeError, TypeError):
        return False


def trim_freed_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc's malloc_trim; True if some were).

    Torch's and Pillow's many mid-sized blocks sit in per-thread arenas that glibc keeps after they
    are freed: the `wild` server still held 2.0 GB after a burst of photos. Called when the inference
    queue runs dry; it takes milliseconds. Elsewhere than glibc this does nothing.
    """
    try:
        return bool(libc().malloc_trim(0))
    except (OSError, AttributeError, TypeError):
        return False


class PixelBudget:
    """Decodes in flight hold at most `capacity` pixels between them, whatever the clients send.

    Decode memory follows the pixels of the images being decoded (a 64-megapixel PNG needs about
    256 MB while Pillow holds it), not the upload's bytes: a 186 KB PNG can declare 8000x7999.
    Counting requests or threads would either starve small images or let eight giants through at
    once; a weighted budget lets thousands of CIFAKE-sized images decode side by side while the
    giants take turns. An image over the capacity (it cannot be, past MAX_PIXELS) takes it all.
    """

    def __init__(self, capacity: int):
        self.capacity, self.in_use = capacity, 0
        self._free = threading.Condition()

    @contextmanager
    def hold(self, pixels: int, timeout: float | None = None) -> Iterator[None]:
        """Wait for `pixels` (at most `timeout` s: past it `Overloaded`), hold them for the `with` block."""
        want = min(max(pixels, 1), self.capacity)
        with self._free:
            if not self._free.wait_for(lambda: self.in_use + want <= self.capacity, timeout):
                raise Overloaded(f"the server holds its {self.capacity:,} pixels of decoded images: retry later",
                                 timeout or 1)
            self.in_use += want
        try:
            yield
        finally:
            with self._free:
                self.in_use -= want
                self._free.notify_all()
