"""Request limits enforced on what arrives, whatever the headers claim: bytes, time, pixels.

A Content-Length check alone lets a chunked body (no Content-Length) stream without bound, and
Starlette spools a whole multipart body to disk before an endpoint runs. `BodyLimit` counts the
body in the ASGI receive path: past `max_bytes` it stops reading and answers 413; a client that
sends nothing for `stall_s` mid-body (slowloris) gets 408. Only these two answers are swapped in;
everything else passes through untouched. `JsonErrors` turns any error that escapes a route into a JSON 500.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

Message = dict[str, Any]


class BodyLimit:
    def __init__(self, app: Callable, max_bytes: int, stall_s: float = 30.0, paths: tuple[str, ...] = ("/api/",)):
        self.app, self.max_bytes, self.stall_s, self.paths = app, max_bytes, stall_s, paths

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await _answer(send, 413, f"request is over {self.max_bytes // 2**20} MB")
        received, refusal = 0, None

        async def limited_receive() -> Message:
            nonlocal received, refusal
            if refusal:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), self.stall_s)
            except TimeoutError:
                refusal = (408, f"the request body stalled for {self.stall_s:g} s")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refusal = (413, f"request is over {self.max_bytes // 2**20} MB")
                    return {"type": "http.disconnect"}
            return message

        answered = False

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if refusal:  # the app saw a disconnect: replace whatever it says with the real reason
                if not answered:
                    answered = True
                    await _answer(send, *refusal)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refusal:
                raise
        if refusal and not answered:
            await _answer(send, *refusal)


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


async def _answer(send: Callable[[Message], Awaitable[None]], status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def give_freed_images_back() -> bool:
    """Make glibc return a decoded image's memory to the system when it is freed (True if it could).

    glibc raises its mmap threshold after the first large free, so later 16 MB image blocks come
    from per-thread heaps that are kept, not returned: the server's worker threads each held a few
    hundred MB after one giant upload, 4 GB in all. A fixed threshold turns off that adjustment.
    Elsewhere than glibc this does nothing.
    """
    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c")).mallopt(M_MMAP_THRESHOLD, 4 * 2**20))
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
    def hold(self, pixels: int) -> Iterator[None]:
        want = min(max(pixels, 1), self.capacity)
        with self._free:
            self._free.wait_for(lambda: self.in_use + want <= self.capacity)
            self.in_use += want
        try:
            yield
        finally:
            with self._free:
                self.in_use -= want
                self._free.notify_all()


def header_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers are not complete in time.

    uvicorn times out idle keep-alive connections but not a client that opened a connection, or
    began a request, and then trickles or stops sending its headers (slowloris): each such socket
    would hold one of the server's connection slots for ever. The deadline runs from the
    connection's start and from the end of each response until the next request's headers are in.
    """

    class HeaderDeadline(H11Protocol):
        responses = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.loop.call_later(seconds, self._headers_late, self.responses)

        def on_response_complete(self) -> None:
            self.responses += 1
            super().on_response_complete()
            self.loop.call_later(seconds, self._headers_late, self.responses)

        def _headers_late(self, responses_then: int) -> None:
            """Still no complete request line and headers since this deadline was armed: hang up."""
            if (self.responses == responses_then and self.conn.their_state is h11.IDLE
                    and not self.transport.is_closing()):
                self.transport.close()

    return HeaderDeadline
