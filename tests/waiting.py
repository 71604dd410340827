"""Waiting in tests: poll for what is awaited, and a free port for a server to listen on.

``poll`` (threads, processes) and ``apoll`` (inside an event loop) ask ``probe`` again
and again until ``until`` accepts its answer, and return that answer. If the time runs
out they fail with an AssertionError that says what was awaited and the last answer
seen (or the last exception ``ignore`` let through), plus ``context()`` (a log's tail).

A test waits by polling for the thing it needs to see, not by sleeping: a sleep long
enough on a loaded machine is a waste everywhere else, and still not always enough.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
HOST = "127.0.0.1"
INTERVAL = 0.05


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class _Watch:
    """The deadline and the last answer of one wait."""

    def __init__(self, what: str, timeout: float, context: Callable[[], str] | None) -> None:
        self.what, self.timeout, self.context = what, timeout, context
        self.deadline = time.monotonic() + timeout
        self.last: str = "nothing yet"

    def saw(self, value: object) -> None:
        status, text = getattr(value, "status_code", None), getattr(value, "text", None)
        if isinstance(status, int) and isinstance(text, str):  # an HTTP response
            self.last = f"HTTP {status} {text[:1000]!r}"
        else:
            self.last = repr(value)

    def failed(self, exc: BaseException) -> None:
        self.last = f"{type(exc).__name__}: {exc}"

    def check(self) -> None:
        if time.monotonic() < self.deadline:
            return
        message = f"gave up after {self.timeout:g} s waiting for {self.what}; last seen: "
        message += self.last[:4000]
        if self.context is not None:
            message += "\n" + self.context()
        raise AssertionError(message)


def poll(
    probe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    what: str,
    timeout: float = 15.0,
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
    context: Callable[[], str] | None = None,
) -> T:
    """``probe()`` every ``interval`` seconds until ``until`` accepts it (by default: until
    it is truthy); returns that value. An exception of a type in ``ignore`` counts as
    "not yet"; any other propagates at once (e.g. "the daemon exited")."""
    watch = _Watch(what, timeout, context)
    while True:
        try:
            value = probe()
        except ignore as exc:
            watch.failed(exc)
        else:
            if until(value):
                return value
            watch.saw(value)
        watch.check()
        time.sleep(interval)


async def apoll(
    probe: Callable[[], Awaitable[T] | T],
    until: Callable[[T], object] = bool,
    *,
    what: str,
    timeout: float = 15.0,  # noqa: ASYNC109 - as poll's; the last answer goes in the failure
    interval: float = INTERVAL,
    ignore: tuple[type[BaseException], ...] = (),
    context: Callable[[], str] | None = None,
) -> T:
    """``poll`` for a test inside an event loop: the loop runs between probes, and a probe
    may be a coroutine function."""
    watch = _Watch(what, timeout, context)
    while True:
        try:
            answer = probe()
            value: T = await answer if inspect.isawaitable(answer) else answer
        except ignore as exc:
            watch.failed(exc)
        else:
            if until(value):
                return value
            watch.saw(value)
        watch.check()
        await asyncio.sleep(interval)
