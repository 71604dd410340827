"""Parse and normalise canonical (source ``budget``) events into BudgetEvent."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from .errors import InvalidEvent, RequestRejected
from .model import INTERNAL_TYPES, SOURCE_ONLY_TYPES, BudgetEvent, EventType
from .money import parse_currency, parse_money

ALIASES = {"task_budget_reached": EventType.REACHED}
_PRIVATE_TYPES = INTERNAL_TYPES | SOURCE_ONLY_TYPES
_PUBLIC_TYPES = {t.value: t for t in EventType if t not in _PRIVATE_TYPES} | ALIASES
_MAX_TEXT = 256
MAX_UNIX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


def load_json(body: bytes) -> Any:
    """Parse a request body; numbers with a fraction become Decimal, never float."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise RequestRejected(f"body is not valid JSON: {exc}", code="malformed_json") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def parse_event(
    doc: Any, *, event_id: str, source: str, fallback_time: float
) -> BudgetEvent | None:
    """A BudgetEvent from a Standard Webhooks envelope or a flat body; None if unknown type."""
    if not isinstance(doc, dict):
        raise InvalidEvent("body must be a JSON object")
    type_name = doc.get("type", doc.get("event"))
    if not isinstance(type_name, str):
        raise InvalidEvent("type: required (or 'event' in a flat body)", code="missing_field")
    event_type = _PUBLIC_TYPES.get(type_name)
    if event_type is None:
        return None
    data = doc.get("data", doc)
    if not isinstance(data, dict):
        raise InvalidEvent("data: must be an object")

    task_id = _text(data, "task_id")
    if task_id is None:
        raise InvalidEvent("task_id: required", code="missing_field")
    budget = _money(data, "budget")
    spent = _money(data, "spent")
    amount = _money(data, "amount")
    currency = data.get("currency")
    threshold = _threshold(data)
    _require_fields(event_type, budget, currency, spent, amount, threshold)
    return BudgetEvent(
        event_id=event_id,
        source=source,
        type=event_type,
        task_id=task_id,
        occurred_at=_timestamp(doc.get("timestamp", data.get("timestamp")), fallback_time),
        task_name=_text(data, "task_name"),
        agent_id=_text(data, "agent_id"),
        budget=budget,
        spent=spent,
        amount=amount,
        currency=None if currency is None else parse_currency(currency),
        threshold=threshold,
        payload=doc,
    )


def _require_fields(
    event_type: EventType,
    budget: Decimal | None,
    currency: object,
    spent: Decimal | None,
    amount: Decimal | None,
    threshold: Decimal | None,
) -> None:
    """What each type cannot do without."""
    if event_type is EventType.CREATED:
        if budget is None:
            raise InvalidEvent("budget: required for task.created", code="missing_field")
        if currency is None:
            raise InvalidEvent("currency: required for task.created", code="missing_field")
    if event_type is EventType.SPEND:
        if spent is None and amount is None:
            raise InvalidEvent("spent or amount: task.spend needs one", code="missing_field")
        if spent is not None and amount is not None:
            raise InvalidEvent("spent and amount: give one, not both", code="ambiguous_spend")
    if event_type is EventType.THRESHOLD and threshold is None:
        raise InvalidEvent("threshold: required for task.budget_threshold", code="missing_field")


def _text(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{field}: must be a non-empty string")
    if len(value) > _MAX_TEXT or not value.isprintable():
        raise InvalidEvent(f"{field}: at most {_MAX_TEXT} printable characters")
    return value


def _money(data: dict[str, Any], field: str) -> Decimal | None:
    value = data.get(field)
    return None if value is None else parse_money(value, field)


def _threshold(data: dict[str, Any]) -> Decimal | None:
    value = data.get("threshold")
    if value is None:
        return None
    fraction = parse_money(value, "threshold")
    if fraction > 1:
        raise InvalidEvent("threshold: a fraction of the budget, from 0 to 1")
    return fraction


def _timestamp(value: object, fallback: float) -> float:
    if value is None:
        return fallback
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        # Bounded first: float() of a 400-digit int raises OverflowError (a 500), and of
        # Decimal("1e400") gives inf.
        finite = isinstance(value, int) or value.is_finite()
        if finite and 0 <= value <= MAX_UNIX_SECONDS:
            return float(value)
        raise InvalidEvent("timestamp: unix seconds between 1970 and 9999")
    moment = rfc3339(value)
    if moment is not None:
        return moment
    raise InvalidEvent(
        "timestamp: an RFC 3339 time with a zone, from 1970 to 9999, like 2026-11-28T10:00:00Z"
    )


def rfc3339(value: object) -> float | None:
    """Unix seconds from an RFC 3339 time with a zone, from 1970 to 9999; else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A zone can push year 1 or 9999 past what the views can show again: refused.
    if moment.tzinfo is None or not 0 <= moment.timestamp() <= MAX_UNIX_SECONDS:
        return None
    return moment.timestamp()
