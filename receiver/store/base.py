"""The Store interface every backend implements, and the row codecs they share."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from ..model import (
    Applied,
    BudgetEvent,
    Decide,
    Delivery,
    DeliveryStatus,
    EventRecord,
    FollowUp,
    StoreStats,
    Task,
    TaskState,
)
from ..retention import Pruned


class Store(Protocol):
    """Every call that takes a ``limit`` returns (or, to prune, looks at) at most that many
    rows; a limit of zero or less asks for none."""

    description: str

    async def open(self) -> None:
        """Connect and migrate the schema to the current version."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def ready(self, now: float) -> None:
        """Commit one tiny write the way events are written (the readiness check); raise
        StoreUnavailable unless it is durable within a few seconds."""

    async def apply(self, event: BudgetEvent, decide: Decide, now: float) -> Applied:
        """Dedupe on (source, event id), then store the event and ``decide``'s result in one
        commit. Ids are per source: no sender can take an id of another source."""

    async def get_task(self, task_id: str) -> Task | None: ...

    async def list_tasks(
        self, *, state: TaskState | None, after: str | None, limit: int
    ) -> list[Task]: ...

    async def list_events(
        self, task_id: str, *, after: int | None, limit: int
    ) -> list[EventRecord]: ...

    async def claim(
        self, *, now: float, lease_seconds: float, limit: int, owner: str
    ) -> list[Delivery]:
        """Lease up to ``limit`` due pending rows to ``owner``."""

    async def settle(
        self,
        delivery_id: int,
        *,
        owner: str,
        status: DeliveryStatus,
        now: float,
        next_at: float | None = None,
        error: str | None = None,
        follow_up: FollowUp | None = None,
    ) -> bool:
        """Record one attempt's result if ``owner`` still holds the lease; False if not."""

    async def release(self, owner: str) -> None:
        """Give back every lease ``owner`` holds (graceful shutdown)."""

    async def renew(self, owner: str, ids: Sequence[int], until: float) -> list[int]:
        """Extend ``owner``'s leases on rows ``ids`` (deliveries still under way) to ``until``;
        the ids it still held and renewed, in id order (the others are no longer its)."""

    async def next_due(self) -> float | None:
        """When the earliest pending row is due (or its lease ends), if any."""

    async def list_deliveries(
        self, *, status: DeliveryStatus | None, after: int | None, limit: int
    ) -> list[Delivery]: ...

    async def stats(self) -> StoreStats: ...

    async def recent_deliveries(self, *, status: DeliveryStatus, limit: int) -> list[Delivery]:
        """The newest ``limit`` rows with ``status``, newest first: cheap for a status most
        rows have (delivered), where paging ``list_deliveries`` from the oldest is not."""

    async def requeue(self, delivery_id: int, now: float) -> Delivery | None:
        """Make a dead row pending again, due now, with a fresh attempt count."""

    async def prune_events(self, before: float, *, after: int, limit: int) -> Pruned:
        """One batch of retention: look at up to ``limit`` events after seq ``after`` and
        delete those ``retention.event_prunable`` allows for the cutoff ``before``."""

    async def prune_deliveries(self, before: float, *, after: int, limit: int) -> Pruned:
        """One batch of retention over outbox rows after id ``after`` (settled rows of
        finished tasks only; a row still owed is never deleted)."""


def stats_from_rows(task_rows: Any, outbox_rows: Any) -> StoreStats:
    outbox = {r[0]: (int(r[1]), r[2]) for r in outbox_rows}
    pending, oldest = outbox.get("pending", (0, None))
    return StoreStats(
        tasks_by_state={r[0]: int(r[1]) for r in task_rows},
        pending=pending,
        dead=outbox.get("dead", (0, None))[0],
        oldest_due=None if oldest is None else float(oldest),
    )


# Row codecs shared by the backends -------------------------------------------------

TASK_COLUMNS = (
    "task_id, source, state, spent, created_at, updated_at, budget, currency, task_name, "
    "agent_id, thresholds_alerted, halted_at, last_after_halt_alert_at"
)
DELIVERY_COLUMNS = (
    "id, kind, channel, task_id, payload, idempotency_key, status, attempts, next_at, "
    "created_at, last_error, delivered_at"
)


def task_to_row(task: Task) -> tuple[Any, ...]:
    return (
        task.task_id,
        task.source,
        task.state.value,
        str(task.spent),
        task.created_at,
        task.updated_at,
        None if task.budget is None else str(task.budget),
        task.currency,
        task.task_name,
        task.agent_id,
        ",".join(str(t) for t in task.thresholds_alerted),
        task.halted_at,
        task.last_after_halt_alert_at,
    )


def row_to_task(row: tuple[Any, ...] | Mapping[str, Any]) -> Task:
    r = tuple(row.values()) if isinstance(row, Mapping) else tuple(row)
    return Task(
        task_id=r[0],
        source=r[1],
        state=TaskState(r[2]),
        spent=Decimal(r[3]),
        created_at=r[4],
        updated_at=r[5],
        budget=None if r[6] is None else Decimal(r[6]),
        currency=r[7],
        task_name=r[8],
        agent_id=r[9],
        thresholds_alerted=tuple(Decimal(t) for t in r[10].split(",") if t),
        halted_at=r[11],
        last_after_halt_alert_at=r[12],
    )


def row_to_delivery(row: tuple[Any, ...] | Mapping[str, Any]) -> Delivery:
    r = tuple(row.values()) if isinstance(row, Mapping) else tuple(row)
    return Delivery(
        id=r[0],
        kind=r[1],
        channel=r[2],
        task_id=r[3],
        payload=json.loads(r[4]),
        idempotency_key=r[5],
        status=DeliveryStatus(r[6]),
        attempts=r[7],
        next_at=r[8],
        created_at=r[9],
        last_error=r[10],
        delivered_at=r[11],
    )


def row_to_event(row: tuple[Any, ...] | Mapping[str, Any]) -> EventRecord:
    r = tuple(row.values()) if isinstance(row, Mapping) else tuple(row)
    return EventRecord(
        seq=r[0],
        event_id=r[1],
        source=r[2],
        type=r[3],
        task_id=r[4],
        received_at=r[5],
        occurred_at=r[6],
        payload=json.loads(r[7]),
    )


EVENT_COLUMNS = "seq, event_id, source, type, task_id, received_at, occurred_at, payload"


def dumps(doc: Any) -> str:
    """JSON for stored payloads; Decimal is written as its exact decimal string."""
    return json.dumps(doc, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_payload(event: BudgetEvent) -> str:
    doc = dict(event.payload)
    if event.actor is not None:
        doc.setdefault("actor", event.actor)
    if event.reason is not None:
        doc.setdefault("reason", event.reason)
    return dumps(doc)
