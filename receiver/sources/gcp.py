"""``POST /webhooks/gcp-billing``: Cloud Billing budget notifications via Pub/Sub push.

The push body is ``{"message": {"data": <base64 JSON>, "attributes": {...},
"messageId": ..., "publishTime": ...}, "subscription": ...}``. The data holds
budgetDisplayName, costAmount, budgetAmount, currencyCode, costIntervalStart and,
once crossed, alertThresholdExceeded / forecastThresholdExceeded; the attributes
hold budgetId and billingAccountId.

Periods: a budget's cost starts again from 0 at each costIntervalStart, so each
period is a task of its own, ``gcp:<budgetId>:<YYYY-MM-DD of costIntervalStart>``.
A new month never needs a person to resume last month's halted task, and the
previous months stay in the task list as a record.

Auth: the push's OIDC token (Authorization: Bearer <JWT>), checked against
RECEIVER_GCP_AUDIENCE and RECEIVER_GCP_SERVICE_ACCOUNT; or, when RECEIVER_GCP_TOKEN
is set, that shared token (Bearer or ?token=). Either suffices when both are set.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..edge import answer, read_body, require_json
from ..errors import InvalidEvent, Unauthorized
from ..events import load_json, rfc3339
from ..model import BudgetEvent, EventType
from ..money import parse_currency, parse_money
from ..record import Recorder
from .common import clean_id, optional_text, presented_token, token_matches
from .oidc import Expected, JwksCache, split_jwt, verify_jwt

SOURCE = "gcp"


def parse_push(doc: Any, *, now: float) -> BudgetEvent:
    """The event for one Pub/Sub push of a budget notification."""
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(message, dict):
        raise InvalidEvent("message: required, a Pub/Sub push message", code="missing_field")
    message_id = clean_id(message.get("messageId", message.get("message_id")), "messageId")
    attributes = message.get("attributes")
    if not isinstance(attributes, dict):
        raise InvalidEvent("message.attributes: required", code="missing_field")
    budget_id = clean_id(attributes.get("budgetId"), "attributes.budgetId")
    data = _data(message.get("data"))

    interval = data.get("costIntervalStart")
    if rfc3339(interval) is None:
        raise InvalidEvent("costIntervalStart: required, an RFC 3339 time", code="missing_field")
    threshold = data.get("alertThresholdExceeded")
    return BudgetEvent(
        event_id=f"{SOURCE}:{message_id}",
        source=SOURCE,
        type=EventType.SPEND if threshold is None else EventType.THRESHOLD,
        task_id=f"{SOURCE}:{budget_id}:{str(interval)[:10]}",
        occurred_at=rfc3339(message.get("publishTime", message.get("publish_time"))) or now,
        task_name=optional_text(data.get("budgetDisplayName")),
        budget=parse_money(data.get("budgetAmount"), "budgetAmount"),
        spent=parse_money(data.get("costAmount"), "costAmount"),
        currency=parse_currency(data.get("currencyCode"), "currencyCode"),
        threshold=None if threshold is None else parse_money(threshold, "alertThresholdExceeded"),
        payload={"attributes": attributes, "data": data, "messageId": message_id},
    )


def _data(encoded: object) -> dict[str, Any]:
    if not isinstance(encoded, str):
        raise InvalidEvent("message.data: required, base64 JSON", code="missing_field")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEvent("message.data: not base64") from None
    doc = load_json(raw)
    if not isinstance(doc, dict):
        raise InvalidEvent("message.data: must be a JSON object")
    return doc


class GcpSource:
    def __init__(
        self,
        *,
        recorder: Recorder,
        clock: Callable[[], float],
        jwks: JwksCache | None,
        expected: Expected | None,
        token: SecretStr | None,
        max_body_bytes: int,
    ) -> None:
        self.recorder = recorder
        self.clock = clock
        self.jwks = jwks
        self.expected = expected
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def authenticate(self, request: Request, now: float) -> None:
        offered = presented_token(request)
        if offered is None:
            raise Unauthorized("send the push's OIDC token as 'Authorization: Bearer <jwt>'")
        if self.token is not None and token_matches(offered, self.token):
            return
        if self.jwks is None or self.expected is None:
            raise Unauthorized("unknown token")
        token = split_jwt(offered)
        verify_jwt(token, await self.jwks.key(token.header.get("kid"), now), self.expected, now)

    async def handle(self, request: Request) -> JSONResponse:
        now = self.clock()
        await self.authenticate(request, now)
        require_json(request)
        body = await read_body(request, self.max_body_bytes)
        event = parse_push(load_json(body), now=now)
        applied = await self.recorder.record(event)
        return answer(applied, event)
