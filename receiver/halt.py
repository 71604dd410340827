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

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from . import __version__
from .backoff import parse_retry_after
from .errors import ConfigError
from .ids import fits_one_path_segment
from .logs import redact_url
from .settings import Settings

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
    """Calls RECEIVER_HALT_URL (``{task_id}`` is replaced, URL-encoded) on a shared client."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.halt_url is None:
            raise ConfigError(["RECEIVER_HALT_URL: required to call out for halts"])
        self._template = settings.halt_url.get_secret_value()
        if urlsplit(self._template).scheme not in ("http", "https"):
            raise ConfigError(["RECEIVER_HALT_URL: must be an http:// or https:// URL"])
        self._method = settings.halt_method
        self._token = (
            None if settings.halt_token is None else settings.halt_token.get_secret_value()
        )
        self._timeout = settings.halt_timeout_seconds
        self._client = client
        self._clock = clock
        self._secrets = _secrets(self._template, self._token)

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
        text = text.replace(url, redact_url(url))
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:_MAX_ERROR]


def _header_value(text: str) -> str:
    """Keys of rows stored by older versions may hold any text; a header holds ASCII."""
    return text if text.isascii() and text.isprintable() else quote(text, safe="")


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return f": {text}" if text else ""


def _secrets(template: str, token: str | None) -> tuple[str, ...]:
    parts = urlsplit(template)
    query_values = [value for _, value in parse_qsl(parts.query)]
    found = {token, parts.password, parts.username, parts.query, *query_values}
    return tuple(sorted((s for s in found if s and len(s) >= 3), key=len, reverse=True))
