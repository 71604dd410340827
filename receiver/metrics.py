"""Prometheus metrics: counters fed by the pipeline, gauges read from the store at scrape time."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import RequestRejected
from .model import StoreStats

log = logging.getLogger("receiver.ingest")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Handler = Callable[[Request], Awaitable[Response]]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter(
            "receiver_events", "Webhook events by source and outcome (rejected: with reason)",
            ["source", "outcome", "reason"], registry=r,
        )  # fmt: skip
        self.signature_failures = Counter(
            "receiver_signature_failures", "Webhooks refused for their signature or token",
            ["source"], registry=r,
        )  # fmt: skip
        self.transitions = Counter(
            "receiver_state_transitions", "Task state changes", ["from_state", "to_state"],
            registry=r,
        )  # fmt: skip
        self.deliveries = Counter(
            "receiver_deliveries", "Delivery attempts by channel type and outcome",
            ["channel_type", "outcome"], registry=r,
        )  # fmt: skip
        self.halt_call_seconds = Histogram(
            "receiver_halt_call_seconds", "Duration of one halt call to the platform",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.time_to_halt = Histogram(
            "receiver_time_to_halt_seconds",
            "From the commit that owed a halt to the platform confirming it",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.requests = Histogram(
            "receiver_http_request_seconds", "HTTP request latency",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.tasks = Gauge("receiver_tasks", "Tasks by state", ["state"], registry=r)
        self.outbox_pending = Gauge(
            "receiver_outbox_pending", "Deliveries owed and not yet made", registry=r
        )
        self.outbox_dead = Gauge("receiver_outbox_dead", "Dead deliveries", registry=r)
        self.outbox_oldest_due = Gauge(
            "receiver_outbox_oldest_due_age_seconds",
            "How long the earliest pending delivery has been due (0 if none)",
            registry=r,
        )

    def transition(self, old: str, new: str) -> None:
        self.transitions.labels(old, new).inc()

    def halt_call(self, outcome: str, seconds: float, time_to_halt: float | None) -> None:
        self.halt_call_seconds.labels(outcome).observe(seconds)
        if time_to_halt is not None:
            self.time_to_halt.observe(max(0.0, time_to_halt))

    def webhook(self, source: str, handler: Handler) -> Handler:
        """Count every outcome of a webhook route, rejections by their error code."""

        async def counted(request: Request) -> Response:
            try:
                response = await handler(request)
            except RequestRejected as exc:
                log.info(
                    "event from %s rejected (%d %s): %s",
                    source, exc.status, exc.code, exc.detail,
                    extra={"source": source, "outcome": "rejected", "reason": exc.code},
                )  # fmt: skip
                self.events.labels(source, "rejected", exc.code).inc()
                if exc.status == 401 or exc.status == 403:
                    self.signature_failures.labels(source).inc()
                raise
            outcome = "accepted" if response.status_code == 202 else _status_of(response)
            self.events.labels(source, outcome, "").inc()
            return response

        return counted

    def delivery(self, channel: str, outcome: str) -> None:
        self.deliveries.labels(channel.split("-", 1)[0], outcome).inc()

    def render(self, stats: StoreStats, now: float) -> Response:
        self.tasks.clear()
        for state, count in stats.tasks_by_state.items():
            self.tasks.labels(state).set(count)
        self.outbox_pending.set(stats.pending)
        self.outbox_dead.set(stats.dead)
        oldest = stats.oldest_due
        self.outbox_oldest_due.set(0 if oldest is None else max(0.0, now - oldest))
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


def _status_of(response: Response) -> str:
    try:
        status = json.loads(bytes(response.body)).get("status")
    except (ValueError, AttributeError):
        status = None
    return status if isinstance(status, str) else str(response.status_code)


class RequestTimer:
    """Pure ASGI middleware: a latency histogram labelled by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        # The router puts the matched endpoint into the scope; its path is the label (the
        # first route's, where an alias shares the endpoint).
        self.paths: dict[object, str] = {}
        for route in routes:
            if isinstance(route, Route):
                self.paths.setdefault(route.endpoint, route.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = self.paths.get(scope.get("endpoint"), "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
