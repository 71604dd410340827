"""The dispatcher in process: a real SQLite store, a fake clock and fake targets.

Every target answers the one delivery contract (done, retry(after), rejected); the
dispatcher does leases, renewal, retries, settling and follow-up events the same way for
all of them. Time is the fake clock's: retries become due when the test moves it on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from receiver.delivery import FollowUps, Result
from receiver.dispatch import Dispatcher
from receiver.halt import HaltCaller, LocalHalt
from receiver.model import (
    BudgetEvent,
    Delivery,
    DeliveryStatus,
    EventType,
    Severity,
    TaskState,
)
from receiver.outbox import HALT_CHANNEL, Route, decider
from receiver.state import Policy
from receiver.store.sqlite import SQLiteStore
from tests.waiting import apoll

POLICY = Policy(halt_calls_out=True)
CHAT = "chat"
ROUTES = [Route(CHAT, frozenset(Severity))]
START = 1_800_000_000.0
LEASE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class FakeTarget:
    """Answers from a script (the last answer repeats); records every row it was sent."""

    def __init__(
        self,
        id: str,
        *answers: Result | Exception,
        serial: bool = True,
        follow_ups: FollowUps | None = None,
    ) -> None:
        self.id = id
        self.shown = f"fake://{id}"
        self.serial = serial
        self.follow_ups = follow_ups or FollowUps()
        self.answers = list(answers) or [Result.done()]
        self.sent: list[Delivery] = []
        self.gate: asyncio.Event | None = None  # when set: each send waits for it
        self.running = 0
        self.most_at_once = 0

    async def send(self, row: Delivery) -> Result:
        self.sent.append(row)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            answer = self.answers[min(len(self.sent), len(self.answers)) - 1]
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            self.running -= 1


def halt_target(*answers: Result | Exception) -> FakeTarget:
    return FakeTarget(HALT_CHANNEL, *answers, serial=False, follow_ups=HaltCaller.follow_ups)


def event(task_id: str, event_id: str, spent: str, budget: str = "10") -> BudgetEvent:
    return BudgetEvent(
        event_id=event_id, source="budget", type=EventType.SPEND, task_id=task_id,
        occurred_at=START, currency="USD", budget=Decimal(budget), spent=Decimal(spent),
    )  # fmt: skip


class Run:
    def __init__(self, store: SQLiteStore, clock: Clock, dispatcher: Dispatcher) -> None:
        self.store, self.clock, self.dispatcher = store, clock, dispatcher
        self.settled: list[tuple[str, str]] = []
        self.transitions: list[tuple[str, str]] = []

    async def apply(self, *events: BudgetEvent) -> None:
        for e in events:
            await self.store.apply(e, decider(e, POLICY, ROUTES, self.clock()), self.clock())
        self.dispatcher.wake()

    async def rows(self, status: DeliveryStatus | None = None) -> list[Delivery]:
        return await self.store.list_deliveries(status=status, after=None, limit=100)

    async def until(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        """Wait (real time) until ``check`` holds; the fake clock stands still."""
        await apoll(check, what=what, timeout=5.0, interval=0.01)

    async def settled_as(self, status: DeliveryStatus, count: int = 1) -> list[Delivery]:
        return await apoll(
            lambda: self.rows(status),
            lambda rows: len(rows) >= count,
            what=f"{count} row(s) {status.value}",
            timeout=5.0,
            interval=0.01,
        )

    async def later(self, seconds: float) -> None:
        self.clock.now += seconds
        self.dispatcher.wake()


@asynccontextmanager
async def running(
    tmp_path: Path, *targets: Any, max_attempts: int = 3, name: str = "r.db"
) -> AsyncIterator[Run]:
    store = SQLiteStore(tmp_path / name)
    await store.open()
    clock = Clock()
    run: Run
    dispatcher = Dispatcher(
        store=store, targets=list(targets), policy=POLICY, routes=ROUTES,
        max_attempts=max_attempts, retry_base=10.0, retry_cap=100.0, lease_seconds=LEASE,
        clock=clock, rand=lambda: 0.5,
        transitioned=lambda old, new: run.transitions.append((old, new)),
        settled=lambda channel, outcome: run.settled.append((channel, outcome)),
    )  # fmt: skip
    run = Run(store, clock, dispatcher)
    dispatcher.start()
    try:
        yield run
    finally:
        for target in targets:
            if isinstance(target, FakeTarget) and target.gate is not None:
                target.gate.set()
        await dispatcher.stop()
        await store.close()


def test_done_settles_each_row_and_the_halt_follow_up_halts_the_task(tmp_path: Path) -> None:
    """A spend at the limit owes one alert and one halt call: both done; the halt's
    follow-up (halt confirmed) is recorded and moves the task to halted, told once."""
    chat, halt = FakeTarget(CHAT), halt_target()

    async def go() -> None:
        async with running(tmp_path, chat, halt) as run:
            await run.apply(event("t-1", "e-1", spent="10"))
            delivered = await run.settled_as(DeliveryStatus.DELIVERED, 2)
            assert sorted(r.channel for r in delivered) == [CHAT, HALT_CHANNEL]
            assert all(r.attempts == 1 and r.last_error is None for r in delivered)
            task = await run.store.get_task("t-1")
            assert task is not None and task.state is TaskState.HALTED
            types = [e.type for e in await run.store.list_events("t-1", after=None, limit=9)]
            assert types.count(EventType.HALT_CONFIRMED.value) == 1
            assert ("halting", "halted") in run.transitions
            assert sorted(run.settled) == [(CHAT, "delivered"), (HALT_CHANNEL, "delivered")]

    asyncio.run(go())
    assert len(chat.sent) == 1 and len(halt.sent) == 1


def test_retry_waits_for_the_target_s_time_then_delivers(tmp_path: Path) -> None:
    """retry(after=120) is honoured over the backoff (10 s here): not before, then done."""
    chat = FakeTarget(CHAT, Result.retry("HTTP 429", after=120.0), Result.done())

    async def go() -> None:
        async with running(tmp_path, chat, LocalHalt()) as run:
            await run.apply(event("t-1", "e-1", spent="9"))  # 90 %: one warning alert
            (row,) = await run.settled_as(DeliveryStatus.PENDING)

            async def tried_once() -> bool:
                (row,) = await run.rows()
                return row.attempts == 1

            await run.until("the first attempt is recorded", tried_once)
            (row,) = await run.rows()
            assert row.last_error == "HTTP 429" and row.next_at == START + 120.0
            await run.later(119.0)
            await asyncio.sleep(0.1)
            assert len(chat.sent) == 1  # not yet due
            await run.later(1.0)
            (row,) = await run.settled_as(DeliveryStatus.DELIVERED)
            assert row.attempts == 2
            assert run.settled == [(CHAT, "retry"), (CHAT, "delivered")]

    asyncio.run(go())


def test_retries_end_dead_after_max_attempts_with_the_halt_failed_follow_up(
    tmp_path: Path,
) -> None:
    """A halt call that never succeeds: max_attempts tries, then dead; the follow-up
    (halt failed, with the last error) owes the task's people a critical alert."""
    halt = halt_target(Result.retry("HTTP 503 Service Unavailable"))
    chat = FakeTarget(CHAT)

    async def go() -> None:
        async with running(tmp_path, chat, halt, max_attempts=3) as run:
            await run.apply(event("t-1", "e-1", spent="10"))
            for _ in range(3):
                await run.later(1_000.0)  # past any backoff
                await asyncio.sleep(0.05)
            (dead,) = await run.settled_as(DeliveryStatus.DEAD)
            assert dead.kind == "halt" and dead.attempts == 3
            assert dead.last_error == "HTTP 503 Service Unavailable"
            task = await run.store.get_task("t-1")
            assert task is not None and task.state is TaskState.HALTING

            async def told() -> bool:
                return any(r.payload.get("alert") == "halt_failed" for r in chat.sent)

            await run.until("the halt_failed alert is sent", told)

    asyncio.run(go())
    assert len(halt.sent) == 3


