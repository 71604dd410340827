"""Events the receiver writes itself: a person's resume, and the result of a halt call. Pure.

Their sources (``admin``, ``receiver``) are none a sender can use, and events are
deduplicated per source, so no webhook can take the id of one of these first.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from .model import BudgetEvent, EventType

ADMIN = "admin"
RECEIVER = "receiver"


def resumed(task_id: str, budget: Decimal, *, actor: str, reason: str, now: float) -> BudgetEvent:
    """A person resumes ``task_id`` with a new budget (each resume is a new event)."""
    return BudgetEvent(
        event_id=f"resume:{uuid.uuid4()}",
        source=ADMIN,
        type=EventType.RESUMED,
        task_id=task_id,
        occurred_at=now,
        budget=budget,
        actor=actor,
        reason=reason,
        payload={"type": EventType.RESUMED.value, "budget": str(budget)},
    )


def halt_result(
    kind: EventType, *, task_id: str, delivery_id: int, now: float, error: str | None = None
) -> BudgetEvent:
    """The halt call of outbox row ``delivery_id`` was confirmed (HALT_CONFIRMED) or failed
    for good (HALT_FAILED, with its last error, which the alert shows)."""
    payload: dict[str, object] = {"type": kind.value, "delivery_id": delivery_id}
    if error is not None:
        payload["error"] = error
    return BudgetEvent(
        event_id=f"{kind.value}:{delivery_id}",
        source=RECEIVER,
        type=kind,
        task_id=task_id,
        occurred_at=now,
        reason=error,
        payload=payload,
    )
