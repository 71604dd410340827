"""LiteLLM proxy budget alerts (``alerting: ["webhook"]``) -> BudgetEvent.

LiteLLM posts its ``WebhookEvent`` as JSON to ``WEBHOOK_URL``: spend, max_budget,
soft_budget, token (the hashed key), user_id, team_id, team_alias, organization_id,
key_alias, customer_id, event, event_group, event_message, projected_spend,
projected_exceeded_date. It signs nothing and sends no id, time or currency, so:
a shared token authenticates it (in ``?token=``: LiteLLM sends no custom headers),
the time is the arrival time, and money is USD (LiteLLM keeps spend in USD).
Only an answer of exactly 200 counts as delivered for LiteLLM, so accepted,
duplicate and ignored are all 200.

What each alert means, from LiteLLM's own code (``SlackAlerting.budget_alerts``,
``customer_spend_alert``, the proxy's ``/health/services``):

- ``spend`` is the entity's total, except in ``spend_tracked``, which LiteLLM sends
  for every customer request with that one request's ``response_cost``: an
  increment. LiteLLM neither retries nor names a request, so each delivery is
  its own event; every other alert's id is a hash of its body (a repeat is one).
- A projection (``projected_limit_exceeded``) carries the *soft* budget as
  ``max_budget``, and LiteLLM relabels it ``threshold_crossed`` or
  ``budget_crossed`` when spend is near or past that soft budget. It is told
  apart by ``projected_spend`` / ``projected_exceeded_date`` (no other alert
  sets them) and is a forecast: it never counts, moves the budget or halts.
- ``soft_budget_crossed`` is spend past ``soft_budget``: a warning, never a halt.
- LiteLLM's webhook test sends ``budget_crossed`` for the calling admin's key
  (``spend: 1, max_budget: 0``) built as a *user* budget alert ("User Budget:")
  with ``event_group: key``, which no real alert is: answered, logged, not applied.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..edge import answer, ignored, read_body, require_json
from ..errors import InvalidEvent
from ..events import load_json
from ..model import BudgetEvent, EventType, Forecast
from ..money import parse_money
from ..record import Recorder
from .common import clean_id, optional_text, require_shared_token

SOURCE = "litellm"
CURRENCY = "USD"
Entity = Literal["key", "user", "team", "customer"]

# event_group values that name each entity (older and newer LiteLLM spellings).
GROUPS: dict[str, frozenset[str]] = {
    "key": frozenset({"key"}),
    "user": frozenset({"user", "internal_user"}),
    "team": frozenset({"team"}),
    "customer": frozenset({"customer", "end_user"}),
}
KINDS = {
    "budget_crossed": EventType.REACHED,
    "threshold_crossed": EventType.THRESHOLD,
    "soft_budget_crossed": EventType.THRESHOLD,
    "projected_limit_exceeded": EventType.FORECAST,
    "spend_tracked": EventType.SPEND,
}
# LiteLLM 1.x wrote the date field as projected_exceeded_data; later versions fixed the name.
_PROJECTED_FIELDS = ("projected_spend", "projected_exceeded_date", "projected_exceeded_data")
_HUNDREDTH = Decimal("0.01")


def event_id_of(body: bytes, doc: Any) -> str:
    """The same alert body is the same event, except a request's spend: each one counts."""
    if isinstance(doc, dict) and doc.get("event") == "spend_tracked":
        return f"litellm:request:{uuid.uuid4().hex}"
    return "litellm:sha256:" + hashlib.sha256(body).hexdigest()


def is_webhook_test(doc: Any) -> bool:
    """LiteLLM's own test alert (/health/services?service=webhook), not a budget at all."""
    if not isinstance(doc, dict) or doc.get("event_group") != "key":
        return False
    message = doc.get("event_message")
    return (
        isinstance(message, str)
        and message.startswith("User Budget:")
        and _is_zero(doc.get("max_budget"))
    )


