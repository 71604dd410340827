"""The SQL both stores run, written once and spelled per dialect, and the Store methods
built on it.

A backend supplies its ``Dialect`` (placeholders, lists, row locks) and three ways to run
SQL: ``_fetch`` (a read), ``_commit`` (one write statement) and ``_transact`` (a script
in one transaction). A script is a generator that yields each ``Query`` and is sent back
its rows, so the steps of a write (apply, settle, requeue, prune, migrate) are written
once for SQLite's writer thread and for an asyncpg connection alike.

The ``limit`` contract of every list_*, recent_deliveries, claim and prune_* call, kept
here for both: ``limit`` is the most rows the call returns (or, for prune_*, looks at);
zero or less asks for none, answered without asking the database (SQLite would read a
negative LIMIT as no limit at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias, TypeVar

from ..errors import StoreUnavailable
from ..model import (
    Applied,
    BudgetEvent,
    Decide,
    Delivery,
    DeliveryStatus,
    EventRecord,
    FollowUp,
    Outcome,
    StoreStats,
    Task,
    TaskState,
)
from ..retention import Pruned, delivery_prunable, event_prunable
from .base import (
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    TASK_COLUMNS,
    dumps,
    event_payload,
    row_to_delivery,
    row_to_event,
    row_to_task,
    stats_from_rows,
    task_to_row,
)
from .schema import SCHEMA_VERSION, DialectName, statements

T = TypeVar("T")
Row: TypeAlias = tuple[Any, ...]
READY_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells what both stores say."""

    name: DialectName
    placeholder: str  # the n-th argument: "?{n}" or "${n}"
    one_of: str  # "the column is one of the list bound to {mark}" (elements of SQL {type})
    array: Callable[[Sequence[Any]], Any]  # such a list as the driver binds it
    for_update: str  # lock the row a write's SELECT reads until commit
    skip_locked: str  # ... and pass over the rows others hold
    task_lock: str  # a one-row SELECT that makes writers of task {task} take turns
    unindexed: str  # put before a column to keep the planner off its index

    def mark(self, n: int) -> str:
        return self.placeholder.format(n=n)

    def marks(self, count: int) -> str:
        return ", ".join(self.mark(n) for n in range(1, count + 1))

    def in_list(self, n: int, sql_type: str) -> str:
        return self.one_of.format(mark=self.mark(n), type=sql_type)


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    args: Sequence[Any] = ()
    many: bool = False  # ``args`` is a list of argument tuples, the statement run for each


Script: TypeAlias = Generator[Query, list[Row], T]

_TASK_FIELDS = [c.strip() for c in TASK_COLUMNS.split(",")]


