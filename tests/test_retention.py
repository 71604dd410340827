"""Retention: the pure rules (time passed in), and the background job on a real SQLite store
with an injected clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from receiver.errors import ConfigError
from receiver.model import BudgetEvent, DeliveryStatus, EventType, Severity
from receiver.outbox import Route, decider
from receiver.prune import Pruner, Run
from receiver.retention import DAY_SECONDS, cutoff, delivery_prunable, event_prunable
from receiver.settings import load_settings
from receiver.state import Policy
from receiver.store import Store
from receiver.store.sqlite import SQLiteStore
from tests.waiting import apoll

T0 = 1_764_000_000.0
DAY = DAY_SECONDS
OPS = (Route("ops", frozenset(Severity)),)


def test_cutoff_is_now_minus_the_retention_period() -> None:
    assert cutoff(T0, 90) == T0 - 90 * 86_400
    assert cutoff(T0, 1) == T0 - 86_400
    assert cutoff(T0, 0) is None  # retention off


@pytest.mark.parametrize(
    ("received_at", "state", "updated_at", "prunable"),
    [
        (T0 - 2 * DAY, "completed", T0 - 2 * DAY, True),
        (T0 - 2 * DAY, "halted", T0 - 2 * DAY, True),  # nobody resumed it all that time
        (T0 - 2 * DAY, "active", T0 - 2 * DAY, False),
        (T0 - 2 * DAY, "warning", T0 - 2 * DAY, False),
        (T0 - 2 * DAY, "halting", T0 - 2 * DAY, False),  # a halt is still owed
        (T0 - 2 * DAY, "completed", T0, False),  # touched since the cutoff
        (T0 - 2 * DAY, "completed", T0 - DAY, False),  # the cutoff itself is kept
        (T0 - DAY, "completed", T0 - 2 * DAY, False),  # (cannot happen) a newer event stays
    ],
)
def test_event_prunable(received_at: float, state: str, updated_at: float, prunable: bool) -> None:
    """An event goes only when it and its task's last change are older than the cutoff and
    the task is completed or halted."""
    assert event_prunable(received_at, state, updated_at, T0 - DAY) is prunable


@pytest.mark.parametrize(
    ("status", "last_change", "state", "prunable"),
    [
        ("delivered", T0 - 2 * DAY, "completed", True),
        ("dead", T0 - 2 * DAY, "halted", True),
        ("pending", T0 - 2 * DAY, "completed", False),  # still owed
        ("delivered", T0 - 2 * DAY, "halting", False),
        ("delivered", T0, "completed", False),  # replayed and sent after the cutoff
    ],
)
def test_delivery_prunable(status: str, last_change: float, state: str, prunable: bool) -> None:
    assert delivery_prunable(status, last_change, state, T0 - 2 * DAY, T0 - DAY) is prunable


# -- the background job -------------------------------------------------------------


async def record(store: Store, event: BudgetEvent) -> None:
    now = event.occurred_at
    await store.apply(event, decider(event, Policy(), OPS, now), now)


def event(event_id: str, task_id: str, type_: EventType, spent: int | None = None) -> BudgetEvent:
    money = {} if spent is None else {"spent": Decimal(spent), "budget": Decimal(100)}
    return BudgetEvent(event_id=event_id, source="budget", type=type_, task_id=task_id,
                       occurred_at=T0, currency="USD", **money)  # fmt: skip


async def scene(store: Store) -> None:
    """t-done: created, one alert delivered, completed, all at T0. t-open: active since T0."""
    await record(store, event("d1", "t-done", EventType.SPEND, spent=60))
    await record(store, event("d2", "t-done", EventType.COMPLETED))
    await record(store, event("o1", "t-open", EventType.SPEND, spent=1))
    (row,) = await store.claim(now=T0, lease_seconds=60, limit=10, owner="x")
    assert await store.settle(row.id, owner="x", status=DeliveryStatus.DELIVERED, now=T0)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "receiver.retention"]


async def logged(
    caplog: pytest.LogCaptureFixture, what: str, found: Callable[[list[str]], bool]
) -> None:
    await apoll(lambda: lines(caplog), found, what=what, timeout=10, interval=0.01)


def job() -> list[asyncio.Task[object]]:
    """The retention job's task, while it runs (Pruner names it)."""
    return [t for t in asyncio.all_tasks() if t.get_name() == "retention"]


