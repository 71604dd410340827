"""The status page at ``/``: its routes, its session cookie, and what it reads.

Signing in posts the read or admin token once; the answer sets an HttpOnly,
SameSite=Strict cookie holding a session made from it (``Tokens.session_for``),
never the token itself. The HTML is built by ``page_html`` from plain data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .auth import SESSION_SECONDS, Role, Tokens
from .edge import read_body
from .errors import Forbidden, StoreUnavailable
from .model import DeliveryStatus, Task
from .page_html import RANK, Snapshot, render_login, render_status, render_unavailable
from .store import Store

log = logging.getLogger("receiver.page")
COOKIE = "receiver_session"
MAX_TASKS = 500  # read most urgent first, so a cut drops active and completed tasks
TASK_PAGE = 200
RECENT_ALERTS = 20
MAX_DEAD = 50
MAX_FORM_BYTES = 4096
HEADERS = {
    "Cache-Control": "no-store",
    # No script runs on these pages at all; styles are inline.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def read_snapshot(store: Store) -> Snapshot:
    """Tasks (at most MAX_TASKS), the latest delivered rows and the oldest dead ones."""
    tasks: list[Task] = []
    more_tasks = False
    for state in RANK:
        after: str | None = None
        while not more_tasks:
            want = min(TASK_PAGE, MAX_TASKS + 1 - len(tasks))
            page = await store.list_tasks(state=state, after=after, limit=want)
            tasks.extend(page)
            more_tasks = len(tasks) > MAX_TASKS
            if len(page) < want:
                break
            after = page[-1].task_id
    recent = await store.recent_deliveries(status=DeliveryStatus.DELIVERED, limit=RECENT_ALERTS)
    dead = await store.list_deliveries(status=DeliveryStatus.DEAD, after=None, limit=MAX_DEAD + 1)
    return Snapshot(
        tasks=tasks[:MAX_TASKS],
        recent=recent,
        dead=dead[:MAX_DEAD],
        more_tasks=more_tasks,
        more_dead=len(dead) > MAX_DEAD,
    )


def _html(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=HEADERS)


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def page_routes(
    store: Store,
    tokens: Tokens,
    policy_thresholds: Sequence[Decimal],
    halt_at: Decimal,
    *,
    clock: Callable[[], float] = time.time,
) -> list[Route]:
    """GET /, GET+POST /login, POST /logout (a GET is 405: no link or image can sign out)."""
    page = StatusPage(store, tokens, policy_thresholds, halt_at, clock)
    return [
        Route("/", page.status, methods=["GET"]),
        Route("/login", page.login_form, methods=["GET"]),
        Route("/login", page.login, methods=["POST"]),
        Route("/logout", page.logout, methods=["POST"]),
    ]


class StatusPage:
    def __init__(
        self,
        store: Store,
        tokens: Tokens,
        thresholds: Sequence[Decimal],
        halt_at: Decimal,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.thresholds = thresholds
        self.halt_at = halt_at
        self.clock = clock

    def role_of(self, request: Request) -> Role | None:
        return self.tokens.session_role(request.cookies.get(COOKIE, ""), self.clock())

    async def status(self, request: Request) -> Response:
        role = self.role_of(request)
        if role is None:
            return _see("/login")
        try:
            snapshot = await read_snapshot(self.store)
        except StoreUnavailable as exc:
            log.error("status page: storage unavailable: %s", exc)
            return _html(render_unavailable("The store cannot be read just now."), 503)
        page = render_status(
            snapshot,
            thresholds=self.thresholds,
            halt_at=self.halt_at,
            now=self.clock(),
            role=role.value,
            base_url=str(request.base_url),
        )
        return _html(page)

    async def login_form(self, request: Request) -> Response:
        if not self.tokens.configured:
            return _html(render_login(disabled=True), 403)
        if self.role_of(request) is not None:
            return _see("/")
        return _html(render_login())

    async def login(self, request: Request) -> Response:
        if not self.tokens.configured:
            return _html(render_login(disabled=True), 403)
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return _html(render_login(error="Send the sign-in form."), 415)
        body = await read_body(request, MAX_FORM_BYTES)
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=5)
        except ValueError:
            return _html(render_login(error="Send the sign-in form."), 400)
        token = (fields.get("token") or [""])[0].strip()
        session = self.tokens.session_for(token, self.clock()) if token else None
        if session is None:
            host = request.client.host if request.client else "?"
            log.warning("status page: sign-in refused from %s (unknown token)", host)
            return _html(render_login(error="That is neither the read nor the admin token."), 401)
        response = _see("/")
        response.set_cookie(
            COOKIE,
            session,
            max_age=SESSION_SECONDS,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        # POST only, and not from another site: a form there could still post here (a
        # top-level navigation may clear even a SameSite=Strict cookie).
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise Forbidden("sign out from the status page itself", code="cross_site")
        response = _see("/login")
        response.delete_cookie(
            COOKIE,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response
