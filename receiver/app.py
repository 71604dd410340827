"""The only module that wires things: settings -> store, channels, dispatcher, routes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from . import __version__
from .api import TaskApi
from .auth import Role, Tokens
from .channels import Channel, build_channels, close_channels, routes
from .connections import BodyDeadline
from .dispatch import Dispatcher
from .errors import RequestRejected, StoreUnavailable
from .halt import HaltCaller, LocalHalt
from .ingest import Ingest
from .logs import redact_url, setup_logging
from .metrics import Metrics, RequestTimer
from .openapi import spec
from .page import page_routes
from .prune import Pruner
from .record import Recorder
from .settings import Settings, load_settings
from .sources import SourceConfig, source_routes
from .state import Policy
from .store import Store, open_store

log = logging.getLogger("receiver")


def policy_of(settings: Settings) -> Policy:
    return Policy(
        thresholds=tuple(settings.thresholds),
        halt_at=settings.halt_at,
        halt_calls_out=settings.halt_url is not None,
        spend_after_halt_quiet_seconds=settings.spend_after_halt_quiet_seconds,
    )


def channels_of(settings: Settings) -> list[Channel]:
    return build_channels(settings.notify_urls, settings.apprise_config)


def store_of(settings: Settings) -> Store:
    return open_store(settings.database_url, pool_size=settings.database_pool_size)


def halt_target(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    clock: Callable[[], float] = time.time,
    observe: Callable[[str, float, float | None], object] = lambda *_: None,
) -> HaltCaller | LocalHalt:
    if settings.halt_url is None:
        return LocalHalt()
    return HaltCaller(
        settings.halt_url.get_secret_value(),
        http,
        method=settings.halt_method,
        token=None if settings.halt_token is None else settings.halt_token.get_secret_value(),
        timeout=settings.halt_timeout_seconds,
        clock=clock,
        observe=observe,
    )


def sources_of(settings: Settings) -> SourceConfig:
    return SourceConfig(
        max_body_bytes=settings.max_body_bytes,
        litellm_token=settings.litellm_token,
        litellm_entity=settings.litellm_entity,
        sns_topic_arns=settings.sns_topic_arns,
        sns_cert_host_pattern=settings.sns_cert_host_pattern,
        gcp_audience=settings.gcp_audience,
        gcp_service_account=settings.gcp_service_account,
        gcp_jwks_url=settings.gcp_jwks_url,
        gcp_token=settings.gcp_token,
    )


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


async def _rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestRejected)
    return error(exc.status, exc.code, exc.detail)


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.error("storage unavailable: %s", exc)
    return error(503, "storage_unavailable", "the store cannot take this now; retry later")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, str(exc.detail))


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> Starlette:
    """Build the app; raises ConfigError for settings found bad only here (channel URLs)."""
    channels = channels_of(settings)
    store = store_of(settings)
    policy = policy_of(settings)
    channel_routes = routes(channels)
    metrics = Metrics()
    http = httpx.AsyncClient(timeout=httpx.Timeout(settings.halt_timeout_seconds))
    dispatcher = Dispatcher(
        store=store,
        targets=[*channels, halt_target(settings, http, clock=clock, observe=metrics.halt_call)],
        policy=policy,
        routes=channel_routes,
        max_attempts=settings.delivery_max_attempts,
        retry_base=settings.retry_base_seconds,
        retry_cap=settings.retry_cap_seconds,
        lease_seconds=settings.lease_seconds,
        clock=clock,
        transitioned=metrics.transition,
        settled=metrics.delivery,
    )
    pruner = Pruner(store, days=settings.retention_days, clock=clock)
    recorder = Recorder(store, policy, channel_routes, clock, dispatcher.wake, metrics.transition)
    ingest = Ingest(
        recorder=recorder,
        keys=settings.secret_keys,
        allow_unsigned=settings.allow_unsigned,
        tolerance=settings.replay_tolerance_seconds,
        max_body_bytes=settings.max_body_bytes,
    )
    tokens = Tokens(settings.admin_token, settings.read_token)
    api = TaskApi(recorder=recorder, tokens=tokens)
    openapi = spec()
    scrape = None if settings.metrics_token is None else Tokens(settings.metrics_token, None)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        try:
            # A committed write, not a read: a full disk or a read-only database is not ready.
            await store.ready(clock())
        except StoreUnavailable as exc:
            return error(503, "storage_unavailable", str(exc))
        if not dispatcher.running:
            return error(503, "dispatcher_stopped", "the outbox dispatcher is not running")
        return JSONResponse({"status": "ready"})

    async def prometheus(request: Request) -> Response:
        if scrape is not None:
            scrape.require(request, Role.ADMIN)
        return metrics.render(await store.stats(), clock())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        _log_start(settings, store.description, [c.redacted for c in channels])
        dispatcher.start()
        pruner.start()
        try:
            yield
        finally:
            await pruner.stop()
            await dispatcher.stop()
            await http.aclose()
            close_channels(channels)
            await store.close()
            log.info("stopped")

    budget = metrics.webhook("budget", ingest.handle)
    http_routes = [
        HttpRoute("/webhooks/budget", budget, methods=["POST"]),
        HttpRoute("/webhooks/budget-tracking", budget, methods=["POST"]),
        *source_routes(sources_of(settings), recorder, http, clock, metrics.webhook),
        *api.routes_(),
        HttpRoute("/healthz", healthz, methods=["GET"]),
        HttpRoute("/readyz", readyz, methods=["GET"]),
        HttpRoute("/metrics", prometheus, methods=["GET"]),
        HttpRoute("/openapi.json", lambda _: JSONResponse(openapi), methods=["GET"]),
        *page_routes(store, tokens, policy.thresholds, policy.halt_at, clock=clock),
    ]
    return Starlette(
        routes=http_routes,
        middleware=[
            Middleware(RequestTimer, metrics=metrics, routes=http_routes),
            Middleware(BodyDeadline, seconds=settings.body_timeout_seconds),
        ],
        exception_handlers={
            RequestRejected: _rejected,
            StoreUnavailable: _unavailable,
            HTTPException: _http_error,
        },
        lifespan=lifespan,
    )


def create_app_from_env() -> Starlette:
    """The factory each worker process calls when RECEIVER_WORKERS > 1 (settings from env)."""
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def _log_start(settings: Settings, store: str, channels: list[str]) -> None:
    log.info(
        "budget-receiver %s listening on http://%s:%d", __version__, settings.host, settings.port
    )
    log.info("store: %s", store)
    log.info("alert channels: %s", ", ".join(channels))
    if settings.halt_url is None:
        log.info("halting: local only (no RECEIVER_HALT_URL): the gate answers 'not allowed'")
    else:
        url = redact_url(settings.halt_url.get_secret_value())
        log.info("halting: calls out with %s %s", settings.halt_method, url)
    if settings.retention_days:
        log.info(
            "retention: history of tasks finished more than %d days ago is pruned hourly",
            settings.retention_days,
        )
    else:
        log.info("retention: off (RECEIVER_RETENTION_DAYS=0), history is kept forever")
    if settings.allow_unsigned:
        log.warning(
            "RECEIVER_ALLOW_UNSIGNED=true: UNSIGNED WEBHOOKS ARE ACCEPTED. "
            "Anyone who can reach this port can move budgets. Development only."
        )
