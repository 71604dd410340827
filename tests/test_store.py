"""The store contract, run against every backend (SQLite file, PostgreSQL database).

Real databases, no mocks: SQLite on a file under tmp_path, PostgreSQL on a
database created for each test (see conftest.py). Time is passed in as ``now``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from conftest import StoreTarget, postgres_server_url
from faults import file_writes_refused
from waiting import apoll

from receiver.errors import Conflict, CurrencyMismatch, InvalidEvent, StoreUnavailable
from receiver.model import (
    Applied,
    BudgetEvent,
    Delivery,
    DeliveryStatus,
    EventType,
    FollowUp,
    Outcome,
    Severity,
    TaskState,
)
from receiver.outbox import HALT_CHANNEL, Route, decider
from receiver.retention import Pruned
from receiver.state import Policy
from receiver.store import Store
from receiver.store.postgres import PostgresStore
from receiver.store.schema import SCHEMA_VERSION, statements

D = Decimal
T0 = 1_764_000_000.0
LOCAL = Policy(halt_calls_out=False)  # no halt URL: the limit halts at once
CALLS_OUT = Policy(halt_calls_out=True)  # the limit owes a halt call
OPS = Route("ops", frozenset(Severity))  # takes every alert
PAGER = Route("pager", frozenset({Severity.CRITICAL}))
ROUTES = (OPS, PAGER)


def ev(
    event_id: str,
    task_id: str = "t-1",
    type: EventType = EventType.SPEND,
    **fields: Any,
) -> BudgetEvent:
    return BudgetEvent(
        event_id=event_id,
        source="budget",
        type=type,
        task_id=task_id,
        occurred_at=T0,
        payload={"id": event_id},
        **fields,
    )


def spend(event_id: str, task_id: str = "t-1", **fields: Any) -> BudgetEvent:
    """A spend event on a USD task with a budget of 100 (fields override)."""
    return ev(event_id, task_id, **{"budget": D("100"), "currency": "USD", **fields})


async def apply(
    store: Store, event: BudgetEvent, now: float = T0, policy: Policy = LOCAL
) -> Applied:
    return await store.apply(event, decider(event, policy, ROUTES, now), now)


def internal(kind: EventType, task_id: str, event_id: str, now: float) -> FollowUp:
    """A follow-up event such as the dispatcher writes after a halt call."""
    event = BudgetEvent(
        event_id=event_id, source="receiver", type=kind, task_id=task_id, occurred_at=now
    )
    return FollowUp(event, decider(event, CALLS_OUT, ROUTES, now))


async def deliveries(store: Store, status: DeliveryStatus | None = None) -> list[Delivery]:
    return await store.list_deliveries(status=status, after=None, limit=10_000)


async def raw(target: StoreTarget, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL on the database behind the store, around the store (as an operator would)."""
    if target.backend == "sqlite":
        with closing(sqlite3.connect(target.url.removeprefix("sqlite:///"))) as conn, conn:
            return conn.execute(sql).fetchall()
    pg = await asyncpg.connect(target.url)
    try:
        return [tuple(r) for r in await pg.fetch(sql)]
    finally:
        await pg.close()


# -- opening and migrating ----------------------------------------------------------


def test_migration_at_open_is_idempotent(store_target: StoreTarget, aio: asyncio.Runner) -> None:
    """Opening a migrated database again keeps its data and its single schema version row."""

    async def body() -> None:
        first = store_target.new()
        await first.open()
        await apply(first, spend("e1", amount=D("12.5")))
        await first.close()
        second = store_target.new()
        await second.open()
        try:
            task = await second.get_task("t-1")
            assert task is not None and task.spent == D("12.5")
        finally:
            await second.close()
        assert await raw(store_target, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]

    aio.run(body())


def test_newer_schema_version_is_refused(store_target: StoreTarget, aio: asyncio.Runner) -> None:
    """A database migrated by a newer release is not touched: open() raises StoreUnavailable."""

    async def body() -> None:
        first = store_target.new()
        await first.open()
        await first.close()
        newer_version = SCHEMA_VERSION + 1
        await raw(store_target, f"UPDATE schema_version SET version = {newer_version}")  # noqa: S608
        newer = store_target.new()
        with pytest.raises(StoreUnavailable, match="newer than this release"):
            await newer.open()
        await newer.close()
        assert await raw(store_target, "SELECT version FROM schema_version") == [
            (SCHEMA_VERSION + 1,)
        ]

    aio.run(body())


def test_replicas_opening_together_all_migrate(
    store_target: StoreTarget, aio: asyncio.Runner
) -> None:
    """Several stores opening (migrating) an empty database at the same time all succeed."""

    async def body() -> None:
        replicas = [store_target.new() for _ in range(4)]
        await asyncio.gather(*(r.open() for r in replicas))
        try:
            applied = await asyncio.gather(
                *(apply(r, spend(f"e{n}", f"t-{n}", amount=D(1))) for n, r in enumerate(replicas))
            )
            assert all(a.outcome is Outcome.ACCEPTED for a in applied)
        finally:
            await asyncio.gather(*(r.close() for r in replicas))
        assert await raw(store_target, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]

    aio.run(body())


async def run_script(target: StoreTarget, script: list[str]) -> None:
    """Run statements on the database behind the store, in one transaction."""
    if target.backend == "sqlite":
        path = Path(target.url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path)) as conn, conn:
            for sql in script:
                conn.execute(sql)
        return
    pg = await asyncpg.connect(target.url)
    try:
        async with pg.transaction():
            for sql in script:
                await pg.execute(sql)
    finally:
        await pg.close()