class Statements:
    """Every statement the stores run, in one dialect; arguments are bound by number."""

    def __init__(self, d: Dialect) -> None:
        m = d.mark
        self.dialect = d
        self.ready = (
            f"INSERT INTO readiness (id, checked_at) VALUES (1, {m(1)}) "
            "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at"
        )
        self.stats = (
            "SELECT state, COUNT(*) FROM tasks GROUP BY state",
            "SELECT status, COUNT(*), MIN(next_at) FROM outbox "
            "WHERE status IN ('pending', 'dead') GROUP BY status",
        )

        # apply: the task's turn is taken before the event's seq is drawn (see ``apply``).
        self.insert_event = (
            f"WITH task_lock AS ({d.task_lock.format(task=m(4))}) "
            "INSERT INTO events (event_id, source, type, task_id, received_at, occurred_at, "
            f"payload) SELECT {d.marks(7)} FROM task_lock WHERE true "
            "ON CONFLICT (source, event_id) DO NOTHING RETURNING seq"
        )
        self.task = f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = {m(1)}"
        self.task_for_update = self.task + d.for_update
        self.insert_task = (
            f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({d.marks(len(_TASK_FIELDS))}) "
            "ON CONFLICT (task_id) DO NOTHING RETURNING 1"
        )
        self.update_task = (
            "UPDATE tasks SET "
            + ", ".join(f"{c} = {m(n)}" for n, c in enumerate(_TASK_FIELDS, 1) if n > 1)
            + f" WHERE {_TASK_FIELDS[0]} = {m(1)}"
        )
        self.insert_outbox = (
            "INSERT INTO outbox (kind, channel, task_id, payload, idempotency_key, status, "
            f"attempts, next_at, created_at) VALUES ({d.marks(5)}, 'pending', 0, {m(6)}, {m(6)})"
        )

        # the outbox
        self.claim = (
            f"UPDATE outbox SET lease_owner = {m(1)}, lease_until = {m(2)} WHERE id IN ("
            f"SELECT id FROM outbox WHERE status = 'pending' AND next_at <= {m(3)} "
            f"AND (lease_until IS NULL OR lease_until <= {m(3)}) "
            f"ORDER BY next_at, id LIMIT {m(4)}{d.skip_locked}) RETURNING {DELIVERY_COLUMNS}"
        )
        self.settle = (
            f"UPDATE outbox SET status = {m(1)}, attempts = attempts + 1, next_at = {m(2)}, "
            f"last_error = {m(3)}, delivered_at = {m(4)}, lease_owner = NULL, "
            f"lease_until = NULL WHERE id = {m(5)} AND lease_owner = {m(6)} "
            "AND status = 'pending' RETURNING id"
        )
        self.release = (
            f"UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = {m(1)}"
        )
        # By id, not by the (status, next_at) index: SQLite does not know how short a list is.
        self.renew = (
            f"UPDATE outbox SET lease_until = {m(1)} WHERE id {d.in_list(2, 'bigint')} "
            f"AND lease_owner = {m(3)} AND {d.unindexed}status = 'pending' RETURNING id"
        )
        self.next_due = (
            "SELECT MIN(CASE WHEN lease_until > next_at THEN lease_until ELSE next_at END) "
            "FROM outbox WHERE status = 'pending'"
        )
        self.requeue = (
            f"UPDATE outbox SET status = 'pending', attempts = 0, next_at = {m(1)}, "
            f"lease_owner = NULL, lease_until = NULL WHERE id = {m(2)} AND status = 'dead' "
            f"RETURNING {DELIVERY_COLUMNS}"
        )
        self.delivery = f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE id = {m(1)}"
        # In SQLite, walking ids backwards stops after ``limit`` rows, where the (status,
        # next_at) index would sort every row with that status first.
        self.recent = (
            f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE {d.unindexed}status = {m(1)} "
            f"ORDER BY id DESC LIMIT {m(2)}"
        )

        # retention: one page of events, oldest first, each with its task's state and last
        # update (the two columns before the last, the task id, in both pages).
        self.events_page = (
            "SELECT e.seq, e.received_at, t.state, t.updated_at, e.task_id FROM events e "
            f"LEFT JOIN tasks t ON t.task_id = e.task_id WHERE e.seq > {m(1)} ORDER BY e.seq "
            f"LIMIT {m(2)}"
        )
        # One page of outbox rows; a settled row's last change is delivered_at, or next_at
        # (set to the moment it was given up on).
        self.deliveries_page = (
            "SELECT o.id, o.created_at, o.status, COALESCE(o.delivered_at, o.next_at), "
            "t.state, t.updated_at, o.task_id FROM outbox o LEFT JOIN tasks t "
            f"ON t.task_id = o.task_id WHERE o.id > {m(1)} ORDER BY o.id LIMIT {m(2)}"
        )
        self.lock_tasks = (
            f"SELECT task_id, state, updated_at FROM tasks WHERE task_id {d.in_list(1, 'text')} "
            f"ORDER BY task_id{d.skip_locked}"
        )
        self.delete_events = f"DELETE FROM events WHERE seq {d.in_list(1, 'bigint')} RETURNING 1"
        # The status is checked again (by id, as in renew): a row replayed meanwhile is
        # owed, and stays.
        self.delete_deliveries = (
            f"DELETE FROM outbox WHERE id {d.in_list(1, 'bigint')} "
            f"AND {d.unindexed}status IN ('delivered', 'dead') RETURNING 1"
        )

    def page(
        self, columns: str, table: str, key: str, after: object,
        where: tuple[str, object] | None, limit: int,
    ) -> Query:  # fmt: skip
        """One page of rows after ``after`` in ``key`` order, optionally where one column
        equals a value."""
        m = self.dialect.mark
        args: list[Any] = [after]
        sql = f"SELECT {columns} FROM {table} WHERE {key} > {m(1)}"
        if where is not None:
            args.append(where[1])
            sql += f" AND {where[0]} = {m(2)}"
        args.append(limit)
        return Query(sql + f" ORDER BY {key} LIMIT {m(len(args))}", args)


# Scripts: the steps of a write, run in one transaction ------------------------------


def migrate(dialect: Dialect) -> Script[None]:
    """Take the schema to SCHEMA_VERSION, in a transaction the caller has made exclusive;
    a database of a newer version is refused untouched."""
    yield Query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    ((value,),) = yield Query("SELECT max(version) FROM schema_version")
    current = 0 if value is None else int(value)
    if current > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the database has schema version {current}, newer than this "
            f"release knows ({SCHEMA_VERSION}): upgrade budget-receiver"
        )
    if current == SCHEMA_VERSION:
        return
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for sql in statements(version, dialect.name):
            yield Query(sql)
    yield Query("DELETE FROM schema_version")
    yield Query(f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION})")


