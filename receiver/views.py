"""JSON views of tasks, events and deliveries, as the API and the alerts show them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .model import Delivery, EventRecord, Task
from .money import fmt
from .state import GateReason, gate


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return (
        datetime.fromtimestamp(moment, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def task_view(task: Task) -> dict[str, Any]:
    used = task.used_fraction
    return {
        "task_id": task.task_id,
        "task_name": task.task_name,
        "agent_id": task.agent_id,
        "source": task.source,
        "state": task.state.value,
        "budget": fmt(task.budget),
        "spent": fmt(task.spent),
        "remaining": fmt(task.remaining),
        "currency": task.currency,
        "used_fraction": None if used is None else f"{used:.4f}",
        "allowed": gate(task) is GateReason.ALLOWED,
        "thresholds_alerted": [fmt(t) for t in task.thresholds_alerted],
        "halted_at": iso(task.halted_at),
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
    }


def event_view(record: EventRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "event_id": record.event_id,
        "source": record.source,
        "type": record.type,
        "received_at": iso(record.received_at),
        "occurred_at": iso(record.occurred_at),
        "payload": record.payload,
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "kind": delivery.kind,
        "channel": delivery.channel,
        "task_id": delivery.task_id,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "next_at": iso(delivery.next_at),
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at),
        "last_error": delivery.last_error,
        "payload": delivery.payload,
    }