def test_a_version_1_database_migrates_and_keeps_its_rows(
    store_target: StoreTarget, aio: asyncio.Runner
) -> None:
    """A database made by schema version 1 (events unique on the id alone) is migrated at
    open: its tasks, events (with their seq) and deliveries are all there, and from then on
    an event id is deduped per source."""
    dialect = "sqlite" if store_target.backend == "sqlite" else "postgres"
    old_rows = [
        "INSERT INTO tasks VALUES ('t-old', 'budget', 'warning', '60', 1, 2, '100', 'USD', "
        "'Old task', NULL, '0.5', NULL, NULL)",
        "INSERT INTO events (event_id, source, type, task_id, received_at, occurred_at, payload) "
        "VALUES ('e1', 'budget', 'task.created', 't-old', 1, 1, '{\"id\": \"e1\"}')",
        "INSERT INTO events (event_id, source, type, task_id, received_at, occurred_at, payload) "
        "VALUES ('gcp:77', 'budget', 'task.spend', 't-old', 2, 2, '{}')",
        "INSERT INTO outbox (kind, channel, task_id, payload, idempotency_key, status, attempts, "
        "next_at, created_at, last_error, delivered_at) VALUES ('alert', 'ops', 't-old', "
        "'{\"alert\": \"threshold\"}', 'alert:gcp:77:0:ops', 'delivered', 1, 2, 2, NULL, 3)",
    ]

    async def body() -> None:
        await run_script(
            store_target,
            [
                *statements(1, dialect),
                "CREATE TABLE schema_version (version INTEGER NOT NULL)",
                "INSERT INTO schema_version VALUES (1)",
                *old_rows,
            ],
        )
        store = store_target.new()
        await store.open()
        try:
            task = await store.get_task("t-old")
            assert task is not None
            assert (task.state, task.spent) == (TaskState.WARNING, D(60))
            events = await store.list_events("t-old", after=None, limit=10)
            assert [(e.seq, e.event_id, e.payload) for e in events] == [
                (1, "e1", {"id": "e1"}),
                (2, "gcp:77", {}),
            ]
            (row,) = await deliveries(store)
            assert (row.id, row.status, row.delivered_at) == (1, DeliveryStatus.DELIVERED, 3)
            # The old dedupe still holds within a source; another source's id is its own.
            again = await apply(store, spend("gcp:77", "t-old"))
            assert again.outcome is Outcome.DUPLICATE
            gcp = dataclasses.replace(spend("gcp:77", "t-old", amount=D(1)), source="gcp")
            assert (await apply(store, gcp)).outcome is Outcome.ACCEPTED
            events = await store.list_events("t-old", after=None, limit=10)
            assert [e.source for e in events] == ["budget", "budget", "gcp"]
            assert events[2].seq > 2  # new rows follow the old ones
            await store.ready(T0)
        finally:
            await store.close()
        assert await raw(store_target, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]

    aio.run(body())


def test_store_survives_close_and_reopen(store_target: StoreTarget, aio: asyncio.Runner) -> None:
    """Tasks, events and outbox rows written before close() are all there after reopening."""

    async def body() -> None:
        first = store_target.new()
        await first.open()
        await apply(first, spend("e1", spent=D("60.10")))
        await apply(first, spend("e2", spent=D("95.25")))
        before = (
            await first.get_task("t-1"),
            await first.list_events("t-1", after=None, limit=10),
            await deliveries(first),
        )
        await first.close()
        second = store_target.new()
        await second.open()
        try:
            after = (
                await second.get_task("t-1"),
                await second.list_events("t-1", after=None, limit=10),
                await deliveries(second),
            )
        finally:
            await second.close()
        assert after == before
        task = after[0]
        assert task is not None and str(task.spent) == "95.25"
        assert len(after[1]) == 2 and len(after[2]) == 2

    aio.run(body())


def test_closed_store_is_unavailable(store: Store, aio: asyncio.Runner) -> None:
    """A store that is not open answers StoreUnavailable, not some driver error."""
    aio.run(store.ping())
    aio.run(store.close())
    with pytest.raises(StoreUnavailable):
        aio.run(store.ping())


def test_ready_commits_a_write(
    store_target: StoreTarget, store: Store, aio: asyncio.Runner
) -> None:
    """ready() commits a real write the way events are written: it fails with
    StoreUnavailable while writes fail though reads still pass (SQLite: the process may not
    write a byte to its files, as on a full disk; PostgreSQL: the database turned read-only,
    as a standby after a failover), and passes again once writes do."""

    async def body() -> str:
        await store.ready(T0)
        assert await raw(store_target, "SELECT id, checked_at FROM readiness") == [(1, T0)]
        async with writes_failing(store_target):
            # Every try fails (the first on PostgreSQL may meet a connection ended under
            # the pool); the last says why.
            for _ in range(3):
                with pytest.raises(StoreUnavailable) as raised:
                    await store.ready(T0 + 1)
            assert await store.get_task("t-none") is None  # reads still work
            with pytest.raises(StoreUnavailable):
                await apply(store, spend("e1", amount=D(1)))  # events do not
        await until_ready(store, T0 + 2)
        assert await raw(store_target, "SELECT id, checked_at FROM readiness") == [(1, T0 + 2)]
        assert (await apply(store, spend("e1", amount=D(1)))).outcome is Outcome.ACCEPTED
        return str(raised.value)

    reason = aio.run(body())
    assert ("disk I/O error" if store_target.backend == "sqlite" else "read-only") in reason


@asynccontextmanager
async def writes_failing(target: StoreTarget) -> AsyncIterator[None]:
    """Every write to the store's database fails while inside, reads do not."""
    if target.backend == "sqlite":
        with file_writes_refused(os.getpid()):
            yield
        return
    name = urlsplit(target.url).path.lstrip("/")
    await _set_read_only(name, True)
    try:
        yield
    finally:
        await _set_read_only(name, False)


async def _set_read_only(database: str, on: bool) -> None:
    """Make every new session of ``database`` read-only (or not) and end the current ones, so
    the store's pool reconnects under the new rule."""
    admin = await asyncpg.connect(postgres_server_url())
    try:
        value = "on" if on else "off"
        await admin.execute(
            f'ALTER DATABASE "{database}" SET default_transaction_read_only = {value}'
        )
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
    finally:
        await admin.close()


async def until_ready(store: Store, now: float, attempts: int = 5) -> None:
    """ready(), allowing for pooled connections that were ended under the pool (each fails
    once when next used)."""
    for _ in range(attempts - 1):
        try:
            return await store.ready(now)
        except StoreUnavailable:
            await asyncio.sleep(0.05)
    await store.ready(now)


# -- applying events ----------------------------------------------------------------


