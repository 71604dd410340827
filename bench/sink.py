"""A lean asyncio HTTP server standing in for the agent platform and an alert channel.

It answers every request at once (200 ``{"ok":true}``, keep-alive) and records when
it arrived (time.monotonic(), which is CLOCK_MONOTONIC: comparable across processes
on one machine, so the load generator's 2xx times and these arrival times share a
clock).

    POST /halt/<task_id>     the daemon's halt call (RECEIVER_HALT_URL=.../halt/{task_id})
    POST /alert              apprise json:// channel: {"title", "message", "type", ...}
    GET  /_count             {"count": n}: how many halt/alert requests so far
    GET  /_records           every record so far, as JSON

    python bench/sink.py --port 9000      (prints "ready <port>" when listening)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Any
from urllib.parse import unquote

PROBE = re.compile(r"probe-(?:halt|alert)-\d+")
OK = b'{"ok":true}'


class Recorder:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.bad: int = 0

    def record(self, method: str, path: str, body: bytes, at: float) -> None:
        if path.startswith("/halt/"):
            self.records.append(
                {"kind": "halt", "task_id": unquote(path[len("/halt/") :]), "at": at}
            )
            return
        if path.startswith("/alert"):
            try:
                doc = json.loads(body)
                title = str(doc.get("title", ""))
                kind = str(doc.get("type", ""))
            except (ValueError, AttributeError):
                self.bad += 1
                return
            found = PROBE.search(title)
            self.records.append(
                {
                    "kind": "alert",
                    "type": kind,
                    "task_id": found.group(0) if found else None,
                    "title": title[:120],
                    "at": at,
                }
            )
            return
        self.bad += 1


class SinkProtocol(asyncio.Protocol):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            start = end + 4
            if "chunked" in headers.get("transfer-encoding", "").lower():
                parsed = _dechunk(self.buf, start)
                if parsed is None:
                    return
                body, consumed = parsed
            else:
                length = int(headers.get("content-length") or 0)
                if len(self.buf) < start + length:
                    return
                body, consumed = bytes(self.buf[start : start + length]), start + length
            del self.buf[:consumed]
            self.handle(method, target, headers, body, now)

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, at: float
    ) -> None:
        path = target.split("?", 1)[0]
        close = headers.get("connection", "").lower() == "close"
        if method == "GET" and path == "/_count":
            reply = json.dumps({"count": len(self.rec.records), "bad": self.rec.bad}).encode()
        elif method == "GET" and path == "/_records":
            reply = json.dumps({"records": self.rec.records, "bad": self.rec.bad}).encode()
        else:
            self.rec.record(method, path, body, at)
            reply = OK
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (len(reply), b"Connection: close\r\n" if close else b"", reply)
        )
        if close:
            self.transport.close()


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    out = bytearray()
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None
        size = int(bytes(buf[pos:nl]).split(b";")[0], 16)
        start = nl + 2
        if len(buf) < start + size + 2:
            return None
        if size == 0:
            # No trailers expected: the terminating CRLF follows.
            return bytes(out), start + 2
        out += buf[start : start + size]
        pos = start + size + 2


async def serve(port: int) -> None:
    rec = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(rec), "127.0.0.1", port, backlog=1024)
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        run_async(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


def run_async(coro: Any) -> Any:
    """asyncio.run on uvloop when it is installed (as uvicorn[standard] brings it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


if __name__ == "__main__":
    main()
