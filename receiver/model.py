"""Plain data shared by every stage: tasks, events, effects. No I/O here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class TaskState(StrEnum):
    ACTIVE = "active"
    WARNING = "warning"
    HALTING = "halting"
    HALTED = "halted"
    COMPLETED = "completed"


class EventType(StrEnum):
    CREATED = "task.created"
    SPEND = "task.spend"
    THRESHOLD = "task.budget_threshold"
    REACHED = "task.budget_reached"
    COMPLETED = "task.completed"
    # Written by the receiver itself, never accepted from a webhook.
    RESUMED = "task.resumed"
    HALT_CONFIRMED = "task.halt_confirmed"
    HALT_FAILED = "task.halt_failed"
    # Made by a source from what its sender says, never accepted on /webhooks/budget.
    FORECAST = "task.forecast"


INTERNAL_TYPES = frozenset({EventType.RESUMED, EventType.HALT_CONFIRMED, EventType.HALT_FAILED})
SOURCE_ONLY_TYPES = frozenset({EventType.FORECAST})


class AlertKind(StrEnum):
    THRESHOLD = "threshold"
    HALTED = "halted"
    HALT_FAILED = "halt_failed"
    SPEND_AFTER_HALT = "spend_after_halt"
    RESUMED = "resumed"
    TEST = "test"
    SOFT_BUDGET = "soft_budget"
    FORECAST = "forecast"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Outcome(StrEnum):
    """What became of one incoming event."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Forecast:
    """A sender's projection that spend will pass ``limit``: news to warn about, never spend."""

    limit: Decimal | None = None
    projected_spend: Decimal | None = None  # by the end of the budget period
    exceeds_on: str | None = None  # the sender's own words for when, e.g. "2026-11-28"
    spent: Decimal | None = None  # spend so far by the sender's count, as it projected
    soft: bool = False  # ``limit`` is a soft budget (a line to warn at), not the budget


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """One normalised event, whatever source it came from."""

    event_id: str
    source: str
    type: EventType
    task_id: str
    occurred_at: float
    task_name: str | None = None
    agent_id: str | None = None
    budget: Decimal | None = None
    spent: Decimal | None = None
    amount: Decimal | None = None
    currency: str | None = None
    threshold: Decimal | None = None
    actor: str | None = None
    reason: str | None = None
    # A soft budget the sender says spend has crossed: a warning line, never the budget.
    soft_budget: Decimal | None = None
    forecast: Forecast | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    source: str
    state: TaskState
    spent: Decimal
    created_at: float
    updated_at: float
    budget: Decimal | None = None
    currency: str | None = None
    task_name: str | None = None
    agent_id: str | None = None
    thresholds_alerted: tuple[Decimal, ...] = ()
    halted_at: float | None = None
    last_after_halt_alert_at: float | None = None

    @property
    def used_fraction(self) -> Decimal | None:
        if self.budget is None or self.budget == 0:
            return None
        return self.spent / self.budget

    @property
    def remaining(self) -> Decimal | None:
        return None if self.budget is None else self.budget - self.spent


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert owed to every channel that takes its severity."""

    kind: AlertKind
    severity: Severity
    threshold: Decimal | None = None
    soft_budget: Decimal | None = None
    forecast: Forecast | None = None


@dataclass(frozen=True, slots=True)
class Halt:
    """A call to the platform's halt endpoint is owed."""

    reason: str


Effect = Alert | Halt


@dataclass(frozen=True, slots=True)
class Transition:
    """The pure result of applying one event to one task."""

    task: Task
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One delivery owed: an alert to one channel, or one halt call."""

    kind: str  # "alert" or "halt"
    channel: str
    task_id: str
    payload: dict[str, Any]
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What the store must write for one event, decided inside its transaction."""

    task: Task
    items: tuple[OutboxItem, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: Outcome
    task: Task | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    event_id: str
    source: str
    type: str
    task_id: str
    received_at: float
    occurred_at: float
    payload: dict[str, Any]


Decide = Callable[[Task | None], Decision]
"""Pure: the task as stored (None if new) -> what to write. Runs inside the transaction."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row as the dispatcher and the deliveries API see it."""

    id: int
    kind: str
    channel: str
    task_id: str
    payload: dict[str, Any]
    idempotency_key: str
    status: DeliveryStatus
    attempts: int
    next_at: float
    created_at: float
    last_error: str | None = None
    delivered_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What /metrics reports about the stored state."""

    tasks_by_state: dict[str, int]
    pending: int
    dead: int
    oldest_due: float | None  # next_at of the earliest pending row


@dataclass(frozen=True, slots=True)
class FollowUp:
    """An internal event applied in the same transaction as settling a delivery."""

    event: BudgetEvent
    decide: Decide
    # Called once the settle that applied it has committed (metrics).
    committed: Callable[[], object] = lambda: None