def test_apply_stores_event_task_and_outbox_rows(store: Store, aio: asyncio.Runner) -> None:
    """One event is stored with its task and one outbox row per (alert, channel) it owes."""

    async def body() -> None:
        now = T0 + 5
        created = await apply(
            store,
            ev(
                "e0",
                type=EventType.CREATED,
                budget=D("100.00"),
                currency="USD",
                task_name="Purchase",
            ),
            now,
        )
        assert created.outcome is Outcome.ACCEPTED
        assert await deliveries(store) == []  # nothing owed on creation

        result = await apply(store, ev("e1", spent=D("80.01")), now)
        assert result.outcome is Outcome.ACCEPTED
        task = await store.get_task("t-1")
        assert task == result.task
        assert task is not None
        assert task.state is TaskState.WARNING
        assert str(task.spent) == "80.01" and str(task.budget) == "100.00"
        assert task.currency == "USD" and task.task_name == "Purchase"
        assert task.thresholds_alerted == (D("0.5"), D("0.8"))

        events = await store.list_events("t-1", after=None, limit=10)
        assert [(e.event_id, e.type, e.source) for e in events] == [
            ("e0", "task.created", "budget"),
            ("e1", "task.spend", "budget"),
        ]
        assert events[1].received_at == now and events[1].occurred_at == T0
        assert events[1].payload == {"id": "e1"}

        rows = await deliveries(store)
        # A warning goes to ops only; the pager takes critical alerts.
        assert [(r.kind, r.channel, r.status, r.attempts) for r in rows] == [
            ("alert", "ops", DeliveryStatus.PENDING, 0)
        ]
        assert rows[0].payload["alert"] == "threshold" and rows[0].payload["threshold"] == "0.8"
        assert rows[0].next_at == now and rows[0].created_at == now
        assert rows[0].idempotency_key == "alert:e1:0:ops"

        halted = await apply(store, ev("e2", type=EventType.REACHED), now, CALLS_OUT)
        assert halted.task is not None and halted.task.state is TaskState.HALTING
        rows = await deliveries(store)
        assert [(r.kind, r.channel) for r in rows[1:]] == [("halt", HALT_CHANNEL)]
        assert rows[1].payload["spent"] == "80.01"

    aio.run(body())


def test_duplicate_event_id_is_applied_once(store: Store, aio: asyncio.Runner) -> None:
    """A redelivered event id answers DUPLICATE: spend is not counted twice, no rows added."""

    async def body() -> None:
        first = await apply(store, spend("e1", amount=D("60")))
        assert first.outcome is Outcome.ACCEPTED
        rows = await deliveries(store)
        assert len(rows) == 1
        for n in range(3):  # the same id again, even with another body
            again = await apply(store, spend("e1", amount=D("30")), T0 + n)
            assert again == Applied(Outcome.DUPLICATE, None)
        task = await store.get_task("t-1")
        assert task is not None and task.spent == D("60")
        assert await deliveries(store) == rows
        assert len(await store.list_events("t-1", after=None, limit=10)) == 1

    aio.run(body())


def test_duplicates_racing_are_applied_once(store: Store, aio: asyncio.Runner) -> None:
    """The same event delivered many times at once is applied exactly once."""

    async def body() -> None:
        results = await asyncio.gather(
            *(apply(store, spend("e1", amount=D("7"))) for _ in range(20))
        )
        assert Counter(r.outcome for r in results) == {
            Outcome.ACCEPTED: 1,
            Outcome.DUPLICATE: 19,
        }
        task = await store.get_task("t-1")
        assert task is not None and task.spent == D("7")

    aio.run(body())


def test_event_ids_are_deduped_per_source(store: Store, aio: asyncio.Runner) -> None:
    """The same event id from two sources is two events; from one source, a duplicate."""

    async def body() -> None:
        first = spend("sns:abc", amount=D("10"))
        assert (await apply(store, first)).outcome is Outcome.ACCEPTED
        others = ["litellm", "aws", "gcp", "receiver", "admin"]
        for source in others:
            other = dataclasses.replace(first, source=source)
            assert (await apply(store, other)).outcome is Outcome.ACCEPTED, source
        for source in ("budget", "gcp"):
            again = dataclasses.replace(first, source=source)
            assert await apply(store, again) == Applied(Outcome.DUPLICATE, None)
        task = await store.get_task("t-1")
        assert task is not None and task.spent == D("60")
        events = await store.list_events("t-1", after=None, limit=10)
        assert {e.event_id for e in events} == {"sns:abc"}
        assert [e.source for e in events] == ["budget", *others]

    aio.run(body())


def test_a_sender_cannot_take_a_follow_up_id(store: Store, aio: asyncio.Runner) -> None:
    """A sender's event with the id of the receiver's own halt confirmation, stored first,
    does not make the real confirmation a duplicate: the task is halted and alerted."""

    async def body() -> None:
        await apply(store, spend("e1", spent=D("100")), T0, CALLS_OUT)
        (halt,) = await store.claim(now=T0 + 1, lease_seconds=30, limit=10, owner="a")
        follow_up_id = f"task.halt_confirmed:{halt.id}"
        taken = await apply(store, spend(follow_up_id, spent=D("100")), T0 + 1, CALLS_OUT)
        assert taken.outcome is Outcome.ACCEPTED
        assert await store.settle(
            halt.id,
            owner="a",
            status=DeliveryStatus.DELIVERED,
            now=T0 + 2,
            follow_up=internal(EventType.HALT_CONFIRMED, "t-1", follow_up_id, T0 + 2),
        )
        task = await store.get_task("t-1")
        assert task is not None and task.state is TaskState.HALTED
        alerts = [d.payload["alert"] for d in await deliveries(store) if d.kind == "alert"]
        assert alerts == ["halted", "halted"]  # ops and pager

    aio.run(body())


def test_decide_raising_changes_nothing(store: Store, aio: asyncio.Runner) -> None:
    """When decide raises (bad event), the error propagates as is and nothing is written."""

    async def body() -> None:
        await apply(store, spend("e1", amount=D("10")))
        task_before = await store.get_task("t-1")
        rows_before = await deliveries(store)

        with pytest.raises(CurrencyMismatch):
            await apply(store, spend("e2", amount=D("90"), currency="EUR"))
        assert await store.get_task("t-1") == task_before
        assert await deliveries(store) == rows_before
        assert [e.event_id for e in await store.list_events("t-1", after=None, limit=10)] == ["e1"]

        def refuse(_task: object) -> Any:
            raise InvalidEvent("not today", code="nope")

        with pytest.raises(InvalidEvent, match="not today") as raised:
            await store.apply(spend("e3", task_id="t-new"), refuse, T0)
        assert raised.value.code == "nope"
        assert await store.get_task("t-new") is None
        assert await store.list_events("t-new", after=None, limit=10) == []

        # A person's resume of a task that does not exist: Conflict, and no task appears.
        resume = ev("e4", "t-ghost", EventType.RESUMED, budget=D("5"), actor="ann")
        with pytest.raises(Conflict):
            await apply(store, resume)
        assert await store.get_task("t-ghost") is None

        # The refused event ids were not used up: a valid event with the id is accepted.
        ok = await apply(store, spend("e2", amount=D("1")))
        assert ok.outcome is Outcome.ACCEPTED
        assert ok.task is not None and ok.task.spent == D("11")

    aio.run(body())