def test_rejected_is_dead_at_once_and_a_raising_target_still_counts_attempts(
    tmp_path: Path,
) -> None:
    """rejected: dead after one attempt, no retry. A target with a bug (it raises) is an
    attempt that failed each time: the row ends dead, never tried forever at attempt 0."""
    rejecting = FakeTarget(CHAT, Result.rejected("HTTP 401 Unauthorized"))
    broken = halt_target(KeyError("a bug in the target"))

    async def go() -> None:
        async with running(tmp_path, rejecting, broken, max_attempts=3) as run:
            await run.apply(event("t-1", "e-1", spent="10"))
            for _ in range(3):
                await run.later(1_000.0)
                await asyncio.sleep(0.05)
            dead = await run.settled_as(DeliveryStatus.DEAD, 2)
            by_kind = {r.kind: r for r in dead}
            assert by_kind["alert"].attempts == 1
            assert by_kind["alert"].last_error == "HTTP 401 Unauthorized"
            assert by_kind["halt"].attempts == 3
            assert "KeyError" in (by_kind["halt"].last_error or "")
            events = await run.store.list_events("t-1", after=None, limit=10)
            failed = [e for e in events if e.type == EventType.HALT_FAILED.value]
            assert len(failed) == 1 and "a bug in the target" in failed[0].payload["error"]

    asyncio.run(go())
    assert len(rejecting.sent) >= 1 and len(broken.sent) == 3


