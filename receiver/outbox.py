"""What an event owes, as outbox rows: one per (alert, channel), one per halt. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Alert, BudgetEvent, Decide, Decision, Forecast, Halt, OutboxItem, Severity, Task
from .money import fmt
from .state import Policy, transition

HALT_CHANNEL = "halt"


@dataclass(frozen=True, slots=True)
class Route:
    """A channel id and the severities it takes."""

    channel: str
    severities: frozenset[Severity]


def rows_for(
    task: Task,
    effects: Sequence[Alert | Halt],
    event: BudgetEvent,
    routes: Sequence[Route],
    now: float,
) -> tuple[OutboxItem, ...]:
    items: list[OutboxItem] = []
    for n, effect in enumerate(effects):
        if isinstance(effect, Halt):
            items.append(
                OutboxItem(
                    kind="halt",
                    channel=HALT_CHANNEL,
                    task_id=task.task_id,
                    payload={
                        "task_id": task.task_id,
                        "reason": effect.reason,
                        "spent": fmt(task.spent),
                        "budget": fmt(task.budget),
                        "currency": task.currency,
                    },
                    idempotency_key=halt_key(task.task_id, event),
                )
            )
            continue
        payload = {
            "alert": effect.kind.value,
            "severity": effect.severity.value,
            "threshold": fmt(effect.threshold),
            "event_id": event.event_id,
            "event_type": event.type.value,
            "actor": event.actor,
            "reason": event.reason,
            "at": now,
            "task": task_facts(task),
        }
        if effect.soft_budget is not None:
            payload["soft_budget"] = fmt(effect.soft_budget)
        if effect.forecast is not None:
            payload["forecast"] = _forecast_view(effect.forecast)
        for route in routes:
            if effect.severity in route.severities:
                items.append(
                    OutboxItem(
                        kind="alert",
                        channel=route.channel,
                        task_id=task.task_id,
                        payload=payload,
                        idempotency_key=f"alert:{event.event_id}:{n}:{route.channel}",
                    )
                )
    return tuple(items)


def halt_key(task_id: str, event: BudgetEvent) -> str:
    """The Idempotency-Key of the halt ``event`` owes: the same on every retry of that halt,
    another for any other halt, and plain ASCII whatever text the ids hold (a header
    value cannot carry the rest)."""
    ids = "\0".join((task_id, event.source, event.event_id)).encode()
    return "halt-" + hashlib.sha256(ids).hexdigest()[:32]


def task_facts(task: Task) -> dict[str, Any]:
    """The task as its alert tells it, at the moment the alert was owed (alerts.render reads
    these; its own shape, not the API's task view)."""
    used = task.used_fraction
    return {
        "task_id": task.task_id,
        "task_name": task.task_name,
        "agent_id": task.agent_id,
        "source": task.source,
        "state": task.state.value,
        "budget": fmt(task.budget),
        "spent": fmt(task.spent),
        "currency": task.currency,
        "used_fraction": None if used is None else f"{used:.4f}",
    }


def _forecast_view(forecast: Forecast) -> dict[str, Any]:
    return {
        "limit": fmt(forecast.limit),
        "projected_spend": fmt(forecast.projected_spend),
        "exceeds_on": forecast.exceeds_on,
        "spent": fmt(forecast.spent),
        "soft": forecast.soft,
    }


def decider(event: BudgetEvent, policy: Policy, routes: Sequence[Route], now: float) -> Decide:
    """The pure decision the store runs inside its transaction for ``event``."""

    def decide(task: Task | None) -> Decision:
        result = transition(task, event, policy, now)
        return Decision(result.task, rows_for(result.task, result.effects, event, routes, now))

    return decide


Transitioned = Callable[[str, str], object]
"""Told each committed state change of a task: (old state or "new", new state)."""


def tracked(decide: Decide, transitioned: Transitioned) -> tuple[Decide, Callable[[], bool]]:
    """Wrap a decision so its state change can be told once it is committed: call the
    returned ``committed`` after the commit; it says whether the decision owed any row."""
    seen: list[tuple[Task | None, Decision]] = []

    def tracking(task: Task | None) -> Decision:
        decision = decide(task)
        seen[:] = [(task, decision)]  # a store may decide again after a conflict
        return decision

    def committed() -> bool:
        for before, decision in seen:
            old = "new" if before is None else before.state.value
            if old != decision.task.state.value:
                transitioned(old, decision.task.state.value)
        return any(decision.items for _, decision in seen)

    return tracking, committed