def test_concurrent_increments_sum_exactly(store_target: StoreTarget, aio: asyncio.Runner) -> None:
    """Many increments to the same new tasks, from many coroutines on two store instances
    (two replicas), sum exactly, and each alert is owed exactly once."""
    tasks, per_task = 3, 120

    async def body() -> None:
        replicas = [store_target.new(), store_target.new()]
        for r in replicas:
            await r.open()
        try:
            # Every event carries the budget: whichever comes first creates the task.
            jobs = [
                apply(
                    replicas[(n + t) % 2],
                    ev(f"e-{t}-{n}", f"t-{t}", amount=D("0.01"), budget=D("1.00"), currency="USD"),
                    T0 + 1,
                )
                for n in range(per_task)
                for t in range(tasks)
            ]
            results = await asyncio.gather(*jobs)
            assert all(r.outcome is Outcome.ACCEPTED for r in results)
            store = replicas[0]
            for t in range(tasks):
                task = await store.get_task(f"t-{t}")
                assert task is not None
                assert task.spent == D("1.20") and str(task.spent) == "1.20"
                assert task.state is TaskState.HALTED
                events = await store.list_events(f"t-{t}", after=None, limit=1000)
                assert len(events) == per_task
            owed = Counter(
                (d.task_id, d.channel, d.payload["alert"]) for d in await deliveries(store)
            )
            expected: Counter[tuple[str, str, str]] = Counter()
            for t in range(tasks):
                # Three thresholds and one halt; past the limit, one spend_after_halt.
                for alert in ("threshold", "threshold", "threshold", "halted", "spend_after_halt"):
                    expected[(f"t-{t}", "ops", alert)] += 1
                for alert in ("halted", "spend_after_halt"):
                    expected[(f"t-{t}", "pager", alert)] += 1
            assert owed == expected
        finally:
            for r in replicas:
                await r.close()

    aio.run(body())


# -- reading ------------------------------------------------------------------------


def test_list_tasks_filters_by_state_and_pages(store: Store, aio: asyncio.Runner) -> None:
    """list_tasks orders by task id, filters by state, and pages with ``after``."""

    async def body() -> None:
        states = {}
        for n in range(1, 10):
            task_id = f"t{n:02d}"
            if n % 3 == 0:
                await apply(store, spend(f"e{n}", task_id, spent=D("60")))
                states[task_id] = TaskState.WARNING
            else:
                await apply(store, spend(f"e{n}", task_id, spent=D("1")))
                states[task_id] = TaskState.ACTIVE
        await apply(store, ev("done", "t04", EventType.COMPLETED))
        states["t04"] = TaskState.COMPLETED

        async def pages(state: TaskState | None, limit: int) -> list[list[str]]:
            out: list[list[str]] = []
            after: str | None = None
            while True:
                page = await store.list_tasks(state=state, after=after, limit=limit)
                if not page:
                    return out
                assert len(page) <= limit
                out.append([t.task_id for t in page])
                after = page[-1].task_id

        assert await pages(None, 4) == [
            ["t01", "t02", "t03", "t04"],
            ["t05", "t06", "t07", "t08"],
            ["t09"],
        ]
        assert await pages(TaskState.WARNING, 2) == [["t03", "t06"], ["t09"]]
        assert await pages(TaskState.ACTIVE, 10) == [["t01", "t02", "t05", "t07", "t08"]]
        assert await pages(TaskState.COMPLETED, 10) == [["t04"]]
        assert await pages(TaskState.HALTED, 10) == []
        listed = await store.list_tasks(state=None, after="t08", limit=10)
        assert [(t.task_id, t.state) for t in listed] == [("t09", states["t09"])]
        assert await store.list_tasks(state=None, after=None, limit=0) == []

    aio.run(body())


def test_list_events_orders_and_pages(store: Store, aio: asyncio.Runner) -> None:
    """list_events gives one task's events in arrival order and pages with ``after`` (seq)."""

    async def body() -> None:
        for n in range(5):
            await apply(store, spend(f"a{n}", "t-a", amount=D(1)), T0 + n)
            await apply(store, spend(f"b{n}", "t-b", amount=D(1)), T0 + n)
        everything = await store.list_events("t-a", after=None, limit=100)
        assert [e.event_id for e in everything] == ["a0", "a1", "a2", "a3", "a4"]
        assert [e.received_at for e in everything] == [T0 + n for n in range(5)]
        seqs = [e.seq for e in everything]
        assert seqs == sorted(set(seqs))

        first = await store.list_events("t-a", after=None, limit=2)
        second = await store.list_events("t-a", after=first[-1].seq, limit=2)
        third = await store.list_events("t-a", after=second[-1].seq, limit=2)
        assert [[e.event_id for e in p] for p in (first, second, third)] == [
            ["a0", "a1"],
            ["a2", "a3"],
            ["a4"],
        ]
        assert await store.list_events("t-a", after=third[-1].seq, limit=2) == []
        assert await store.list_events("t-none", after=None, limit=2) == []

    aio.run(body())


# -- the outbox ---------------------------------------------------------------------


async def owe_rows(store: Store, count: int, now: float = T0) -> list[Delivery]:
    """``count`` tasks each crossing a threshold: one pending ops row each."""
    for n in range(count):
        await apply(store, spend(f"owe-{n}", f"owe-{n:03d}", spent=D("55")), now)
    return await deliveries(store, DeliveryStatus.PENDING)