def test_the_job_prunes_in_the_background_and_logs_each_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started with the clock 91 days after the tasks' last events, the job removes the
    completed task's history (its task row stays), leaves the active one alone, and logs
    one line with the counts per run; stop() ends it."""
    caplog.set_level(logging.INFO, logger="receiver.retention")
    store = SQLiteStore(tmp_path / "r.db")

    async def body() -> None:
        await store.open()
        try:
            await scene(store)
            pruner = Pruner(store, days=90, clock=lambda: T0 + 91 * DAY,
                            interval=0.05, first_run=0, batch=1, pause=0)  # fmt: skip
            pruner.start()
            try:
                await logged(caplog, "two runs", lambda seen: len(seen) >= 2)
                assert job()
            finally:
                await pruner.stop()
            assert not job(), "stop() left the job running"
            assert await store.list_events("t-done", after=None, limit=10) == []
            assert [
                e.event_id for e in await store.list_events("t-open", after=None, limit=10)
            ] == ["o1"]
            assert await store.list_deliveries(status=None, after=None, limit=10) == []
            done = await store.get_task("t-done")
            assert done is not None and done.state == "completed" and done.spent == 60
        finally:
            await store.close()

    asyncio.run(body())
    first, second = lines(caplog)[:2]
    assert first == ("retention: pruned 2 events and 1 deliveries of tasks finished more "
                     "than 90 days ago")  # fmt: skip
    assert second.startswith("retention: pruned 0 events and 0 deliveries")


def test_the_job_keeps_what_is_not_old_enough(tmp_path: Path) -> None:
    """89 days after: nothing goes. Retention 0: the job does not run at all."""
    store = SQLiteStore(tmp_path / "r.db")

    async def body() -> None:
        await store.open()
        try:
            await scene(store)
            early = Pruner(store, days=90, clock=lambda: T0 + 89 * DAY, batch=1, pause=0)
            assert await early.run_once() == Run(0, 0)
            off = Pruner(store, days=0, clock=lambda: T0 + 1000 * DAY)
            off.start()
            assert await off.run_once() == Run(0, 0)
            await off.stop()
            assert len(await store.list_events("t-done", after=None, limit=10)) == 2
        finally:
            await store.close()

    asyncio.run(body())


def test_the_job_survives_a_store_that_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that meets an unavailable store logs a warning and the next run goes ahead."""
    caplog.set_level(logging.INFO, logger="receiver.retention")
    store = SQLiteStore(tmp_path / "r.db")

    async def body() -> None:
        pruner = Pruner(store, days=90, clock=lambda: T0 + 91 * DAY,
                        interval=0.05, first_run=0, pause=0)  # fmt: skip
        pruner.start()  # the store is not open yet
        try:
            await logged(
                caplog, "a failed run", lambda seen: any("not finished" in m for m in seen)
            )
            await store.open()
            await scene(store)
            await logged(
                caplog, "a run after it", lambda seen: any("pruned 2 events" in m for m in seen)
            )
        finally:
            await pruner.stop()
            await store.close()

    asyncio.run(body())
    assert "the store is not open" in lines(caplog)[0]


def test_the_setting_defaults_to_90_days_and_refuses_negative_ones(tmp_path: Path) -> None:
    env = tmp_path / "r.env"
    env.write_text("RECEIVER_ALLOW_UNSIGNED=true\n")
    assert load_settings(env).retention_days == 90
    env.write_text("RECEIVER_ALLOW_UNSIGNED=true\nRECEIVER_RETENTION_DAYS=0\n")
    assert load_settings(env).retention_days == 0
    env.write_text("RECEIVER_ALLOW_UNSIGNED=true\nRECEIVER_RETENTION_DAYS=-1\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert any(p.startswith("RECEIVER_RETENTION_DAYS") for p in raised.value.problems)
