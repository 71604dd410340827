"""PostgreSQL store: an asyncpg pool shared by the replicas of the receiver.

Every write is one transaction. Per-task updates are serialised in the database
(the task row is locked with SELECT ... FOR UPDATE before ``decide`` runs), never
in process memory, so any number of replicas may apply events for one task at
once. Outbox claims use FOR UPDATE SKIP LOCKED, so replicas never lease the same
row. Schema migrations run at open() under a transaction-scoped advisory lock,
so replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

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
from ..retention import Pruned
from .base import (
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    PRUNE_DELIVERIES_PAGE,
    PRUNE_EVENTS_PAGE,
    READY_TIMEOUT,
    READY_UPSERT,
    STATS_QUERIES,
    TASK_COLUMNS,
    PrunePlan,
    deliveries_to_prune,
    dumps,
    event_payload,
    events_to_prune,
    keyset_page,
    row_to_delivery,
    row_to_event,
    row_to_task,
    stats_from_rows,
    task_to_row,
)
from .schema import SCHEMA_VERSION, statements

if TYPE_CHECKING:
    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:  # asyncpg's classes are generic in the stubs only
    Conn = PoolConnectionProxy

# pg_advisory_xact_lock key held while migrating ("budgetrc" in ASCII).
MIGRATION_LOCK_KEY = 0x6275_6467_6574_7263
APPLICATION_NAME = "budget-receiver"
CLOSE_TIMEOUT = 10.0
PING_TIMEOUT = 5.0

# Errors that mean "the database cannot be reached or would not do it": answered 503.
# ReceiverError raised by ``decide`` is none of these and passes through unchanged.
_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
# A malformed URL is a ValueError from asyncpg's DSN parser.
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*_DB_ERRORS, ValueError)

_TASK_FIELDS = [c.strip() for c in TASK_COLUMNS.split(",")]
_INSERT_TASK = (
    f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES "
    f"({', '.join(f'${n}' for n in range(1, len(_TASK_FIELDS) + 1))}) "
    "ON CONFLICT (task_id) DO NOTHING RETURNING 1"
)
_UPDATE_TASK = (
    "UPDATE tasks SET "
    + ", ".join(f"{c} = ${n}" for n, c in enumerate(_TASK_FIELDS, start=1) if c != "task_id")
    + " WHERE task_id = $1"
)
# One round trip: take the task's advisory lock (held until commit; two task ids sharing
# a hash only ever wait for each other), then insert the event. The task is read by the
# next statement, whose snapshot is taken after the lock was granted.
_LOCK_TASK_INSERT_EVENT = (
    "WITH task_lock AS (SELECT pg_advisory_xact_lock(hashtextextended($4, 0))) "
    "INSERT INTO events (event_id, source, type, task_id, received_at, occurred_at, payload) "
    "SELECT $1, $2, $3, $4, $5, $6, $7 FROM task_lock "
    "ON CONFLICT (source, event_id) DO NOTHING RETURNING seq"
)
_READY = READY_UPSERT.format(mark="$1")
_INSERT_OUTBOX = (
    "INSERT INTO outbox (kind, channel, task_id, payload, idempotency_key, status, "
    "attempts, next_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)"
)


def _mark(n: int) -> str:
    return f"${n}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the userinfo and in the query)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    netloc = f"{userinfo}@{hostport}" if at else hostport
    query = "&".join(
        f"{k}=***" if k.lower() in ("password", "sslpassword") else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 10.0,
        command_timeout: float | None = 30.0,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(
                f"pool sizes need 0 <= min_size <= max_size and max_size >= 1, "
                f"not {min_size} and {max_size}"
            )
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.acquire_timeout = acquire_timeout
        self.command_timeout = command_timeout
        self.description = f"{redact_url(url)} (pool {max_size})"
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        query = dict(parse_qsl(urlsplit(self.url).query))
        settings = {} if "application_name" in query else {"application_name": APPLICATION_NAME}
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                server_settings=settings,
                reset=_keep_session,
            )
        except _CONNECT_ERRORS as exc:
            raise StoreUnavailable(f"cannot connect to {self.description}: {exc}") from exc
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                await _migrate(conn)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, _DB_ERRORS):
                raise StoreUnavailable(f"cannot migrate {self.description}: {exc}") from exc
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            pool.terminate()

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT)

    async def ready(self, now: float) -> None:
        # A committed write: a read-only server (a standby after failover) or a full disk
        # fails it where a SELECT would pass.
        try:
            async with asyncio.timeout(READY_TIMEOUT), self._conn() as conn:
                await conn.execute(_READY, now)
        except TimeoutError:  # no free connection in time counts too
            raise StoreUnavailable(
                f"PostgreSQL did not commit within {READY_TIMEOUT:g} s"
            ) from None

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        """A pooled connection; database and network failures become StoreUnavailable."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                yield conn
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL failed: {type(exc).__name__}: {exc}") from exc

    # -- events and tasks ------------------------------------------------------

    async def apply(self, event: BudgetEvent, decide: Decide, now: float) -> Applied:
        async with self._conn() as conn, conn.transaction():
            return await _apply(conn, event, decide, now)

    async def get_task(self, task_id: str) -> Task | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = $1", task_id
            )
        return None if row is None else row_to_task(tuple(row))

    async def list_tasks(
        self, *, state: TaskState | None, after: str | None, limit: int
    ) -> list[Task]:
        if limit <= 0:
            return []
        where = None if state is None else ("state", state.value)
        sql, args = keyset_page(TASK_COLUMNS, "tasks", "task_id", after or "", where, limit, _mark)
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *args)
        return [row_to_task(tuple(r)) for r in rows]

    async def list_events(
        self, task_id: str, *, after: int | None, limit: int
    ) -> list[EventRecord]:
        if limit <= 0:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE task_id = $1 AND seq > $2 "
                "ORDER BY seq LIMIT $3",
                task_id,
                after or 0,
                limit,
            )
        return [row_to_event(tuple(r)) for r in rows]

    # -- the outbox ------------------------------------------------------------

    async def claim(
        self, *, now: float, lease_seconds: float, limit: int, owner: str
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(
                "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE id IN ("
                "SELECT id FROM outbox WHERE status = 'pending' AND next_at <= $3 "
                "AND (lease_until IS NULL OR lease_until <= $3) "
                "ORDER BY next_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {DELIVERY_COLUMNS}",
                owner,
                now + lease_seconds,
                now,
                limit,
            )
        deliveries = [row_to_delivery(tuple(r)) for r in rows]
        deliveries.sort(key=lambda d: (d.next_at, d.id))
        return deliveries

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
        async with self._conn() as conn, conn.transaction():
            settled = await conn.fetchval(
                "UPDATE outbox SET status = $1, attempts = attempts + 1, next_at = $2, "
                "last_error = $3, delivered_at = $4, lease_owner = NULL, lease_until = NULL "
                "WHERE id = $5 AND lease_owner = $6 AND status = 'pending' RETURNING id",
                status.value,
                now if next_at is None else next_at,
                error,
                now if status is DeliveryStatus.DELIVERED else None,
                delivery_id,
                owner,
            )
            if settled is None:
                return False
            if follow_up is not None:
                await _apply(conn, follow_up.event, follow_up.decide, now)
            return True

    async def release(self, owner: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
                owner,
            )

    async def renew(self, owner: str, ids: Sequence[int], until: float) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE outbox SET lease_until = $1 "
                "WHERE id = ANY($2::bigint[]) AND lease_owner = $3 AND status = 'pending'",
                until,
                list(ids),
                owner,
            )

    async def next_due(self) -> float | None:
        async with self._conn() as conn:
            value = await conn.fetchval(
                "SELECT MIN(CASE WHEN lease_until > next_at THEN lease_until ELSE next_at END) "
                "FROM outbox WHERE status = 'pending'"
            )
        return None if value is None else float(value)

    async def stats(self) -> StoreStats:
        async with self._conn() as conn:
            tasks = await conn.fetch(STATS_QUERIES[0])
            outbox = await conn.fetch(STATS_QUERIES[1])
        return stats_from_rows(tasks, outbox)

    async def list_deliveries(
        self, *, status: DeliveryStatus | None, after: int | None, limit: int
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        where = None if status is None else ("status", status.value)
        sql, args = keyset_page(DELIVERY_COLUMNS, "outbox", "id", after or 0, where, limit, _mark)
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *args)
        return [row_to_delivery(tuple(r)) for r in rows]

    async def recent_deliveries(self, *, status: DeliveryStatus, limit: int) -> list[Delivery]:
        if limit <= 0:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE status = $1 "
                "ORDER BY id DESC LIMIT $2",
                status.value,
                limit,
            )
        return [row_to_delivery(tuple(r)) for r in rows]

    async def requeue(self, delivery_id: int, now: float) -> Delivery | None:
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_at = $1, "
                "lease_owner = NULL, lease_until = NULL WHERE id = $2 AND status = 'dead' "
                f"RETURNING {DELIVERY_COLUMNS}",
                now,
                delivery_id,
            )
            if row is None:
                row = await conn.fetchrow(
                    f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE id = $1", delivery_id
                )
        return None if row is None else row_to_delivery(tuple(row))

    # -- retention ----------------------------------------------------------------

    async def prune_events(self, before: float, *, after: int, limit: int) -> Pruned:
        return await self._prune(
            PRUNE_EVENTS_PAGE, events_to_prune,
            "DELETE FROM events WHERE seq = ANY($1::bigint[])", before, after, limit,
        )  # fmt: skip

    async def prune_deliveries(self, before: float, *, after: int, limit: int) -> Pruned:
        return await self._prune(
            PRUNE_DELIVERIES_PAGE, deliveries_to_prune,
            # The status is checked again: a row replayed meanwhile is owed, and stays.
            "DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND status IN ('delivered', 'dead')",
            before, after, limit,
        )  # fmt: skip

    async def _prune(
        self,
        page: str,
        plan: Callable[[Sequence[Any], float, int], PrunePlan],
        delete: str,
        before: float,
        after: int,
        limit: int,
    ) -> Pruned:
        if limit <= 0:
            return Pruned(0, None)
        async with self._conn() as conn, conn.transaction():
            found = await conn.fetch(page.format(mark1="$1", mark2="$2"), after, limit)
            rows = [tuple(r) for r in found]
            gone, nxt = plan(rows, before, limit)
            if not gone:
                return Pruned(0, nxt)
            # Lock the tasks whose rows would go, skipping any an event is being applied to,
            # and judge again by what is locked: a task resumed meanwhile keeps its history.
            keys = set(gone)
            task_ids = sorted({r[-1] for r in rows if r[0] in keys})
            locked = {
                r[0]: (r[1], r[2])
                for r in await conn.fetch(
                    "SELECT task_id, state, updated_at FROM tasks WHERE task_id = ANY($1::text[]) "
                    "ORDER BY task_id FOR UPDATE SKIP LOCKED",
                    task_ids,
                )
            }
            rows = [(*r[:-3], *locked.get(r[-1], (None, None)), r[-1]) for r in rows]
            gone, _ = plan(rows, before, limit)
            status = await conn.execute(delete, gone) if gone else "DELETE 0"
        return Pruned(int(status.split()[-1]), nxt)


