"""The HTTP edge for webhooks: limits -> verify -> parse -> one durable commit -> 2xx."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse

from .errors import PayloadTooLarge, SignatureError, UnsupportedMediaType
from .events import load_json, parse_event
from .model import Outcome
from .record import Recorder
from .verify import is_signed, message_id, verify

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


class Ingest:
    """The canonical (``budget``) webhook route."""

    def __init__(
        self,
        *,
        recorder: Recorder,
        keys: Sequence[bytes],
        allow_unsigned: bool,
        tolerance: int,
        max_body_bytes: int,
    ) -> None:
        self.recorder = recorder
        self.keys = list(keys)
        self.allow_unsigned = allow_unsigned
        self.tolerance = tolerance
        self.max_body_bytes = max_body_bytes

    def event_id(self, body: bytes, request: Request, now: float) -> str:
        # A signature in either spelling is checked, even where unsigned requests are allowed.
        if self.keys and (is_signed(request.headers) or not self.allow_unsigned):
            return verify(body, request.headers, self.keys, now, self.tolerance)
        if not self.allow_unsigned:
            raise SignatureError("no webhook secret is configured")
        return message_id(request.headers) or "sha256:" + hashlib.sha256(body).hexdigest()

    async def handle(self, request: Request) -> JSONResponse:
        require_json(request)
        body = await read_body(request, self.max_body_bytes)
        now = self.recorder.clock()
        event_id = self.event_id(body, request, now)
        event = parse_event(load_json(body), event_id=event_id, source="budget", fallback_time=now)
        if event is None:
            log.info(
                "event %s ignored: unknown type",
                event_id,
                extra={"event_id": event_id, "source": "budget", "outcome": "ignored"},
            )
            return JSONResponse({"status": Outcome.IGNORED.value, "event_id": event_id})
        applied = await self.recorder.record(event)
        if applied.outcome is Outcome.DUPLICATE:
            log.info(
                "event %s task %s duplicate",
                event_id,
                event.task_id,
                extra={"event_id": event_id, "task_id": event.task_id, "outcome": "duplicate"},
            )
            return JSONResponse({"status": applied.outcome.value, "event_id": event_id})
        state = applied.task.state.value if applied.task else None
        log.info(
            "event %s task %s %s -> %s",
            event_id,
            event.task_id,
            event.type.value,
            state,
            extra={"event_id": event_id, "task_id": event.task_id, "type": event.type.value,
                   "outcome": "accepted", "state": state, "source": "budget"},
        )  # fmt: skip
        return JSONResponse(
            {
                "status": applied.outcome.value,
                "event_id": event_id,
                "task_id": event.task_id,
                "state": state,
            },
            status_code=202,
        )