def apply(sql: Statements, event: BudgetEvent, decide: Decide, now: float) -> Script[Applied]:
    """Store one event and ``decide``'s result."""
    # One task's events take turns from before their seq is drawn, so a task's timeline
    # (ordered by seq) is the order its events were applied in, and a reader paging it by
    # seq never sees a later event commit before an earlier one.
    inserted = yield Query(
        sql.insert_event,
        (
            event.event_id,
            event.source,
            event.type.value,
            event.task_id,
            now,
            event.occurred_at,
            event_payload(event),
        ),
    )
    if not inserted:  # this source's event id is taken: a redelivery
        return Applied(Outcome.DUPLICATE, None)
    # Lock the task row so that replicas applying events to one task take turns. A new
    # task has no row to lock: whoever inserts it first wins, and a loser (its INSERT
    # waited for the winner's commit) reads and locks the winner's row and decides again.
    # Tasks are never deleted, so the second round always finds the row.
    for _ in range(2):
        rows = yield Query(sql.task_for_update, (event.task_id,))
        if rows:
            decision = decide(row_to_task(rows[0]))
            yield Query(sql.update_task, task_to_row(decision.task))
            break
        decision = decide(None)
        if (yield Query(sql.insert_task, task_to_row(decision.task))):
            break
    else:
        raise StoreUnavailable(f"task {event.task_id!r} vanished while being updated")
    if decision.items:
        yield Query(
            sql.insert_outbox,
            [
                (i.kind, i.channel, i.task_id, dumps(i.payload), i.idempotency_key, now)
                for i in decision.items
            ],
            many=True,
        )
    return Applied(Outcome.ACCEPTED, decision.task)


PrunePlan = tuple[list[int], int | None]  # the keys to delete; the key to go on after
Planner = Callable[[Sequence[Row], float, int], PrunePlan]


def events_to_prune(rows: Sequence[Row], before: float, limit: int) -> PrunePlan:
    """Which events of one page of ``events_page`` rows go (a row whose task is unknown or
    was not locked has state None and stays)."""
    gone = [r[0] for r in rows if r[2] is not None and event_prunable(r[1], r[2], r[3], before)]
    return gone, _next(rows, before, limit)


def deliveries_to_prune(rows: Sequence[Row], before: float, limit: int) -> PrunePlan:
    """Which outbox rows of one page of ``deliveries_page`` rows go."""
    gone = [
        r[0] for r in rows if r[4] is not None and delivery_prunable(r[2], r[3], r[4], r[5], before)
    ]
    return gone, _next(rows, before, limit)


def _next(rows: Sequence[Row], before: float, limit: int) -> int | None:
    # Keys grow with time: past a row newer than the cutoff there is nothing old left.
    if len(rows) < limit or rows[-1][1] >= before:
        return None
    return int(rows[-1][0])


def prune(
    sql: Statements, page: str, plan: Planner, delete: str, before: float, after: int, limit: int
) -> Script[Pruned]:
    rows = yield Query(page, (after, limit))
    gone, nxt = plan(rows, before, limit)
    if not gone:
        return Pruned(0, nxt)
    # Lock the tasks whose rows would go, skipping any an event is being applied to (SQLite's
    # one writer holds them all already), and judge again by what is locked: a task resumed
    # meanwhile keeps its history.
    keys = set(gone)
    task_ids = sorted({r[-1] for r in rows if r[0] in keys})
    found = yield Query(sql.lock_tasks, (sql.dialect.array(task_ids),))
    locked = {r[0]: (r[1], r[2]) for r in found}
    rows = [(*r[:-3], *locked.get(r[-1], (None, None)), r[-1]) for r in rows]
    gone, _ = plan(rows, before, limit)
    deleted = (yield Query(delete, (sql.dialect.array(gone),))) if gone else []
    return Pruned(len(deleted), nxt)


# The Store methods both backends share -------------------------------------------------


