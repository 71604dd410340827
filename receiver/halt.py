"""The halt call: ask the platform to stop a task. Never raises for HTTP or network trouble.

    2xx                  DONE      halted
    404, 409, 410        GONE      the task is already gone or stopped: counts as halted
    408, 429, 5xx,
    network, timeout     RETRY     try again later (Retry-After is passed on)
    other 4xx, 3xx       REJECTED  retrying will not help (bad token, bad URL, bad request)

The request carries the same Idempotency-Key on every retry of one halt, so the
platform can tell a retry from a second halt. Error texts never hold the bearer
token or the URL's credentials or query. Any other failure (a bug, a header that
cannot be sent) is a RETRY with its error: every attempt counts, so a halt that can
never succeed ends dead, with a person told, instead of being tried forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from . import __version__
from .backoff import parse_retry_after
from .delivery import FollowUps, Result
from .errors import ConfigError
from .ids import fits_one_path_segment
from .logs import Redactor, redact_url, url_secrets
from .model import Delivery, EventType
from .outbox import HALT_CHANNEL

log = logging.getLogger("receiver.dispatch")
GONE_STATUSES = frozenset({404, 409, 410})
RETRY_STATUSES = frozenset({408, 429})
BODY_FIELDS = ("task_id", "reason", "spent", "budget", "currency")
_MAX_ERROR = 300


class HaltOutcome(StrEnum):
    DONE = "done"
    GONE = "gone"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class HaltResult:
    outcome: HaltOutcome
    status: int | None = None
    retry_after: float | None = None
    error: str | None = None


class HaltCaller:
    """Calls the halt URL (``{task_id}`` is replaced, URL-encoded) on a shared client: the
    delivery target of every halt row."""

    id = HALT_CHANNEL
    serial = False  # nothing may delay a halt call, not even another one
    follow_ups = FollowUps(
        done=EventType.HALT_CONFIRMED, dead=EventType.HALT_FAILED, dead_hint="halt it by hand"
    )

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        method: str = "POST",
        token: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        observe: Callable[[str, float, float | None], object] = lambda *_: None,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(["RECEIVER_HALT_URL: must be an http:// or https:// URL"])
        self._template = url
        self._method = method
        self._token = token
        self._timeout = timeout
        self._client = client
        self._clock = clock
        # Each call's outcome, its duration and, once halted, the time since it was owed.
        self._observe = observe
        self._redact = Redactor({*url_secrets(url), token})
        self.shown = redact_url(url)

    async def send(self, row: Delivery) -> Result:
        started = time.perf_counter()
        result = await self.call(row.payload, row.idempotency_key)
        seconds = time.perf_counter() - started
        halted = result.outcome in (HaltOutcome.DONE, HaltOutcome.GONE)
        owed_for = self._clock() - row.created_at if halted else None
        self._observe(result.outcome.value, seconds, owed_for)
        if halted:
            log.warning("task %s halted by the platform (HTTP %s)", row.task_id, result.status)
            return Result.done()
        error = result.error or f"HTTP {result.status}"
        if result.outcome is HaltOutcome.RETRY:
            return Result.retry(error, result.retry_after)
        return Result.rejected(error)

    def url_for(self, task_id: str) -> str:
        return self._template.replace("{task_id}", quote(task_id, safe=""))

    async def call(self, payload: dict[str, Any], idempotency_key: str) -> HaltResult:
        """One attempt at halting ``payload["task_id"]``."""
        task_id = str(payload.get("task_id", ""))
        if not fits_one_path_segment(task_id):
            # Stored before ingest refused such ids: the URL would name another path.
            return HaltResult(
                HaltOutcome.REJECTED,
                error=f"task id {task_id!r} cannot be one path segment of the halt URL",
            )
        try:
            return await self._call(self.url_for(task_id), payload, idempotency_key)
        except Exception as exc:
            error = f"unexpected {type(exc).__name__}: {exc}"
            return HaltResult(HaltOutcome.RETRY, error=self._clean(error, self._template))

    async def _call(self, url: str, payload: dict[str, Any], idempotency_key: str) -> HaltResult:
        headers = {
            "Idempotency-Key": _header_value(idempotency_key),
            "User-Agent": f"budget-receiver/{__version__}",
            "Accept": "application/json",
        }
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        body = {name: payload.get(name) for name in BODY_FIELDS}
        try:
            response = await self._client.request(
                self._method, url, json=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            return HaltResult(
                HaltOutcome.RETRY,
                error=f"no answer within {self._timeout:g} s ({type(exc).__name__})",
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return HaltResult(HaltOutcome.REJECTED, error=self._clean(f"bad halt URL: {exc}", url))
        except httpx.HTTPError as exc:
            detail = str(exc) or "no detail"
            return HaltResult(
                HaltOutcome.RETRY, error=self._clean(f"{type(exc).__name__}: {detail}", url)
            )
        return self._classify(response, url)

    def _classify(self, response: httpx.Response, url: str) -> HaltResult:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
        if 200 <= status < 300:
            return HaltResult(HaltOutcome.DONE, status)
        if status in GONE_STATUSES:
            return HaltResult(HaltOutcome.GONE, status)
        error = self._clean(f"HTTP {status} {response.reason_phrase}{_snippet(response)}", url)
        if status in RETRY_STATUSES or 500 <= status < 600:
            return HaltResult(HaltOutcome.RETRY, status, retry_after, error)
        if 300 <= status < 400:
            error += " (a redirect: set RECEIVER_HALT_URL to the final URL)"
        elif status in (401, 403):
            error += " (check RECEIVER_HALT_TOKEN)"
        return HaltResult(HaltOutcome.REJECTED, status, retry_after, error)

    def _clean(self, text: str, url: str) -> str:
        return self._redact.text(text.replace(url, redact_url(url)))[:_MAX_ERROR]


def _header_value(text: str) -> str:
    """Keys of rows stored by older versions may hold any text; a header holds ASCII."""
    return text if text.isascii() and text.isprintable() else quote(text, safe="")


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return f": {text}" if text else ""


class LocalHalt:
    """The halt target without a halt URL: nothing to call, the task is halted here (rows
    owed before RECEIVER_HALT_URL was removed are confirmed at once)."""

    id = HALT_CHANNEL
    shown = "local"
    serial = False
    follow_ups = HaltCaller.follow_ups

    async def send(self, row: Delivery) -> Result:
        return Result.done()
