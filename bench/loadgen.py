"""An asyncio HTTP/1.1 load generator, run as its own process (see run.py).

open    constant rate (open loop): request i is *scheduled* at t0 + i/rate, sent then
        (or as soon after as the client can), and its latency is measured from the
        scheduled time to the last byte of the answer. A slow answer never delays
        the next send: a request that finds no idle keep-alive connection gets a new
        one. So a stall shows up in the latencies instead of thinning the load
        (no coordinated omission). The client's own lateness (send lag) is reported
        separately so its ceiling is visible.
closed  a fixed number of workers, each sending its next request when the last one is
        answered: used to warm up (create tasks) before the timed parts.

Requests come pre-built from a file (bench/reqfile.py format), so nothing is signed or
serialised while the clock runs.

    python bench/loadgen.py open --port 8080 --file reqs.bin --rate 1000 --out result.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reqfile import NO_TAG, read_records


class Pending:
    __slots__ = ("done", "sched", "sent", "tag")

    def __init__(self, sched: float, tag: str, done: asyncio.Future[int] | None = None) -> None:
        self.sched = sched
        self.sent = 0.0
        self.tag = tag
        self.done = done


class Conn(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.buf = bytearray()
        self.pending: Pending | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def send(self, raw: bytes, pending: Pending) -> None:
        assert self.transport is not None
        self.pending = pending
        pending.sent = time.monotonic()
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        idx = head.find(b"\r\ncontent-length:")
        if idx < 0:
            length = 0
        else:
            stop = head.find(b"\r\n", idx + 2)
            length = int(head[idx + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buf) < total:
            return
        status = int(head[9:12])
        del self.buf[:total]
        pending, self.pending = self.pending, None
        if pending is not None:
            self.client.answered(self, pending, status, at)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost(self, self.pending)
        self.pending = None


class Client:
    def __init__(self, host: str, port: int, max_conns: int) -> None:
        self.host = host
        self.port = port
        self.max_conns = max_conns
        self.loop = asyncio.get_running_loop()
        self.idle: list[Conn] = []
        self.queue: deque[tuple[bytes, Pending]] = deque()
        self.conns = 0
        self.opened = 0
        self.outstanding = 0
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: list[float] = []  # from the scheduled time
        self.by_second: dict[int, list[float]] = {}  # scheduled second -> latencies
        self.t0 = 0.0
        self.service: list[float] = []  # from the actual send
        self.probes: dict[str, dict[str, Any]] = {}
        self.last_answer = 0.0

    async def preopen(self, count: int) -> None:
        for _ in range(min(count, self.max_conns)):
            _, conn = await self.loop.create_connection(lambda: Conn(self), self.host, self.port)
            self.conns += 1
            self.opened += 1
            self.idle.append(conn)

    def submit(self, raw: bytes, pending: Pending) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(raw, pending)
        elif self.conns < self.max_conns:
            self.conns += 1
            self.opened += 1
            self.loop.create_task(self._open_and_send(raw, pending))
        else:
            self.queue.append((raw, pending))

    async def _open_and_send(self, raw: bytes, pending: Pending) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: Conn(self), self.host, self.port)
        except OSError as exc:
            self.conns -= 1
            self._failed(pending, f"connect: {type(exc).__name__}")
            return
        conn.send(raw, pending)

    def answered(self, conn: Conn, pending: Pending, status: int, at: float) -> None:
        self.outstanding -= 1
        self.last_answer = at
        self.statuses[status] += 1
        self.latency.append(at - pending.sched)
        self.by_second.setdefault(int(pending.sched - self.t0), []).append(at - pending.sched)
        self.service.append(at - pending.sent)
        if pending.tag != NO_TAG:
            self.probes[pending.tag] = {"status": status, "at": at}
        if pending.done is not None and not pending.done.done():
            pending.done.set_result(status)
        if self.queue:
            raw, nxt = self.queue.popleft()
            conn.send(raw, nxt)
        else:
            self.idle.append(conn)

    def lost(self, conn: Conn, pending: Pending | None) -> None:
        self.conns -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if pending is not None:
            self._failed(pending, "connection lost")

    def _failed(self, pending: Pending, why: str) -> None:
        self.outstanding -= 1
        self.errors[why] += 1
        if pending.done is not None and not pending.done.done():
            pending.done.set_result(0)


def summary_ms(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)

    def at(p: float) -> float | None:
        if not ordered:
            return None
        k = min(len(ordered) - 1, max(0, int(p / 100 * len(ordered) + 0.5) - 1))
        return round(ordered[k] * 1000, 3)

    return {
        "p50": at(50),
        "p90": at(90),
        "p99": at(99),
        "p999": at(99.9),
        "max": round(ordered[-1] * 1000, 3) if ordered else None,
        "mean": round(sum(ordered) / len(ordered) * 1000, 3) if ordered else None,
        "count": len(ordered),
    }


async def drain(client: Client, seconds: float) -> None:
    """Until every request is answered (or lost), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while client.outstanding > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def open_loop(args: argparse.Namespace, reqs: list[tuple[bytes, str]]) -> dict[str, Any]:
    client = Client(args.host, args.port, args.max_conns)
    await client.preopen(args.preopen)
    rate = float(args.rate)
    lags: list[float] = []
    n = len(reqs)
    t0 = client.t0 = time.monotonic() + 0.05
    i = 0
    while i < n:
        now = time.monotonic()
        due = t0 + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        while i < n:
            due = t0 + i / rate
            if due > now:
                break
            raw, tag = reqs[i]
            pending = Pending(due, tag)
            client.submit(raw, pending)
            lags.append(time.monotonic() - due)
            i += 1
    sent_all = time.monotonic()
    await drain(client, args.drain_timeout)
    return {
        "mode": "open",
        "rate": rate,
        "requests": n,
        "schedule_seconds": round(n / rate, 3),
        "send_seconds": round(sent_all - t0, 3),
        "achieved_send_rate": round(n / max(sent_all - t0, 1e-9), 1),
        "answered": sum(client.statuses.values()),
        "unanswered": client.outstanding,
        "statuses": {str(k): v for k, v in sorted(client.statuses.items())},
        "errors": dict(client.errors),
        "latency_ms": summary_ms(client.latency),
        "service_latency_ms": summary_ms(client.service),
        "send_lag_ms": summary_ms(lags),
        "connections_opened": client.opened,
        # Each second of the schedule: how many, median and worst latency (ms): stalls show here.
        "per_second": [
            [sec, len(v), round(sorted(v)[len(v) // 2] * 1000, 2), round(max(v) * 1000, 2)]
            for sec, v in sorted(client.by_second.items())
        ],
        "probes": client.probes,
    }


async def closed_loop(args: argparse.Namespace, reqs: list[tuple[bytes, str]]) -> dict[str, Any]:
    client = Client(args.host, args.port, args.concurrency)
    await client.preopen(args.concurrency)
    loop = asyncio.get_running_loop()
    it = iter(reqs)
    started = time.monotonic()

    async def worker() -> None:
        for raw, tag in it:
            fut: asyncio.Future[int] = loop.create_future()
            now = time.monotonic()
            client.submit(raw, Pending(now, tag, fut))
            await fut

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    return {
        "mode": "closed",
        "concurrency": args.concurrency,
        "requests": len(reqs),
        "seconds": round(elapsed, 3),
        "rps": round(len(reqs) / max(elapsed, 1e-9), 1),
        "statuses": {str(k): v for k, v in sorted(client.statuses.items())},
        "errors": dict(client.errors),
        "latency_ms": summary_ms(client.latency),
        "probes": client.probes,
    }


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["open", "closed"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="open: requests per second")
    parser.add_argument("--max-conns", type=int, default=512, help="open: connection cap")
    parser.add_argument("--preopen", type=int, default=16, help="open: connections made first")
    parser.add_argument("--concurrency", type=int, default=32, help="closed: workers")
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    args = parser.parse_args()
    reqs = list(read_records(args.file))
    coro = open_loop(args, reqs) if args.mode == "open" else closed_loop(args, reqs)
    result = run_async(coro)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