async def _migrate(conn: Conn) -> None:
    async with conn.transaction():
        # Replicas starting together wait here; the first migrates, the rest find it done.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        value = await conn.fetchval("SELECT max(version) FROM schema_version")
        current = 0 if value is None else int(value)
        if current > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the database has schema version {current}, newer than this "
                f"release knows ({SCHEMA_VERSION}): upgrade budget-receiver"
            )
        if current == SCHEMA_VERSION:
            return
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for sql in statements(version, "postgres"):
                await conn.execute(sql)
        await conn.execute("DELETE FROM schema_version")
        await conn.execute("INSERT INTO schema_version VALUES ($1)", SCHEMA_VERSION)


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Skip asyncpg's reset query on release (advisory unlock, CLOSE ALL, UNLISTEN, RESET
    ALL: one round trip per event). The store takes only transaction-scoped locks and sets
    no session state; an open transaction is still rolled back by the pool itself."""


async def _apply(conn: Conn, event: BudgetEvent, decide: Decide, now: float) -> Applied:
    """Store one event and ``decide``'s result; the caller holds the transaction."""
    # One task's events take turns from before their seq is drawn, so a task's timeline
    # (ordered by seq) is the order its events were applied in, and a reader paging it by
    # seq never sees a later event commit before an earlier one.
    seq = await conn.fetchval(
        _LOCK_TASK_INSERT_EVENT,
        event.event_id,
        event.source,
        event.type.value,
        event.task_id,
        now,
        event.occurred_at,
        event_payload(event),
    )
    if seq is None:  # this source's event id is taken: a redelivery
        return Applied(Outcome.DUPLICATE, None)
    # Lock the task row so that replicas applying events to one task take turns. A new
    # task has no row to lock: whoever inserts it first wins, and a loser (its INSERT
    # waited for the winner's commit) reads and locks the winner's row and decides again.
    # Tasks are never deleted, so the second round always finds the row.
    for _ in range(2):
        row = await conn.fetchrow(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = $1 FOR UPDATE", event.task_id
        )
        if row is not None:
            decision = decide(row_to_task(tuple(row)))
            await conn.execute(_UPDATE_TASK, *task_to_row(decision.task))
            break
        decision = decide(None)
        if await conn.fetchval(_INSERT_TASK, *task_to_row(decision.task)) is not None:
            break
    else:
        raise StoreUnavailable(f"task {event.task_id!r} vanished while being updated")
    if decision.items:
        await conn.executemany(
            _INSERT_OUTBOX,
            [
                (i.kind, i.channel, i.task_id, dumps(i.payload), i.idempotency_key, now)
                for i in decision.items
            ],
        )
    return Applied(Outcome.ACCEPTED, decision.task)
