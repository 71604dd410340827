"""What every webhook route shares at the HTTP edge: reading the body, the JSON answers."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from .errors import PayloadTooLarge, UnsupportedMediaType
from .model import Applied, BudgetEvent, Outcome

log = logging.getLogger("receiver.ingest")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def require_json(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("send the event as Content-Type: application/json")


def ignored(source: str, event_id: str, why: str) -> JSONResponse:
    """200 ``ignored``: the event was understood and is of no concern; nothing was stored."""
    log.info(
        "%s event %s ignored: %s",
        source,
        event_id,
        why,
        extra={"event_id": event_id, "source": source, "outcome": "ignored"},
    )
    return JSONResponse({"status": Outcome.IGNORED.value, "event_id": event_id})


def answer(applied: Applied, event: BudgetEvent, *, accepted_status: int = 202) -> JSONResponse:
    """The reply after a commit: ``accepted_status`` when stored, 200 for a duplicate."""
    fields = {"event_id": event.event_id, "task_id": event.task_id, "source": event.source}
    if applied.outcome is not Outcome.ACCEPTED:
        log.info(
            "%s event %s task %s duplicate",
            event.source,
            event.event_id,
            event.task_id,
            extra={**fields, "outcome": applied.outcome.value},
        )
        return JSONResponse({"status": applied.outcome.value, "event_id": event.event_id})
    state = applied.task.state.value if applied.task else None
    log.info(
        "%s event %s task %s %s -> %s",
        event.source,
        event.event_id,
        event.task_id,
        event.type.value,
        state,
        extra={**fields, "type": event.type.value, "outcome": "accepted", "state": state},
    )
    return JSONResponse(
        {
            "status": applied.outcome.value,
            "event_id": event.event_id,
            "task_id": event.task_id,
            "state": state,
        },
        status_code=accepted_status,
    )
