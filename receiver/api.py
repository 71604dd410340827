"""The task API: views, the spend gate, a person's resume, and the delivery log."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HttpRoute

from .auth import Role, Tokens
from .edge import read_body
from .errors import Conflict, InvalidEvent, NotFound, RequestRejected
from .events import load_json
from .internal import resumed
from .model import DeliveryStatus, Task, TaskState
from .money import parse_money
from .record import Recorder
from .state import GateReason, gate
from .views import delivery_view, event_view, task_view

log = logging.getLogger("receiver.api")
MAX_PAGE = 500
MAX_JSON_BODY = 16 * 1024
MAX_ID = 2**62
E = TypeVar("E", TaskState, DeliveryStatus)


def _limit(request: Request, default: int = 100) -> int:
    raw = request.query_params.get("limit", str(default))
    # "²" is a digit to isdigit() but not to int(); int() of 5,000 digits raises too.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_PAGE:
        raise RequestRejected(f"limit: a whole number from 1 to {MAX_PAGE}", code="invalid_query")
    return int(raw)


def _int_cursor(request: Request) -> int | None:
    raw = request.query_params.get("after")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise RequestRejected("after: the 'next' value of the previous page", code="invalid_query")
    return int(raw)


def _enum_query(request: Request, name: str, kind: type[E]) -> E | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise RequestRejected(
            f"unknown value {raw!r}: one of {choices}", code="invalid_query"
        ) from None


async def _json_object(request: Request) -> dict[str, Any]:
    body = await read_body(request, MAX_JSON_BODY)
    doc = load_json(body or b"{}")
    if not isinstance(doc, dict):
        raise InvalidEvent("the body must be a JSON object")
    return doc


class TaskApi:
    def __init__(
        self,
        *,
        recorder: Recorder,
        tokens: Tokens,
    ) -> None:
        self.recorder = recorder
        self.store = recorder.store
        self.tokens = tokens
        self.clock = recorder.clock

    def routes_(self) -> list[HttpRoute]:
        return [
            HttpRoute("/v1/tasks", self.list_tasks, methods=["GET"]),
            HttpRoute("/v1/tasks/{task_id:path}/events", self.events, methods=["GET"]),
            HttpRoute("/v1/tasks/{task_id:path}/authorize", self.authorize, methods=["POST"]),
            HttpRoute("/v1/tasks/{task_id:path}/resume", self.resume, methods=["POST"]),
            HttpRoute("/v1/tasks/{task_id:path}", self.show, methods=["GET"]),
            HttpRoute("/v1/deliveries", self.deliveries, methods=["GET"]),
            HttpRoute("/v1/deliveries/{delivery_id:int}/retry", self.retry, methods=["POST"]),
        ]

    async def _task(self, request: Request) -> Task:
        task_id = request.path_params["task_id"]
        task = await self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}", code="unknown_task")
        return task

    async def list_tasks(self, request: Request) -> JSONResponse:
        self.tokens.require(request, Role.READ)
        limit = _limit(request)
        tasks = await self.store.list_tasks(
            state=_enum_query(request, "state", TaskState),
            after=request.query_params.get("after"),
            limit=limit,
        )
        nxt = tasks[-1].task_id if len(tasks) == limit else None
        return JSONResponse({"tasks": [task_view(t) for t in tasks], "next": nxt})

    async def show(self, request: Request) -> JSONResponse:
        self.tokens.require(request, Role.READ)
        return JSONResponse(task_view(await self._task(request)))

    async def events(self, request: Request) -> JSONResponse:
        self.tokens.require(request, Role.READ)
        task = await self._task(request)
        limit = _limit(request)
        records = await self.store.list_events(
            task.task_id, after=_int_cursor(request), limit=limit
        )
        nxt = records[-1].seq if len(records) == limit else None
        return JSONResponse({"events": [event_view(r) for r in records], "next": nxt})

    async def authorize(self, request: Request) -> JSONResponse:
        self.tokens.require(request, Role.READ)
        doc = await _json_object(request)
        amount = parse_money(doc.get("amount", 0), "amount")
        task = await self._task(request)
        reason = gate(task, amount)
        allowed = reason is GateReason.ALLOWED
        body = {"allowed": allowed, "reason": reason.value, "task": task_view(task)}
        if not allowed:
            body["error"] = "not_allowed"
        return JSONResponse(body, status_code=200 if allowed else 402)

    async def resume(self, request: Request) -> JSONResponse:
        self.tokens.require(request, Role.ADMIN)
        doc = await _json_object(request)
        if "budget" not in doc:
            raise InvalidEvent("budget: required, above the spend so far", code="missing_field")
        budget: Decimal = parse_money(doc["budget"], "budget")
        reason = doc.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
            raise InvalidEvent("reason: required, why the task may go on", code="missing_field")
        actor = doc.get("actor", "admin")
        if not isinstance(actor, str) or not actor.strip() or len(actor) > 200:
            raise InvalidEvent("actor: a name of at most 200 characters")
        task = await self._task(request)
        event = resumed(
            task.task_id, budget, actor=actor.strip(), reason=reason.strip(), now=self.clock()
        )
        applied = await self.recorder.record(event)
        log.warning("task %s resumed by %s with budget %s: %s", task.task_id, actor, budget, reason)
        assert applied.task is not None  # a resume is never a duplicate: its id is new
        return JSONResponse(task_view(applied.task))

    async def deliveries(self, request: Request) -> JSONResponse:
        self.tokens.require(request, Role.READ)
        limit = _limit(request)
        rows = await self.store.list_deliveries(
            status=_enum_query(request, "status", DeliveryStatus),
            after=_int_cursor(request),
            limit=limit,
        )
        nxt = rows[-1].id if len(rows) == limit else None
        return JSONResponse({"deliveries": [delivery_view(d) for d in rows], "next": nxt})

    async def retry(self, request: Request) -> JSONResponse:
        self.tokens.require(request, Role.ADMIN)
        delivery_id: int = request.path_params["delivery_id"]
        delivery = None
        if delivery_id < MAX_ID:  # larger ids cannot exist (and overflow a 64-bit column)
            delivery = await self.store.requeue(delivery_id, self.clock())
        if delivery is None:
            raise NotFound("no such delivery", code="unknown_delivery")
        if delivery.status is not DeliveryStatus.PENDING:
            raise Conflict(
                f"delivery {delivery.id} is {delivery.status.value}; only dead ones are retried",
                code="not_dead",
            )
        self.recorder.committed()
        return JSONResponse(delivery_view(delivery))