def test_claim_leases_rows_until_the_lease_expires(store: Store, aio: asyncio.Runner) -> None:
    """A claimed row is not claimed again, by anyone, until its lease ends at ``now``."""

    async def body() -> None:
        rows = await owe_rows(store, 3)
        assert await store.claim(now=T0 - 1, lease_seconds=30, limit=10, owner="a") == []

        got = await store.claim(now=T0 + 1, lease_seconds=30, limit=2, owner="a")
        assert [d.id for d in got] == [r.id for r in rows[:2]]  # oldest first, up to limit
        rest = await store.claim(now=T0 + 2, lease_seconds=30, limit=10, owner="b")
        assert [d.id for d in rest] == [rows[2].id]
        assert await store.claim(now=T0 + 30, lease_seconds=30, limit=10, owner="b") == []
        # a's lease ran out at T0 + 31: now b may have a's rows.
        again = await store.claim(now=T0 + 31, lease_seconds=30, limit=10, owner="b")
        assert [d.id for d in again] == [r.id for r in rows[:2]]
        assert all(d.status is DeliveryStatus.PENDING and d.attempts == 0 for d in again)
        # a's lease is gone: settling with it is refused.
        assert not await store.settle(
            rows[0].id, owner="a", status=DeliveryStatus.DELIVERED, now=T0 + 32
        )

    aio.run(body())


def test_concurrent_claims_never_share_a_row(
    store_target: StoreTarget, aio: asyncio.Runner
) -> None:
    """Two store instances (replicas) claiming at once never lease the same row."""

    async def body() -> None:
        replicas = [store_target.new(), store_target.new()]
        for r in replicas:
            await r.open()
        try:
            rows = await owe_rows(replicas[0], 40)
            assert len(rows) == 40
            claims = await asyncio.gather(
                *(
                    replicas[n % 2].claim(now=T0 + 1, lease_seconds=60, limit=3, owner=f"w{n}")
                    for n in range(30)
                )
            )
            ids = [d.id for claim in claims for d in claim]
            assert len(ids) == len(set(ids)) == 40
            assert sorted(ids) == sorted(r.id for r in rows)
            # Each row is settled by the owner that leased it, exactly once.
            settled = await asyncio.gather(
                *(
                    replicas[n % 2].settle(
                        d.id, owner=f"w{n}", status=DeliveryStatus.DELIVERED, now=T0 + 2
                    )
                    for n, claim in enumerate(claims)
                    for d in claim
                )
            )
            assert all(settled)
            assert len(await deliveries(replicas[1], DeliveryStatus.DELIVERED)) == 40
        finally:
            for r in replicas:
                await r.close()

    aio.run(body())


def test_settle_by_non_owner_is_refused(store: Store, aio: asyncio.Runner) -> None:
    """Only the lease holder may record a result; anyone else gets False and changes nothing."""

    async def body() -> None:
        (row,) = await owe_rows(store, 1)
        await store.claim(now=T0 + 1, lease_seconds=30, limit=10, owner="a")
        assert not await store.settle(
            row.id, owner="b", status=DeliveryStatus.DELIVERED, now=T0 + 2
        )
        assert not await store.settle(row.id, owner="b", status=DeliveryStatus.DEAD, now=T0 + 2)
        assert await deliveries(store) == [row]  # still pending, attempts 0
        assert await store.claim(now=T0 + 2, lease_seconds=30, limit=10, owner="c") == []

        assert await store.settle(row.id, owner="a", status=DeliveryStatus.DELIVERED, now=T0 + 3)
        (done,) = await deliveries(store)
        assert done.status is DeliveryStatus.DELIVERED
        assert done.attempts == 1 and done.delivered_at == T0 + 3
        # Settled once: the owner cannot settle it again.
        assert not await store.settle(row.id, owner="a", status=DeliveryStatus.DEAD, now=T0 + 4)
        assert await store.claim(now=T0 + 100, lease_seconds=30, limit=10, owner="a") == []

    aio.run(body())


def test_settle_retry_keeps_row_pending(store: Store, aio: asyncio.Runner) -> None:
    """A retry leaves the row pending, due at ``next_at``, with one more attempt and the error."""

    async def body() -> None:
        (row,) = await owe_rows(store, 1)
        await store.claim(now=T0 + 1, lease_seconds=30, limit=10, owner="a")
        assert await store.settle(
            row.id,
            owner="a",
            status=DeliveryStatus.PENDING,
            now=T0 + 2,
            next_at=T0 + 60,
            error="HTTP 503",
        )
        (retry,) = await deliveries(store)
        assert retry.status is DeliveryStatus.PENDING
        assert retry.attempts == 1 and retry.next_at == T0 + 60
        assert retry.last_error == "HTTP 503" and retry.delivered_at is None
        # The lease was given back; the row is due at next_at, for anyone.
        assert await store.claim(now=T0 + 59, lease_seconds=30, limit=10, owner="b") == []
        (again,) = await store.claim(now=T0 + 60, lease_seconds=30, limit=10, owner="b")
        assert again.id == row.id and again.attempts == 1

    aio.run(body())


def test_settle_with_follow_up_applies_it(store: Store, aio: asyncio.Runner) -> None:
    """Settling a halt call applies its follow-up event in the same commit: dead -> the
    halt_failed alert is owed; delivered -> the task is halted."""

    async def body() -> None:
        await apply(store, spend("e1", "t-1", spent=D("100")), T0, CALLS_OUT)
        await apply(store, spend("e2", "t-2", spent=D("100")), T0, CALLS_OUT)
        halts = await store.claim(now=T0 + 1, lease_seconds=30, limit=10, owner="a")
        assert [(d.kind, d.task_id) for d in halts] == [("halt", "t-1"), ("halt", "t-2")]
        failed, confirmed = halts

        assert await store.settle(
            failed.id,
            owner="a",
            status=DeliveryStatus.DEAD,
            now=T0 + 2,
            error="HTTP 500",
            follow_up=internal(EventType.HALT_FAILED, "t-1", "f1", T0 + 2),
        )
        task = await store.get_task("t-1")
        assert task is not None and task.state is TaskState.HALTING
        owed = [d for d in await deliveries(store) if d.task_id == "t-1"]
        assert [(d.kind, d.channel, d.status) for d in owed] == [
            ("halt", HALT_CHANNEL, DeliveryStatus.DEAD),
            ("alert", "ops", DeliveryStatus.PENDING),
            ("alert", "pager", DeliveryStatus.PENDING),
        ]
        assert owed[0].last_error == "HTTP 500" and owed[0].attempts == 1
        assert {d.payload["alert"] for d in owed[1:]} == {"halt_failed"}
        timeline = await store.list_events("t-1", after=None, limit=10)
        assert [(e.event_id, e.source) for e in timeline][-1] == ("f1", "receiver")

        assert await store.settle(
            confirmed.id,
            owner="a",
            status=DeliveryStatus.DELIVERED,
            now=T0 + 3,
            follow_up=internal(EventType.HALT_CONFIRMED, "t-2", "c2", T0 + 3),
        )
        task = await store.get_task("t-2")
        assert task is not None and task.state is TaskState.HALTED and task.halted_at == T0 + 3

    aio.run(body())