def parse_litellm(doc: Any, *, entity: Entity, event_id: str, now: float) -> BudgetEvent | None:
    """The event for one LiteLLM webhook body; None when it is not about ``entity`` budgets."""
    if not isinstance(doc, dict):
        raise InvalidEvent("body must be a JSON object")
    name = doc.get("event")
    if not isinstance(name, str):
        raise InvalidEvent("event: required", code="missing_field")
    group = doc.get("event_group")
    kind = KINDS.get(name)
    if kind is None or (group is not None and group not in GROUPS[entity]):
        return None
    ident, label = _entity(doc, entity)
    spent = parse_money(doc.get("spend"), "spend")
    budget = _optional_money(doc, "max_budget")
    event = BudgetEvent(
        event_id=event_id,
        source=SOURCE,
        type=kind,
        task_id=f"{SOURCE}:{entity}:{ident}",
        occurred_at=now,
        task_name=label,
        currency=CURRENCY,
        payload=doc,
    )
    if kind is EventType.FORECAST or any(doc.get(f) is not None for f in _PROJECTED_FIELDS):
        forecast = _forecast(doc, limit=budget, spent=spent)
        return replace(event, type=EventType.FORECAST, forecast=forecast)
    if name == "spend_tracked":
        return replace(event, budget=budget, amount=spent)
    threshold = soft = None
    if name == "threshold_crossed" and budget:
        threshold = min(_floor(spent / budget), Decimal(1))
    elif name == "soft_budget_crossed":
        soft = _optional_money(doc, "soft_budget")
        if soft is not None and budget:
            threshold = min(_floor(soft / budget), Decimal(1))
    if kind is EventType.THRESHOLD and threshold is None:
        kind = EventType.SPEND  # no budget to take a fraction of: the spend is still news
    return replace(
        event, type=kind, budget=budget, spent=spent, threshold=threshold, soft_budget=soft
    )


def _forecast(doc: dict[str, Any], *, limit: Decimal | None, spent: Decimal) -> Forecast:
    when = doc.get("projected_exceeded_date")
    if when is None:
        when = doc.get("projected_exceeded_data")
    return Forecast(
        # LiteLLM projects only against a key's soft budget, which it sends as max_budget.
        limit=limit,
        projected_spend=_optional_money(doc, "projected_spend"),
        exceeds_on=optional_text(when),
        spent=spent,
        soft=True,
    )


def _entity(doc: dict[str, Any], entity: Entity) -> tuple[str, str | None]:
    """(id for the task id, display name) of the entity the alert is about."""
    if entity == "key":
        alias = optional_text(doc.get("key_alias"))
        if alias is not None:
            return clean_id(alias, "key_alias"), alias
        token = clean_id(doc.get("token"), "token (or key_alias)")
        # Hashed again: whatever LiteLLM puts in `token`, no key material lands in a task id.
        return hashlib.sha256(token.encode()).hexdigest()[:16], None
    if entity == "team":
        alias = optional_text(doc.get("team_alias"))
        if alias is not None:
            return clean_id(alias, "team_alias"), alias
        return clean_id(doc.get("team_id"), "team_id (or team_alias)"), None
    if entity == "user":
        return clean_id(doc.get("user_id"), "user_id"), optional_text(doc.get("user_email"))
    return clean_id(doc.get("customer_id"), "customer_id"), None


def _optional_money(doc: dict[str, Any], field: str) -> Decimal | None:
    value = doc.get(field)
    return None if value is None else parse_money(value, field)


def _floor(fraction: Decimal) -> Decimal:
    return fraction.quantize(_HUNDREDTH, rounding=ROUND_FLOOR)


def _is_zero(value: object) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool) and value == 0


class LiteLLMSource:
    """``POST /webhooks/litellm``."""

    def __init__(
        self,
        *,
        recorder: Recorder,
        clock: Callable[[], float],
        token: SecretStr,
        entity: Entity,
        max_body_bytes: int,
    ) -> None:
        self.recorder = recorder
        self.clock = clock
        self.token = token
        self.entity = entity
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> JSONResponse:
        require_shared_token(request, self.token)
        require_json(request)
        body = await read_body(request, self.max_body_bytes)
        now = self.clock()
        doc = load_json(body)
        event_id = event_id_of(body, doc)
        if is_webhook_test(doc):
            return ignored(SOURCE, event_id, "LiteLLM's webhook test alert: answered, not applied")
        event = parse_litellm(doc, entity=self.entity, event_id=event_id, now=now)
        if event is None:
            return ignored(SOURCE, event_id, f"not a budget event about a {self.entity}")
        applied = await self.recorder.record(event)
        return answer(applied, event, accepted_status=200)
