"""The HTTP edge for webhooks: limits -> verify -> parse -> one durable commit -> 2xx."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse

from .edge import answer, ignored, read_body, require_json
from .errors import SignatureError
from .events import load_json, parse_event
from .record import Recorder
from .verify import is_signed, message_id, verify


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
            return ignored("budget", event_id, "unknown type")
        return answer(await self.recorder.record(event), event)