def test_settle_rolls_back_when_follow_up_fails(store: Store, aio: asyncio.Runner) -> None:
    """A follow-up whose decision raises undoes the settle too: the row stays leased, pending."""

    async def body() -> None:
        (row,) = await owe_rows(store, 1)
        await store.claim(now=T0 + 1, lease_seconds=30, limit=10, owner="a")
        with pytest.raises(Conflict):
            await store.settle(
                row.id,
                owner="a",
                status=DeliveryStatus.DELIVERED,
                now=T0 + 2,
                follow_up=internal(EventType.HALT_CONFIRMED, "t-missing", "c1", T0 + 2),
            )
        assert await deliveries(store) == [row]
        assert await store.get_task("t-missing") is None
        assert await store.settle(row.id, owner="a", status=DeliveryStatus.DELIVERED, now=T0 + 3)

    aio.run(body())


def test_requeue_dead_row(store: Store, aio: asyncio.Runner) -> None:
    """requeue makes a dead row pending again, due now, with a fresh attempt count."""

    async def body() -> None:
        dead, live = await owe_rows(store, 2)
        await store.claim(now=T0 + 1, lease_seconds=30, limit=10, owner="a")
        for _ in range(2):  # two attempts, the second gives up
            assert await store.settle(
                dead.id,
                owner="a",
                status=DeliveryStatus.PENDING,
                now=T0 + 2,
                next_at=T0 + 2,
                error="timeout",
            )
            await store.claim(now=T0 + 3, lease_seconds=30, limit=1, owner="a")
        assert await store.settle(
            dead.id, owner="a", status=DeliveryStatus.DEAD, now=T0 + 4, error="gave up"
        )
        (listed,) = await deliveries(store, DeliveryStatus.DEAD)
        assert listed.attempts == 3

        requeued = await store.requeue(dead.id, T0 + 100)
        assert requeued is not None
        assert requeued.status is DeliveryStatus.PENDING
        assert requeued.attempts == 0 and requeued.next_at == T0 + 100
        assert await deliveries(store, DeliveryStatus.DEAD) == []
        claimed = await store.claim(now=T0 + 100, lease_seconds=30, limit=10, owner="b")
        assert dead.id in [d.id for d in claimed]

        # A row that is not dead is left as it is; an unknown id is None.
        (untouched,) = [d for d in await deliveries(store) if d.id == live.id]
        assert await store.requeue(live.id, T0 + 200) == untouched
        assert await store.requeue(10_000, T0 + 200) is None

    aio.run(body())


def test_recent_deliveries_are_newest_first(store: Store, aio: asyncio.Runner) -> None:
    """recent_deliveries: the newest rows of one status, newest first, up to the limit."""

    async def body() -> None:
        rows = await owe_rows(store, 5)
        await store.claim(now=T0 + 1, lease_seconds=30, limit=10, owner="a")
        for row in rows[:4]:
            status = DeliveryStatus.DEAD if row is rows[1] else DeliveryStatus.DELIVERED
            assert await store.settle(row.id, owner="a", status=status, now=T0 + 2)
        delivered = [rows[3].id, rows[2].id, rows[0].id]
        recent = await store.recent_deliveries(status=DeliveryStatus.DELIVERED, limit=10)
        assert [d.id for d in recent] == delivered
        assert all(d.status is DeliveryStatus.DELIVERED for d in recent)
        two = await store.recent_deliveries(status=DeliveryStatus.DELIVERED, limit=2)
        assert [d.id for d in two] == delivered[:2]
        dead = await store.recent_deliveries(status=DeliveryStatus.DEAD, limit=10)
        assert [d.id for d in dead] == [rows[1].id]
        pending = await store.recent_deliveries(status=DeliveryStatus.PENDING, limit=10)
        assert [d.id for d in pending] == [rows[4].id]

    aio.run(body())


def test_release_gives_back_an_owners_leases(store: Store, aio: asyncio.Runner) -> None:
    """release(owner) ends that owner's leases at once (graceful shutdown), nobody else's."""

    async def body() -> None:
        rows = await owe_rows(store, 3)
        mine = await store.claim(now=T0 + 1, lease_seconds=300, limit=2, owner="a")
        theirs = await store.claim(now=T0 + 1, lease_seconds=300, limit=2, owner="b")
        assert len(mine) == 2 and len(theirs) == 1
        await store.release("nobody")
        assert await store.claim(now=T0 + 2, lease_seconds=30, limit=10, owner="c") == []
        await store.release("a")
        taken = await store.claim(now=T0 + 2, lease_seconds=30, limit=10, owner="c")
        assert sorted(d.id for d in taken) == sorted(d.id for d in mine)
        assert await store.settle(
            theirs[0].id, owner="b", status=DeliveryStatus.DELIVERED, now=T0 + 3
        )
        assert len(rows) == 3

    aio.run(body())


def test_renew_extends_only_the_owners_named_leases(store: Store, aio: asyncio.Runner) -> None:
    """renew(owner, ids, until) keeps those rows from other claimants past the first lease
    and says which it renewed; rows not named, or not the owner's, keep their lease."""

    async def body() -> None:
        await owe_rows(store, 3)
        mine = await store.claim(now=T0 + 1, lease_seconds=10, limit=2, owner="a")
        theirs = await store.claim(now=T0 + 1, lease_seconds=10, limit=1, owner="b")
        renewed = await store.renew("a", [mine[0].id, theirs[0].id], T0 + 100)
        assert renewed == [mine[0].id]  # b's row is not a's to renew
        # At T0 + 20 every first lease has run out; only a's renewed row is still held.
        taken = await store.claim(now=T0 + 20, lease_seconds=10, limit=10, owner="c")
        assert sorted(d.id for d in taken) == sorted([mine[1].id, theirs[0].id])
        assert await store.settle(
            mine[0].id, owner="a", status=DeliveryStatus.DELIVERED, now=T0 + 21
        )

    aio.run(body())


