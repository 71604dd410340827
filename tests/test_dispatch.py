"""The dispatcher on a real SQLite store: every failed attempt counts, whatever the failure.

The halt target here raises instead of answering: no real halt caller does that any more
(HaltCaller turns every failure into a result), but a bug in a target must still end with
the row dead and people told, never with the row tried forever at attempt 0.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from receiver.channels import LOG_CHANNEL, Channel
from receiver.dispatch import Dispatcher
from receiver.halt import HaltCaller, HaltResult
from receiver.metrics import Metrics
from receiver.model import BudgetEvent, DeliveryStatus, EventType, Severity, TaskState
from receiver.outbox import Route, decider
from receiver.settings import Settings
from receiver.state import Policy
from receiver.store.sqlite import SQLiteStore

POLICY = Policy(halt_calls_out=True)
ROUTES = [Route(LOG_CHANNEL, frozenset(Severity))]


class BrokenTarget(HaltCaller):
    """A halt target with a bug: it raises on every call."""

    calls = 0

    async def call(self, payload: dict[str, Any], idempotency_key: str) -> HaltResult:
        BrokenTarget.calls += 1
        raise KeyError("a bug in the target")


def spend(task_id: str, event_id: str, **data: Any) -> BudgetEvent:
    return BudgetEvent(
        event_id=event_id, source="budget", type=EventType.SPEND, task_id=task_id,
        occurred_at=0.0, currency="USD", **data,
    )  # fmt: skip


def test_a_target_that_raises_counts_attempts_then_dead_and_alerts(tmp_path: Path) -> None:
    """Three attempts (max 3), each recorded with its error; then dead, the task stays
    halting, and the halt_failed alert carries the last error."""

    async def run() -> None:
        store = SQLiteStore(tmp_path / "r.db")
        await store.open()
        settings = Settings.model_validate(
            {"allow_unsigned": True, "halt_url": SecretStr("http://127.0.0.1:9/{task_id}")}
        )
        async with httpx.AsyncClient() as client:
            dispatcher = Dispatcher(
                store=store, channels=[Channel(LOG_CHANNEL, "log://", frozenset())],
                halt=BrokenTarget(settings, client), policy=POLICY, routes=ROUTES,
                max_attempts=3, retry_base=0.01, retry_cap=0.02, lease_seconds=5,
                clock=time.time, metrics=Metrics(),
            )  # fmt: skip
            now = time.time()
            event = spend("t-1", "e-1", budget=Decimal(1), spent=Decimal(1))
            await store.apply(event, decider(event, POLICY, ROUTES, now), now)
            dispatcher.start()
            try:
                for _ in range(200):
                    dead = await store.list_deliveries(
                        status=DeliveryStatus.DEAD, after=None, limit=10
                    )
                    if dead:
                        break
                    await asyncio.sleep(0.02)
            finally:
                await dispatcher.stop()
        (row,) = dead
        assert row.kind == "halt" and row.attempts == 3 and BrokenTarget.calls == 3
        assert row.last_error is not None and "KeyError" in row.last_error
        task = await store.get_task("t-1")
        assert task is not None and task.state is TaskState.HALTING
        events = await store.list_events("t-1", after=None, limit=10)
        failed = [e for e in events if e.type == EventType.HALT_FAILED.value]
        assert len(failed) == 1 and "KeyError" in failed[0].payload["error"]
        alerts = await store.list_deliveries(status=None, after=None, limit=10)
        (alert,) = [a for a in alerts if a.kind == "alert"]
        assert alert.payload["alert"] == "halt_failed"
        assert "a bug in the target" in alert.payload["reason"]
        await store.close()

    asyncio.run(run())
