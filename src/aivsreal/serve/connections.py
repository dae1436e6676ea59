"""The HTTP protocol's part of the request limits: a deadline for the header block and connection caps
(slowloris), which no ASGI middleware can see because uvicorn hands a request to the application only
once its headers are in. The limits on what arrives after that are in serve/limits.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from aivsreal.serve.limits import Message, answer


def refusal(reason: str, retry_after_s: int = 5) -> Callable:
    """An ASGI app that answers every request 503 + Retry-After with the JSON body, and closes."""

    async def app(scope: Message, receive: Callable, send: Callable[[Message], Awaitable[None]]) -> None:
        await answer(send, 503, reason, {"Retry-After": str(retry_after_s)})

    return app


def connection_guard(header_s: float, max_connections: int, per_client: int) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a header deadline and connection caps (slowloris).

    uvicorn times out idle keep-alive connections but not a client that opened a connection, or began
    a request, and then trickles or stops sending its headers; and its `limit_concurrency` counts such
    sockets with the rest, so 64 of them made every real request a 503. Here a connection whose request
    line and headers are not complete `header_s` after it opened (or after its last response) is closed;
    one client address holds at most `per_client` connections; and when `max_connections` are open, a
    new one takes the place of the connection that has waited longest for its headers (a request in
    progress is never cut for this). A connection over either cap is not counted: it is answered 503 (JSON,
    Retry-After) once its headers are in, and closed; it too must send them in time. Slow bodies are
    `BodyLimit`'s part.
    """
    clients: dict[str, int] = {}  # open connections per client address, all connections of this server
    waiting: dict[H11Protocol, float] = {}  # connections without complete headers -> since when
    opened: set[H11Protocol] = set()

    class ConnectionGuard(H11Protocol):
        responses = 0
        address: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = (transport.get_extra_info("peername") or ("?",))[0]
            if clients.get(address, 0) >= per_client:
                return self.refuse(f"this client address has {per_client} connections open, the most allowed")
            if len(opened) >= max_connections:
                if not waiting:
                    return self.refuse(f"the server has {max_connections} connections open, all busy")
                oldest = min(waiting, key=waiting.__getitem__)
                oldest.transport.close()
                oldest.forget()  # now, not when the loop gets to connection_lost
            self.address = address
            clients[address] = clients.get(address, 0) + 1
            opened.add(self)
            self.await_headers()

        def refuse(self, reason: str) -> None:
            self.app = refusal(reason)
            self.loop.call_later(header_s, self._headers_late, self.responses)

        def forget(self) -> None:
            waiting.pop(self, None)
            if self in opened:
                opened.discard(self)
                clients[self.address] -= 1
                if not clients[self.address]:
                    del clients[self.address]

        def connection_lost(self, exc: Exception | None) -> None:
            self.forget()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # a whole request line and headers are in
                waiting.pop(self, None)

        def on_response_complete(self) -> None:
            self.responses += 1
            super().on_response_complete()
            if self not in opened or self.transport.is_closing():
                return
            if self.conn.their_state is h11.IDLE:
                self.await_headers()
            elif self.conn.their_state is h11.SEND_BODY:  # refused mid-body: uvicorn discards the rest
                self.loop.call_later(header_s, self._drain_late, self.cycle)

        def _drain_late(self, cycle: object) -> None:
            """No new request since a refused body began to drain (still draining, or idle since): hang up."""
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

        def await_headers(self) -> None:
            waiting[self] = time.monotonic()
            self.loop.call_later(header_s, self._headers_late, self.responses)

        def _headers_late(self, responses_then: int) -> None:
            """Still no complete request line and headers since this deadline was armed: hang up."""
            if (self.responses == responses_then and self.conn.their_state is h11.IDLE
                    and not self.transport.is_closing()):
                self.transport.close()

    return ConnectionGuard
