"""Request limits enforced on the bytes as they arrive, whatever the headers claim.

A Content-Length check alone lets a chunked body (no Content-Length) stream without bound, and
Starlette spools a whole multipart body to disk before an endpoint runs. `BodyLimit` counts the
body in the ASGI receive path: past `max_bytes` it stops reading and answers 413; a client that
sends nothing for `stall_s` mid-body (slowloris) gets 408. Only these two answers are swapped in;
everything else passes through untouched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

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


async def _answer(send: Callable[[Message], Awaitable[None]], status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