def test_next_due(store: Store, aio: asyncio.Runner) -> None:
    """next_due is when the earliest pending row is due, or its lease ends; None if none."""

    async def body() -> None:
        assert await store.next_due() is None
        first, second = await owe_rows(store, 2, now=T0 + 10)
        assert await store.next_due() == T0 + 10
        await store.claim(now=T0 + 10, lease_seconds=30, limit=1, owner="a")  # first
        assert await store.next_due() == T0 + 10  # second is still due
        await store.claim(now=T0 + 10, lease_seconds=50, limit=1, owner="a")  # second
        assert await store.next_due() == T0 + 40  # first's lease ends
        assert await store.settle(
            first.id, owner="a", status=DeliveryStatus.PENDING, now=T0 + 11, next_at=T0 + 100
        )
        assert await store.next_due() == T0 + 60  # second's lease ends before first is due
        assert await store.settle(second.id, owner="a", status=DeliveryStatus.DEAD, now=T0 + 12)
        assert await store.next_due() == T0 + 100
        (again,) = await store.claim(now=T0 + 100, lease_seconds=5, limit=10, owner="a")
        assert await store.settle(
            again.id, owner="a", status=DeliveryStatus.DELIVERED, now=T0 + 101
        )
        assert await store.next_due() is None

    aio.run(body())


# -- retention ----------------------------------------------------------------------


async def retention_scene(store: Store) -> None:
    """Five tasks, each a case for retention, all quiet since T0 + 4 but one (t-late)."""
    for n, spent in enumerate(("60", "85", "95")):  # three threshold alerts
        await apply(store, spend(f"d{n}", "t-done", spent=D(spent)), T0 + n)
    await apply(store, ev("d-end", "t-done", EventType.COMPLETED), T0 + 3)
    await apply(store, spend("h1", "t-halted", spent=D("100")), T0)  # halted at once
    await apply(store, spend("a1", "t-active", spent=D("10")), T0)
    await apply(store, spend("g1", "t-halting", spent=D("100")), T0, CALLS_OUT)
    await apply(store, spend("l1", "t-late", spent=D("60")), T0)
    rows = await store.claim(now=T0 + 3, lease_seconds=600, limit=100, owner="a")
    done = [r for r in rows if r.task_id == "t-done"]
    outcome = {done[0].id: DeliveryStatus.DELIVERED, done[1].id: DeliveryStatus.DEAD}
    for row in rows:
        if row.task_id == "t-done" and row.id not in outcome:
            continue  # still owed: pending
        status = DeliveryStatus.DEAD if row.kind == "halt" else DeliveryStatus.DELIVERED
        status = outcome.get(row.id, status)
        assert await store.settle(row.id, owner="a", status=status, now=T0 + 4)
    await apply(store, ev("l-end", "t-late", EventType.COMPLETED), T0 + 100)


def test_a_limit_of_zero_or_less_asks_for_nothing(store: Store, aio: asyncio.Runner) -> None:
    """Every call that takes a ``limit`` answers nothing for a limit of zero or less (not
    every row: SQLite reads a negative LIMIT as none), though rows are there to answer."""

    async def body() -> None:
        await retention_scene(store)
        await apply(store, spend("p1", "t-pending", spent=D("60")), T0 + 200)
        before = await deliveries(store)
        for limit in (0, -1):
            assert await store.list_tasks(state=None, after=None, limit=limit) == []
            assert await store.list_events("t-done", after=None, limit=limit) == []
            assert await store.list_deliveries(status=None, after=None, limit=limit) == []
            delivered = DeliveryStatus.DELIVERED
            assert await store.recent_deliveries(status=delivered, limit=limit) == []
            now = T0 + 1000
            assert await store.claim(now=now, lease_seconds=30, limit=limit, owner="z") == []
            for prune in (store.prune_events, store.prune_deliveries):
                assert await prune(T0 + 50, after=0, limit=limit) == Pruned(0, None)
        assert await deliveries(store) == before  # nothing leased, nothing deleted
        assert len(await store.list_tasks(state=None, after=None, limit=1)) == 1
        assert await drain(store.prune_events, T0 + 50, 100) == (5, 1)  # all still there

    aio.run(body())


async def drain(prune: Any, before: float, limit: int) -> tuple[int, int]:
    """Run batches of ``prune`` until it is done: (rows deleted, batches)."""
    deleted, batches, after = 0, 0, 0
    while True:
        batch = await prune(before, after=after, limit=limit)
        assert 0 <= batch.deleted <= limit
        deleted, batches = deleted + batch.deleted, batches + 1
        if batch.next is None:
            return deleted, batches
        assert batch.next > after
        after = batch.next


def test_prune_removes_only_finished_tasks_history(store: Store, aio: asyncio.Runner) -> None:
    """Pruning with a cutoff removes the events and the settled deliveries of tasks completed,
    or halted, and untouched since before the cutoff, in batches of at most ``limit``; task
    rows stay; nothing of an active or halting task, and no delivery still owed, is touched."""

    async def body() -> None:
        await retention_scene(store)
        tasks_before = {
            t.task_id: t for t in await store.list_tasks(state=None, after=None, limit=10)
        }
        before = T0 + 50
        assert await drain(store.prune_events, before, 2) == (5, 5)  # t-done's 4, t-halted's 1
        assert await drain(store.prune_deliveries, before, 2) == (4, 4)
        remaining = {
            t: [e.event_id for e in await store.list_events(t, after=None, limit=10)]
            for t in tasks_before
        }
        assert remaining == {
            "t-active": ["a1"], "t-done": [], "t-halted": [], "t-halting": ["g1"],
            "t-late": ["l1", "l-end"],
        }  # fmt: skip
        kept = [(d.task_id, d.kind, d.status) for d in await deliveries(store)]
        assert sorted(kept) == [
            ("t-done", "alert", DeliveryStatus.PENDING),  # owed: never pruned
            ("t-halting", "halt", DeliveryStatus.DEAD),  # its task is still halting
            ("t-late", "alert", DeliveryStatus.DELIVERED),  # its task ended after the cutoff
        ]
        tasks_after = {
            t.task_id: t for t in await store.list_tasks(state=None, after=None, limit=10)
        }
        assert tasks_after == tasks_before
        # A second run finds nothing; a cutoff before every row stops at the first page.
        assert await drain(store.prune_events, before, 2) == (0, 2)
        assert await drain(store.prune_deliveries, T0 - 1, 2) == (0, 1)
        # Later, t-late is old enough too.
        assert await drain(store.prune_events, T0 + 200, 100) == (2, 1)
        assert await drain(store.prune_deliveries, T0 + 200, 100) == (1, 1)

    aio.run(body())


