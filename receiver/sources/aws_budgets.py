"""AWS Budgets alerts, as published to an SNS topic, -> BudgetEvent. Pure.

AWS Budgets publishes plain text. Its documented-by-example form:

    AWS Budget Notification March 05, 2023
    AWS Account 123456789012
    ...
    Budget Name: killswitch
    Budget Type: Cost
    Budgeted Amount: $5.00
    Alert Type: ACTUAL
    Alert Threshold: > $0.75
    ACTUAL Amount: $1.70

Parsing is tolerant: the ``Name: value`` lines are read wherever they are (a JSON
object with the same names also works), with the budget name and alert type also
taken from the subject or the prose, amounts with or without ``$``, thousands
separators or a currency code, thresholds as an amount or a percentage.

ACTUAL alerts carry spend: a threshold event (the threshold as a fraction of the
budget), which halts the task when the threshold is at or over its limit.
FORECASTED alerts are stored in the task's timeline but move nothing: the
receiver acts on money spent, not money expected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from ..model import BudgetEvent, EventType
from .common import clean_id

SOURCE = "aws"
DEFAULT_CURRENCY = "USD"

_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]{0,40}?)\s*:\s*(.+?)\s*$", re.MULTILINE)
_AMOUNT = re.compile(
    r"(?P<pre>[A-Z]{3})?\s*(?P<dollar>\$)?\s*(?P<num>\d[\d,]*(?:\.\d+)?)\s*(?P<post>%|[A-Z]{3}\b)?"
)
_SUBJECT_NAME = re.compile(r"AWS Budgets:\s*(?P<name>.+?)\s+has exceeded", re.IGNORECASE)
_PROSE_NAME = re.compile(r"associated with your (?P<name>.+?) budget is", re.IGNORECASE)
_PROSE_AMOUNT = re.compile(
    r"the (?:ACTUAL|FORECASTED) \w+ associated with this budget is (?P<amount>[^\s]+)",
    re.IGNORECASE,
)
_FRACTION = Decimal("0.0001")
_ALIASES = {
    "budgetlimit": "budgetedamount",
    "notificationtype": "alerttype",
    "threshold": "alertthreshold",
}


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    budget_name: str
    alert_type: str  # ACTUAL or FORECASTED
    budget_type: str | None
    budgeted: Decimal | None
    amount: Decimal | None  # the ACTUAL (or FORECASTED) figure
    threshold: Decimal | None  # a fraction of the budget
    currency: str


def parse_alert(message: str, subject: str | None = None) -> BudgetAlert | None:
    """The alert in an AWS Budgets message; None when it is not one."""
    fields = _fields(message)
    name = (
        fields.get("budgetname") or _search(_SUBJECT_NAME, subject) or _search(_PROSE_NAME, message)
    )
    if not name:
        return None
    alert_type = (fields.get("alerttype") or "").strip().upper()
    if alert_type not in ("ACTUAL", "FORECASTED"):
        alert_type = "FORECASTED" if "FORECASTED" in message.upper() else "ACTUAL"

    currencies: list[str] = []
    budgeted = _amount(fields.get("budgetedamount"), currencies)
    raw_amount = fields.get(f"{alert_type.lower()}amount") or _search(_PROSE_AMOUNT, message)
    amount = _amount(raw_amount, currencies)
    threshold = _threshold(fields.get("alertthreshold"), budgeted, currencies)
    return BudgetAlert(
        budget_name=name,
        alert_type=alert_type,
        budget_type=fields.get("budgettype"),
        budgeted=budgeted,
        amount=amount,
        threshold=threshold,
        currency=currencies[0] if currencies else DEFAULT_CURRENCY,
    )


def budget_event(
    alert: BudgetAlert, *, event_id: str, occurred_at: float, payload: dict[str, Any]
) -> BudgetEvent | None:
    """The event for one alert; None when it says nothing about cost (usage, RI, ...)."""
    if alert.budget_type is not None and alert.budget_type.strip().lower() != "cost":
        return None
    forecast = alert.alert_type == "FORECASTED"
    if forecast:
        kind, spent, threshold = EventType.SPEND, None, None
    else:
        spent, threshold = alert.amount, alert.threshold
        if spent is None and threshold is None:
            return None
        kind = EventType.SPEND if threshold is None else EventType.THRESHOLD
    return BudgetEvent(
        event_id=event_id,
        source=SOURCE,
        type=kind,
        task_id=f"{SOURCE}:{clean_id(alert.budget_name, 'Budget Name')}",
        occurred_at=occurred_at,
        task_name=alert.budget_name,
        budget=alert.budgeted,
        spent=spent,
        currency=alert.currency,
        threshold=threshold,
        payload={
            **payload,
            "alert_type": alert.alert_type,
            "amount": None if alert.amount is None else str(alert.amount),
        },
    )


def _fields(message: str) -> dict[str, str]:
    """``Name: value`` pairs (or a JSON object's), names lower-cased without spaces."""
    pairs: dict[str, str] = {}
    doc = _json_object(message)
    items = doc.items() if doc is not None else ((m[1], m[2]) for m in _LINE.finditer(message))
    for key, value in items:
        if isinstance(value, dict | list) or value is None:
            continue
        name = re.sub(r"[^a-z]", "", str(key).lower())
        pairs.setdefault(_ALIASES.get(name, name), str(value).strip())
    return pairs


def _json_object(message: str) -> dict[str, Any] | None:
    if not message.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(message, parse_float=Decimal)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _search(pattern: re.Pattern[str], text: str | None) -> str | None:
    found = pattern.search(text or "")
    return found[1].strip() if found else None


def _amount(text: str | None, currencies: list[str]) -> Decimal | None:
    """A money amount from ``$1,234.50``, ``1234.5 USD`` or ``USD 12``; None if absent."""
    parsed = _number(text)
    if parsed is None or parsed[1] == "%":
        return None
    if parsed[1]:
        currencies.append(parsed[1])
    return parsed[0]


def _threshold(text: str | None, budget: Decimal | None, currencies: list[str]) -> Decimal | None:
    """``> 80%`` -> 0.8; ``> $40.00`` of a $50 budget -> 0.8; None if unknown."""
    parsed = _number(text)
    if parsed is None:
        return None
    value, unit = parsed
    if unit == "%":
        return value / 100
    if unit:
        currencies.append(unit)
    if not budget:
        return None
    return (value / budget).quantize(_FRACTION, rounding=ROUND_FLOOR)


def _number(text: str | None) -> tuple[Decimal, str] | None:
    """(value, unit): unit is ``%``, a currency code, ``USD`` for ``$``, or empty."""
    found = _AMOUNT.search(text or "")
    if found is None:
        return None
    try:
        value = Decimal(found["num"].replace(",", ""))
    except InvalidOperation:
        return None
    post = found["post"] or ""
    if post == "%":
        return value, "%"
    code = found["pre"] or post or ("USD" if found["dollar"] else "")
    return value, code
