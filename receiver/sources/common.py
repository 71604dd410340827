"""What the other sources share: a shared-token check, ids from sender text, answers."""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import InvalidEvent, RequestRejected, Unauthorized
from ..events import MAX_UNIX_SECONDS
from ..model import Applied, BudgetEvent, Outcome

log = logging.getLogger("receiver.sources")

_MAX_ID = 200


class UpstreamUnavailable(RequestRejected):
    """502: a sender's key or certificate server (or SubscribeURL) could not be reached.

    Not the sender's fault, so it is told to retry; nothing was stored.
    """

    status = 502
    code = "upstream_unavailable"


def presented_token(request: Request) -> str | None:
    """The token in ``Authorization: Bearer <token>``, else in ``?token=``."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token") or None


def token_matches(offered: str | None, expected: SecretStr) -> bool:
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode(), expected.get_secret_value().encode())


def require_shared_token(request: Request, expected: SecretStr) -> None:
    offered = presented_token(request)
    if offered is None:
        raise Unauthorized("send the token as 'Authorization: Bearer <token>' or ?token=<token>")
    if not token_matches(offered, expected):
        raise Unauthorized("unknown token")


def clean_id(value: object, field: str) -> str:
    """A sender's identifier fit for a task or event id: printable text, not too long."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{field}: required, a non-empty string", code="missing_field")
    value = value.strip()
    if len(value) > _MAX_ID or not value.isprintable():
        raise InvalidEvent(f"{field}: at most {_MAX_ID} printable characters")
    return value


def optional_text(value: object) -> str | None:
    """Free text (a display name) if usable, else None: never a reason to refuse an event."""
    if isinstance(value, str) and value.strip() and value.isprintable():
        return value.strip()[:_MAX_ID]
    return None


def rfc3339(value: object) -> float | None:
    """Unix seconds from an RFC 3339 time with a zone, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None or not 0 <= moment.timestamp() <= MAX_UNIX_SECONDS:
        return None  # no zone, or a zone that moves year 1 or 9999 past what views can show
    return moment.timestamp()


def ignored(source: str, event_id: str, why: str) -> JSONResponse:
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
