"""What one HTTP client may hold: time to send its request, the size of its head, and a
share of the open connections.

uvicorn bounds none of these itself: its keep-alive timeout covers only an idle connection
after a response (any byte cancels it for good), httptools keeps an unfinished header in
memory however long it grows, and its concurrency limit answers in plain text. So:

- ``BoundedProtocol``: a request head (line and headers) must arrive within
  ``head_seconds`` of the connection opening or of the previous response, else 408 and
  close (a connection that sent nothing is just closed); a head over ``max_head_bytes``
  is 431 and close; past ``max_connections`` open connections or requests in flight, a
  request is answered 503 JSON and its connection closed.
- ``BodyDeadline``: a body must arrive within ``seconds`` of the app first reading it,
  else ``RequestTimeout`` (408) is raised where it is read, before anything is acted on.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from .errors import RequestTimeout

log = logging.getLogger("receiver.connections")
MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Limits:
    head_seconds: float
    max_connections: int
    max_head_bytes: int = MAX_HEAD_BYTES


def protocol(limits: Limits) -> type[asyncio.Protocol]:
    """The ``http=`` of ``uvicorn.Config``: uvicorn only calls it, and a partial of a module
    level class pickles to the processes of RECEIVER_WORKERS."""
    return cast("type[asyncio.Protocol]", functools.partial(BoundedProtocol, limits=limits))


def _json_error(
    code: str, detail: str, *extra: tuple[bytes, bytes]
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of an error answer that closes its connection."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    return headers, body


class BoundedProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_bytes: int | None = None  # None: not inside a request head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        inside = self.head_bytes is not None
        super().data_received(data)
        # Counted only when the whole chunk was head: never more than was sent, and at most
        # one read (uvicorn's) more than the limit is ever held.
        if inside and self.head_bytes is not None and not self.transport.is_closing():
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_head_bytes:
                limit = self.limits.max_head_bytes
                self._refuse(431, "headers_too_large", f"the request head is over {limit} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0

    def on_headers_complete(self) -> None:
        self._disarm()
        self.head_bytes = None
        if not self._crowded():
            super().on_headers_complete()
            return
        log.warning(
            "%d connections open (RECEIVER_MAX_CONNECTIONS=%d): answered 503",
            len(self.connections),
            self.limits.max_connections,
        )
        app, self.app = self.app, _too_many_connections
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_response_complete(self) -> None:
        queued = bool(self.pipeline)  # a queued request starts now: its head is in
        super().on_response_complete()
        if not queued and not self.transport.is_closing():
            self._arm()

    def _crowded(self) -> bool:
        limit = self.limits.max_connections
        return len(self.connections) > limit or len(self.tasks) >= limit

    def _arm(self) -> None:
        self._disarm()
        self.head_timer = self.loop.call_later(self.limits.head_seconds, self._head_late)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_late(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.head_bytes is None:  # nothing of a new request: an idle or lingering client
            self.transport.close()
            return
        seconds = f"{self.limits.head_seconds:g}"
        self._refuse(408, "request_timeout", f"the request headers did not arrive in {seconds} s")

    def _refuse(self, status: int, code: str, detail: str) -> None:
        answering = self.cycle is not None and not self.cycle.response_complete
        if not answering:  # never write into the middle of another response
            headers, body = _json_error(code, detail)
            lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            self.transport.write(STATUS_LINE[status] + lines + b"\r\n" + body)
        self.transport.close()


async def _too_many_connections(scope: Scope, receive: Receive, send: Send) -> None:
    detail = "the receiver is at its connection limit; retry shortly"
    headers, body = _json_error("too_many_connections", detail, (b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyDeadline:
    """Pure ASGI middleware: the request body within ``seconds`` of its first read."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        read = timed_out = False

        async def receive_in_time() -> Message:
            nonlocal deadline, read, timed_out
            if read:  # after the body: only a disconnect is left to wait for
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.seconds
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise RequestTimeout(
                    f"the request body did not arrive in {self.seconds:g} s"
                ) from None
            read = not message.get("more_body", False)
            return message

        async def send_closing(message: Message) -> None:
            # RFC 9110: a 408 closes the connection rather than wait on for the rest.
            if timed_out and message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive_in_time, send_closing)
