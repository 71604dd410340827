"""SQLite store: one writer thread with group commit, one reader thread, WAL, synchronous=FULL.

Every write is a job run by the single writer thread. Jobs queued while a commit
is being made durable are run together, each in its own savepoint, and made
durable by one COMMIT (one fsync): group commit. A job's caller is answered only
after the COMMIT that holds its data returns, so an acknowledgement always means
"on disk". A single writer also serialises per-task updates.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ReceiverError, StoreUnavailable
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

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
MAX_BATCH = 256
BUSY_TIMEOUT_MS = 5000
_READY = READY_UPSERT.format(mark="?")


def _mark(_: int) -> str:
    return "?"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        current = 0 if row is None else int(row[0])
        if current > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the database has schema version {current}, newer than this "
                f"release knows ({SCHEMA_VERSION}): upgrade budget-receiver"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for sql in statements(version, "sqlite"):
                conn.execute(sql)
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"sqlite:///{path.resolve()} (WAL, synchronous=FULL)"
        self._jobs: queue.SimpleQueue[tuple[Job, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")
        self._read_conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_conn = _connect(self.path)
            try:
                _migrate(write_conn)
            except BaseException:
                write_conn.close()  # a refused or failed migration must not leak the handle
                raise
            self._read_conn = await self._loop.run_in_executor(self._reader, _connect, self.path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._writer = threading.Thread(
            target=self._write_loop, args=(write_conn,), name="sqlite-writer", daemon=True
        )
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._read_conn is not None and self._loop is not None:
            await self._loop.run_in_executor(self._reader, self._read_conn.close)
            self._read_conn = None
        self._reader.shutdown(wait=True)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def ready(self, now: float) -> None:
        # Through the writer thread, committed like an event: a full disk fails it.
        job = self._write(lambda c: c.execute(_READY, (now,)))
        try:
            await asyncio.wait_for(job, READY_TIMEOUT)
        except TimeoutError:
            raise StoreUnavailable(
                f"the SQLite writer did not commit within {READY_TIMEOUT:g} s"
            ) from None

    # -- the writer thread -----------------------------------------------------

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._jobs.put(None)  # stop after this batch
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[tuple[Job, asyncio.Future[Any]]]
    ) -> None:
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, fut in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = job(conn)
                except Exception as exc:  # the job's own failure; the others go on
                    conn.execute("ROLLBACK TO job")
                    results.append((fut, None, exc))
                else:
                    results.append((fut, value, None))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"SQLite write failed: {exc}")
            results = [(fut, None, failure) for _, fut in batch]
        for fut, value, error in results:
            self._answer(fut, value, error)

    def _answer(self, fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
        if isinstance(error, sqlite3.Error):
            error = StoreUnavailable(f"SQLite write failed: {error}")
        elif error is not None and not isinstance(error, ReceiverError):
            error = StoreUnavailable(f"store job failed: {error!r}")

        def settle() -> None:
            if fut.done():  # the caller went away; its data is committed all the same
                return
            if error is None:
                fut.set_result(value)
            else:
                fut.set_exception(error)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None or self._loop is None:
            raise StoreUnavailable("the store is not open")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((job, fut))
        return await fut

    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        conn, loop = self._read_conn, self._loop
        if conn is None or loop is None:
            raise StoreUnavailable("the store is not open")
        try:
            return await loop.run_in_executor(self._reader, job, conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    # -- events and tasks ------------------------------------------------------

    async def apply(self, event: BudgetEvent, decide: Decide, now: float) -> Applied:
        return await self._write(lambda conn: _apply(conn, event, decide, now))

    async def get_task(self, task_id: str) -> Task | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        )
        return None if row is None else row_to_task(row)

    async def list_tasks(
        self, *, state: TaskState | None, after: str | None, limit: int
    ) -> list[Task]:
        where = None if state is None else ("state", state.value)
        sql, args = keyset_page(TASK_COLUMNS, "tasks", "task_id", after or "", where, limit, _mark)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [row_to_task(r) for r in rows]

    async def list_events(
        self, task_id: str, *, after: int | None, limit: int
    ) -> list[EventRecord]:
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        )
        rows = await self._read(lambda c: c.execute(sql, (task_id, after or 0, limit)).fetchall())
        return [row_to_event(r) for r in rows]

    # -- the outbox ------------------------------------------------------------

    async def claim(
        self, *, now: float, lease_seconds: float, limit: int, owner: str
    ) -> list[Delivery]:
        def job(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE status = 'pending' "
                "AND next_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
                "ORDER BY next_at, id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, now + lease_seconds, r[0]) for r in rows],
            )
            return [row_to_delivery(r) for r in rows]

        return await self._write(job)

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
        def job(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, next_at = ?, "
                "last_error = ?, delivered_at = ?, lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ? AND status = 'pending'",
                (
                    status.value,
                    now if next_at is None else next_at,
                    error,
                    now if status is DeliveryStatus.DELIVERED else None,
                    delivery_id,
                    owner,
                ),
            )
            if cur.rowcount != 1:
                return False
            if follow_up is not None:
                _apply(conn, follow_up.event, follow_up.decide, now)
            return True

        return await self._write(job)

    async def release(self, owner: str) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                (owner,),
            )
        )

    async def renew(self, owner: str, ids: Sequence[int], until: float) -> None:
        await self._write(
            lambda c: c.executemany(
                "UPDATE outbox SET lease_until = ? "
                "WHERE id = ? AND lease_owner = ? AND status = 'pending'",
                [(until, i, owner) for i in ids],
            )
        )

    async def next_due(self) -> float | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT MIN(CASE WHEN lease_until > next_at THEN lease_until ELSE next_at END) "
                "FROM outbox WHERE status = 'pending'"
            ).fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    async def stats(self) -> StoreStats:
        def job(conn: sqlite3.Connection) -> StoreStats:
            tasks, outbox = (conn.execute(q).fetchall() for q in STATS_QUERIES)
            return stats_from_rows(tasks, outbox)

        return await self._read(job)

    async def list_deliveries(
        self, *, status: DeliveryStatus | None, after: int | None, limit: int
    ) -> list[Delivery]:
        where = None if status is None else ("status", status.value)
        sql, args = keyset_page(DELIVERY_COLUMNS, "outbox", "id", after or 0, where, limit, _mark)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [row_to_delivery(r) for r in rows]

    async def recent_deliveries(self, *, status: DeliveryStatus, limit: int) -> list[Delivery]:
        # "+status" keeps SQLite off the (status, next_at) index: walking ids backwards stops
        # after ``limit`` rows, where the index would sort every row with that status first.
        sql = f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE +status = ? ORDER BY id DESC LIMIT ?"
        rows = await self._read(lambda c: c.execute(sql, (status.value, limit)).fetchall())
        return [row_to_delivery(r) for r in rows]

    async def requeue(self, delivery_id: int, now: float) -> Delivery | None:
        def job(conn: sqlite3.Connection) -> Delivery | None:
            conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_at = ?, "
                "lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = 'dead'",
                (now, delivery_id),
            )
            row = conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE id = ?", (delivery_id,)
            ).fetchone()
            return None if row is None else row_to_delivery(row)

        return await self._write(job)

    # -- retention ----------------------------------------------------------------

    async def prune_events(self, before: float, *, after: int, limit: int) -> Pruned:
        return await self._write(
            lambda c: _prune(
                c, PRUNE_EVENTS_PAGE, events_to_prune, "DELETE FROM events WHERE seq = ?",
                before, after, limit,
            )
        )  # fmt: skip

    async def prune_deliveries(self, before: float, *, after: int, limit: int) -> Pruned:
        return await self._write(
            lambda c: _prune(
                c, PRUNE_DELIVERIES_PAGE, deliveries_to_prune,
                "DELETE FROM outbox WHERE id = ? AND status IN ('delivered', 'dead')",
                before, after, limit,
            )
        )  # fmt: skip


def _prune(
    conn: sqlite3.Connection,
    page: str,
    plan: Callable[[Sequence[Any], float, int], PrunePlan],
    delete: str,
    before: float,
    after: int,
    limit: int,
) -> Pruned:
    if limit <= 0:
        return Pruned(0, None)
    rows = conn.execute(page.format(mark1="?", mark2="?"), (after, limit)).fetchall()
    gone, nxt = plan(rows, before, limit)
    cur = conn.executemany(delete, [(key,) for key in gone])
    return Pruned(cur.rowcount if gone else 0, nxt)


def _apply(conn: sqlite3.Connection, event: BudgetEvent, decide: Decide, now: float) -> Applied:
    try:
        conn.execute(
            "INSERT INTO events (event_id, source, type, task_id, received_at, occurred_at, "
            "payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
    except sqlite3.IntegrityError:
        return Applied(Outcome.DUPLICATE, None)
    row = conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?", (event.task_id,)
    ).fetchone()
    decision = decide(None if row is None else row_to_task(row))
    placeholders = ", ".join("?" * len(task_to_row(decision.task)))
    conn.execute(
        f"INSERT OR REPLACE INTO tasks ({TASK_COLUMNS}) VALUES ({placeholders})",
        task_to_row(decision.task),
    )
    conn.executemany(
        "INSERT INTO outbox (kind, channel, task_id, payload, idempotency_key, status, "
        "attempts, next_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
        [
            (i.kind, i.channel, i.task_id, dumps(i.payload), i.idempotency_key, now, now)
            for i in decision.items
        ],
    )
    return Applied(Outcome.ACCEPTED, decision.task)