def test_prune_keeps_a_task_that_spends_or_is_resumed(store: Store, aio: asyncio.Runner) -> None:
    """A finished task touched again after the cutoff (more spend, a resume) is not finished
    for that long: its history stays."""

    async def body() -> None:
        await apply(store, spend("h1", "t-1", spent=D("100")), T0)  # halted
        await apply(store, spend("c1", "t-2", spent=D("10")), T0)
        await apply(store, ev("c2", "t-2", EventType.COMPLETED), T0)
        resume = ev("r1", "t-1", EventType.RESUMED, budget=D("500"), actor="ann")
        await apply(store, resume, T0 + 100)
        await apply(store, spend("c3", "t-2", spent=D("11")), T0 + 100)  # late spend
        assert await drain(store.prune_events, T0 + 50, 10) == (0, 1)
        assert len(await store.list_events("t-1", after=None, limit=10)) == 2
        assert len(await store.list_events("t-2", after=None, limit=10)) == 3

    aio.run(body())


def test_replicas_pruning_at_once_delete_each_row_once(
    store_target: StoreTarget, aio: asyncio.Runner
) -> None:
    """Two store instances (replicas) running retention at the same time: no error, no row
    counted twice, and what one skipped (its task locked by the other) goes in a later run."""

    async def body() -> None:
        replicas = [store_target.new(), store_target.new()]
        for r in replicas:
            await r.open()
        try:
            await retention_scene(replicas[0])
            runs = await asyncio.gather(
                *(drain(r.prune_events, T0 + 50, 1) for r in replicas),
                *(drain(r.prune_deliveries, T0 + 50, 1) for r in replicas),
            )
            events = runs[0][0] + runs[1][0]
            settled = runs[2][0] + runs[3][0]
            assert events <= 5 and settled <= 4
            assert (await drain(replicas[1].prune_events, T0 + 50, 100))[0] == 5 - events
            assert (await drain(replicas[0].prune_deliveries, T0 + 50, 100))[0] == 4 - settled
            assert len(await deliveries(replicas[1])) == 3
        finally:
            for r in replicas:
                await r.close()

    aio.run(body())


# -- PostgreSQL only ----------------------------------------------------------------


def test_postgres_description_hides_the_password() -> None:
    """The store's description (logged at start) names the server but never the password."""
    store = PostgresStore("postgresql://ann:s3cret@db.internal:5433/budget", max_size=7)
    assert store.description == "postgresql://ann:***@db.internal:5433/budget (pool 7)"
    assert "s3cret" not in PostgresStore("postgres://ann@h/db?password=s3cret").description
    assert PostgresStore("postgresql://h/db").description == "postgresql://h/db (pool 10)"


def test_postgres_unreachable_is_store_unavailable(aio: asyncio.Runner) -> None:
    """A server that cannot be reached makes open() raise StoreUnavailable, password hidden."""
    store = PostgresStore("postgresql://ann:s3cret@127.0.0.1:1/none", connect_timeout=5)
    with pytest.raises(StoreUnavailable) as raised:
        aio.run(store.open())
    assert "s3cret" not in str(raised.value)
    assert isinstance(raised.value.__cause__, OSError)


def test_postgres_lost_database_is_store_unavailable(
    postgres_url: str, aio: asyncio.Runner
) -> None:
    """When the database goes away under an open store, calls raise StoreUnavailable."""
    store = PostgresStore(postgres_url, min_size=1, max_size=2)

    async def body() -> None:
        await store.open()
        await apply(store, spend("e1", amount=D(1)))
        server = await asyncpg.connect(postgres_url)
        try:
            # Kill the store's sessions: the pool reconnects on its next use.
            await server.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await apoll(
                lambda: server.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ),
                lambda sessions: sessions == 0,
                what="the store's sessions to end",
            )
        finally:
            await server.close()
        for _ in range(2):
            try:
                await store.ping()
                break
            except StoreUnavailable:
                continue  # a connection killed under the pool fails once
        task = await store.get_task("t-1")
        assert task is not None and task.spent == D(1)

        name = urlsplit(postgres_url).path.lstrip("/")
        admin = await asyncpg.connect(postgres_server_url())
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        with pytest.raises(StoreUnavailable):
            await store.get_task("t-1")
        with pytest.raises(StoreUnavailable):
            await apply(store, spend("e2", amount=D(1)))
        await store.close()

    aio.run(body())


def test_postgres_prune_skips_a_task_being_written(postgres_url: str, aio: asyncio.Runner) -> None:
    """A task row locked by a transaction under way (an event being applied to it) is
    skipped, not waited for: its rows are pruned by a later run."""
    store = PostgresStore(postgres_url, max_size=2)

    async def body() -> None:
        await store.open()
        other = await asyncpg.connect(postgres_url)
        try:
            await retention_scene(store)
            async with other.transaction():
                await other.execute("SELECT 1 FROM tasks WHERE task_id = 't-done' FOR UPDATE")
                assert await drain(store.prune_events, T0 + 50, 100) == (1, 1)  # t-halted's
            assert await drain(store.prune_events, T0 + 50, 100) == (4, 1)
        finally:
            await other.close()
            await store.close()

    aio.run(body())


def test_postgres_ready_gives_up_on_a_write_that_waits(
    postgres_url: str, aio: asyncio.Runner
) -> None:
    """A readiness write that cannot commit (its row held by a stuck transaction) is not
    waited for without end: ready() raises StoreUnavailable after a few seconds."""
    store = PostgresStore(postgres_url, max_size=2)

    async def body() -> None:
        await store.open()
        stuck = await asyncpg.connect(postgres_url)
        try:
            await store.ready(T0)
            async with stuck.transaction():
                await stuck.execute("SELECT 1 FROM readiness WHERE id = 1 FOR UPDATE")
                with pytest.raises(StoreUnavailable, match="did not commit within"):
                    await store.ready(T0 + 1)
            await until_ready(store, T0 + 2)
        finally:
            await stuck.close()
            await store.close()

    aio.run(body())