def test_a_row_for_a_channel_no_longer_configured_is_dead(tmp_path: Path) -> None:
    async def go() -> None:
        async with running(tmp_path, LocalHalt()) as run:  # no "chat" target any more
            await run.apply(event("t-1", "e-1", spent="9"))
            (row,) = await run.settled_as(DeliveryStatus.DEAD)
            assert row.channel == CHAT and row.last_error == "channel no longer configured"

    asyncio.run(go())


def test_a_serial_target_takes_one_row_at_a_time_and_never_delays_a_halt(
    tmp_path: Path,
) -> None:
    """While a chat channel is stuck on its first message, its other rows wait their turn,
    and the halt call goes out at once."""
    chat, halt = FakeTarget(CHAT), halt_target()
    chat.gate = asyncio.Event()

    async def go() -> None:
        async with running(tmp_path, chat, halt) as run:
            await run.apply(*(event(f"t-{n}", f"e-{n}", spent="9") for n in range(3)))
            await run.apply(event("t-9", "e-9", spent="10"))  # owes a halt

            async def halted() -> bool:
                return len(halt.sent) == 1 and len(chat.sent) == 1

            await run.until("the halt is sent while the chat channel is stuck", halted)
            assert chat.gate is not None
            chat.gate.set()
            await run.settled_as(DeliveryStatus.DELIVERED, 5)
            assert chat.most_at_once == 1

    asyncio.run(go())


def test_leases_of_rows_still_under_way_are_renewed(tmp_path: Path) -> None:
    """A target slower than the lease: its owner renews the lease, so another replica
    claiming after the first lease would have ended does not take the row over."""
    slow = halt_target()
    slow.gate = asyncio.Event()

    async def go() -> None:
        async with running(tmp_path, slow) as run:
            await run.apply(event("t-1", "e-1", spent="10"))

            async def sent() -> bool:
                return len(slow.sent) == 1

            await run.until("the halt call is under way", sent)
            await run.later(20.0)  # the dispatcher runs: a third of the lease has passed
            await asyncio.sleep(0.1)
            run.clock.now += 25.0  # past the first lease (30 s), inside the renewed one
            other = await run.store.claim(
                now=run.clock(), lease_seconds=LEASE, limit=10, owner="replica-2"
            )
            assert other == []
            assert slow.gate is not None
            slow.gate.set()
            (row,) = await run.settled_as(DeliveryStatus.DELIVERED)
            assert row.attempts == 1

    asyncio.run(go())
    assert len(slow.sent) == 1


def test_a_row_taken_over_while_it_waited_its_turn_is_not_sent_twice(tmp_path: Path) -> None:
    """Two alerts on a stuck channel; both leases run out and another replica claims
    them. The second row, still waiting for its turn here, is left to that replica: its
    lease was not renewed, so it is not sent a second time from here."""
    chat = FakeTarget(CHAT)
    chat.gate = asyncio.Event()

    async def go() -> None:
        async with running(tmp_path, chat, LocalHalt()) as run:
            await run.apply(event("t-1", "e-1", spent="9"), event("t-2", "e-2", spent="9"))

            async def both_here() -> bool:
                return len(chat.sent) == 1 and len(run.dispatcher._in_flight) == 2

            await run.until("one alert under way, the other waiting its turn", both_here)
            run.clock.now += LEASE + 1  # both leases ran out ...
            taken = await run.store.claim(
                now=run.clock(), lease_seconds=LEASE, limit=10, owner="replica-2"
            )
            assert len(taken) == 2  # ... and another replica has both rows now
            await run.later(0.0)  # this dispatcher tries to renew them: neither is its own
            await asyncio.sleep(0.1)
            assert chat.gate is not None
            chat.gate.set()

            async def idle() -> bool:
                return not run.dispatcher._in_flight

            await run.until("nothing is under way here", idle)
            assert len(chat.sent) == 1

    asyncio.run(go())
