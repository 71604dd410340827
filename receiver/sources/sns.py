"""``POST /webhooks/aws-budgets``: Amazon SNS HTTP(S) delivery of AWS Budgets alerts.

Order of checks, all before any state changes: the body is a JSON object of a
known SNS Type -> its TopicArn is allowed (403) -> its signature verifies with a
certificate from a trusted https URL (401). Then:
SubscriptionConfirmation: GET the SubscribeURL (https, trusted host) to confirm.
UnsubscribeConfirmation: logged; nothing else (re-subscribe in AWS if unexpected).
Notification: the AWS Budgets message -> one event, deduplicated on MessageId.
SNS posts with Content-Type text/plain, so no JSON content type is required.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..edge import answer, ignored, read_body
from ..errors import Forbidden, InvalidEvent
from ..events import load_json, rfc3339
from ..record import Recorder
from .aws_budgets import budget_event, parse_alert
from .common import UpstreamUnavailable, clean_id
from .sns_signature import CertificateCache, check_https_url, verify_signature

log = logging.getLogger("receiver.sources.sns")

SOURCE = "aws"
TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})
_ENVELOPE = ("MessageId", "TopicArn", "Subject", "Timestamp", "Type")


def envelope(doc: Any) -> dict[str, Any]:
    """The SNS message as a dict with a known Type; InvalidEvent otherwise."""
    if not isinstance(doc, dict):
        raise InvalidEvent("body must be an SNS message (a JSON object)")
    if not isinstance(doc.get("Type"), str) or doc["Type"] not in TYPES:  # a list: unhashable
        raise InvalidEvent(f"Type: one of {', '.join(sorted(TYPES))}", code="missing_field")
    return doc


class SnsSource:
    def __init__(
        self,
        *,
        recorder: Recorder,
        http: httpx.AsyncClient,
        clock: Callable[[], float],
        topics: Iterable[str],
        cert_host_pattern: str,
        max_body_bytes: int,
    ) -> None:
        self.recorder = recorder
        self.http = http
        self.clock = clock
        self.topics = frozenset(topics)
        self.host_pattern = re.compile(cert_host_pattern)
        self.certificates = CertificateCache(http, self.host_pattern)
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> JSONResponse:
        body = await read_body(request, self.max_body_bytes)
        doc = envelope(load_json(body))
        topic = doc.get("TopicArn")
        if not isinstance(topic, str) or topic not in self.topics:
            raise Forbidden(
                f"topic {topic!r} is not in RECEIVER_SNS_TOPIC_ARNS", code="unknown_topic"
            )
        now = self.clock()
        key = await self.certificates.public_key(doc.get("SigningCertURL"), now)
        verify_signature(doc, key)

        if doc["Type"] == "SubscriptionConfirmation":
            await self._confirm(doc)
            return JSONResponse({"status": "confirmed", "topic": topic})
        if doc["Type"] == "UnsubscribeConfirmation":
            log.warning("SNS unsubscribed this endpoint from %s", topic)
            return JSONResponse({"status": "unsubscribed", "topic": topic})
        return await self._notification(doc, now)

    async def _confirm(self, doc: dict[str, Any]) -> None:
        url = check_https_url(doc.get("SubscribeURL"), self.host_pattern, "SubscribeURL")
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"could not confirm the subscription: {exc}") from exc
        if not response.is_success:
            raise UpstreamUnavailable(
                f"confirming the subscription was answered {response.status_code}"
            )
        log.info("SNS subscription to %s confirmed", doc["TopicArn"])

    async def _notification(self, doc: dict[str, Any], now: float) -> JSONResponse:
        event_id = "sns:" + clean_id(doc.get("MessageId"), "MessageId")
        message, subject = doc.get("Message"), doc.get("Subject")
        if not isinstance(message, str):
            raise InvalidEvent("Message: required", code="missing_field")
        alert = parse_alert(message, subject if isinstance(subject, str) else None)
        if alert is None:
            return ignored(SOURCE, event_id, "not an AWS Budgets alert")
        payload = {k: doc[k] for k in _ENVELOPE if k in doc} | {"Message": message}
        occurred_at = rfc3339(doc.get("Timestamp")) or now
        event = budget_event(alert, event_id=event_id, occurred_at=occurred_at, payload=payload)
        if event is None:
            return ignored(SOURCE, event_id, f"a {alert.budget_type} budget, not a cost budget")
        applied = await self.recorder.record(event)
        return answer(applied, event)