class SQLStore:
    """Every Store method but open, close and ping, over the backend's ways to run SQL."""

    sql: ClassVar[Statements]
    writer: ClassVar[str]  # who did not commit, when ready() gives up

    async def _fetch(self, query: Query) -> list[Row]:
        """The rows of one read."""
        raise NotImplementedError

    async def _commit(self, query: Query) -> list[Row]:
        """The rows of one write statement, committed."""
        raise NotImplementedError

    async def _transact(self, script: Script[T]) -> T:
        """Run ``script`` in one transaction, committed unless it raises."""
        raise NotImplementedError

    async def ready(self, now: float) -> None:
        # A committed write, like an event's: a full disk or a read-only server (a standby
        # after failover) fails it where a SELECT would pass.
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self._commit(Query(self.sql.ready, (now,)))
        except TimeoutError:  # no free connection in time counts too
            raise StoreUnavailable(
                f"{self.writer} did not commit within {READY_TIMEOUT:g} s"
            ) from None

    # -- events and tasks ------------------------------------------------------

    async def apply(self, event: BudgetEvent, decide: Decide, now: float) -> Applied:
        return await self._transact(apply(self.sql, event, decide, now))

    async def get_task(self, task_id: str) -> Task | None:
        rows = await self._fetch(Query(self.sql.task, (task_id,)))
        return row_to_task(rows[0]) if rows else None

    async def list_tasks(
        self, *, state: TaskState | None, after: str | None, limit: int
    ) -> list[Task]:
        if limit <= 0:
            return []
        where = None if state is None else ("state", state.value)
        page = self.sql.page(TASK_COLUMNS, "tasks", "task_id", after or "", where, limit)
        return [row_to_task(r) for r in await self._fetch(page)]

    async def list_events(
        self, task_id: str, *, after: int | None, limit: int
    ) -> list[EventRecord]:
        if limit <= 0:
            return []
        page = self.sql.page(
            EVENT_COLUMNS, "events", "seq", after or 0, ("task_id", task_id), limit
        )
        return [row_to_event(r) for r in await self._fetch(page)]

    # -- the outbox ------------------------------------------------------------

    async def claim(
        self, *, now: float, lease_seconds: float, limit: int, owner: str
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        rows = await self._commit(Query(self.sql.claim, (owner, now + lease_seconds, now, limit)))
        return sorted((row_to_delivery(r) for r in rows), key=lambda d: (d.next_at, d.id))

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
        def script() -> Script[bool]:
            delivered_at = now if status is DeliveryStatus.DELIVERED else None
            args = (status.value, now if next_at is None else next_at, error, delivered_at)
            if not (yield Query(self.sql.settle, (*args, delivery_id, owner))):
                return False
            if follow_up is not None:
                yield from apply(self.sql, follow_up.event, follow_up.decide, now)
            return True

        return await self._transact(script())

    async def release(self, owner: str) -> None:
        await self._commit(Query(self.sql.release, (owner,)))

    async def renew(self, owner: str, ids: Sequence[int], until: float) -> list[int]:
        rows = await self._commit(
            Query(self.sql.renew, (until, self.sql.dialect.array(ids), owner))
        )
        return sorted(int(r[0]) for r in rows)

    async def next_due(self) -> float | None:
        ((value,),) = await self._fetch(Query(self.sql.next_due))
        return None if value is None else float(value)

    async def stats(self) -> StoreStats:
        tasks, outbox = [await self._fetch(Query(q)) for q in self.sql.stats]
        return stats_from_rows(tasks, outbox)

    async def list_deliveries(
        self, *, status: DeliveryStatus | None, after: int | None, limit: int
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        where = None if status is None else ("status", status.value)
        page = self.sql.page(DELIVERY_COLUMNS, "outbox", "id", after or 0, where, limit)
        return [row_to_delivery(r) for r in await self._fetch(page)]

    async def recent_deliveries(self, *, status: DeliveryStatus, limit: int) -> list[Delivery]:
        if limit <= 0:
            return []
        rows = await self._fetch(Query(self.sql.recent, (status.value, limit)))
        return [row_to_delivery(r) for r in rows]

    async def requeue(self, delivery_id: int, now: float) -> Delivery | None:
        def script() -> Script[list[Row]]:
            rows = yield Query(self.sql.requeue, (now, delivery_id))
            return rows or (yield Query(self.sql.delivery, (delivery_id,)))

        rows = await self._transact(script())
        return row_to_delivery(rows[0]) if rows else None

    # -- retention ----------------------------------------------------------------

    async def prune_events(self, before: float, *, after: int, limit: int) -> Pruned:
        if limit <= 0:
            return Pruned(0, None)
        sql = self.sql
        return await self._transact(
            prune(sql, sql.events_page, events_to_prune, sql.delete_events, before, after, limit)
        )

    async def prune_deliveries(self, before: float, *, after: int, limit: int) -> Pruned:
        if limit <= 0:
            return Pruned(0, None)
        sql = self.sql
        page, delete = sql.deliveries_page, sql.delete_deliveries
        return await self._transact(
            prune(sql, page, deliveries_to_prune, delete, before, after, limit)
        )
