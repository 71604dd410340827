"""Real servers for tests, on 127.0.0.1 in background threads. Context managers.

SmtpSink  an SMTP server (aiosmtpd) that keeps every message it receives.
HttpSink  an HTTP server that records every request and answers each path from a
          script: status codes, Retry-After, hanging past a client's timeout; it
          can also stop listening (connections refused) and come back on its port.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.waiting import HOST, free_port, poll

# --- SMTP -------------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
            self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"


class SmtpSink:
    """A plain SMTP server (no TLS, no AUTH) that records parsed messages."""

    def __init__(self) -> None:
        self.port = free_port()
        self._collector = _Collector()
        self._controller = Controller(self._collector, hostname=HOST, port=self.port)

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        with self._collector.lock:
            return list(self._collector.messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        with self._collector.lock:
            return list(self._collector.envelopes)

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
        return poll(
            lambda: self.messages,
            lambda seen: len(seen) >= count,
            what=f"{count} message(s) to the SMTP sink",
            timeout=timeout,
            interval=0.01,
        )

    def url(self, *, to: str = "ops@example.com", sender: str = "alerts@example.com") -> str:
        """An apprise URL for this server: plain SMTP (mode=insecure), no login."""
        return f"mailto://{HOST}:{self.port}?mode=insecure&from={sender}&to={to}"


# --- HTTP -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the sink saw it. Header names are lower case."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at_monotonic: float
    at_wall: float

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. ``hang`` seconds pass before it is sent."""

    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0

    @classmethod
    def status_code(cls, status: int) -> Reply:
        return cls(status=status, body=b'{"status": %d}' % status)

    @classmethod
    def retry_after(cls, value: str, status: int = 429) -> Reply:
        return cls(status=status, headers={"Retry-After": value})

    @classmethod
    def hanging(cls, seconds: float) -> Reply:
        return cls(hang=seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: HttpSink


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        sink = self.server.sink
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        sink._record(
            Recorded(
                method=self.command,
                path=path,
                query=query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at_monotonic=time.monotonic(),
                at_wall=time.time(),
            )
        )
        reply = sink._next_reply(path)
        if reply.hang and sink._stopping.wait(reply.hang):
            return  # shutting down: drop the connection unanswered
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            pass  # the client gave up (timeout) before we answered

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpSink:
    """Records requests; answers each path from its script, then 200 ``{"ok": true}``."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def script(self, path: str, *replies: Reply | int) -> None:
        """Answer the next requests to ``path`` with these, in order (int = status)."""
        with self._lock:
            self._scripts[path].extend(
                Reply.status_code(r) if isinstance(r, int) else r for r in replies
            )

    def clear_scripts(self) -> None:
        """Forget every scripted reply: from now on each path answers 200."""
        with self._lock:
            self._scripts.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def wait_for(
        self, count: int = 1, path: str | None = None, timeout: float = 5.0
    ) -> list[Recorded]:
        """Block until ``count`` requests (to ``path``, if given) have arrived."""

        def seen() -> list[Recorded]:
            return self.requests if path is None else self.requests_to(path)

        return poll(
            seen,
            lambda got: len(got) >= count,
            interval=0.01,
            timeout=timeout,
            what=f"{count} request(s) to {path or 'any path'}",
            context=lambda: f"every path requested: {paths(self.requests)}",
        )

    def refuse(self) -> None:
        """Stop listening: connections to the port are refused until ``listen()``."""
        self._close()

    def listen(self) -> None:
        """(Re)start listening on the same port."""
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((HOST, self.port), _Handler)
        server.sink = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="HttpSink", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> Self:
        self.listen()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # hanging handlers return at once
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(path)
            return queue.popleft() if queue else Reply()


def paths(requests: Iterable[Recorded]) -> list[str]:
    return [r.path for r in requests]
