"""The outbox dispatcher: claim due rows, hand each to its target, record the result.

Wakes at once when ingest commits new rows, and on a timer for retries, for rows
another replica wrote, and for leases that ran out. Every row is delivered by its
own asyncio task: a slow or failing channel never delays another channel, and
nothing ever delays a halt call. Targets (channels, the halt call) all answer the
same way (receiver.delivery); leases, renewal, retries, settling and follow-up events
are handled here once, whatever the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Sequence

from .backoff import next_attempt
from .delivery import FollowUps, Result, Target, Verdict
from .errors import StoreUnavailable
from .internal import halt_result
from .model import Delivery, DeliveryStatus, EventType, FollowUp
from .outbox import Route, Transitioned, decider, tracked
from .state import Policy
from .store import Store

log = logging.getLogger("receiver.dispatch")
CLAIM_BATCH = 64
IDLE_POLL_SECONDS = 1.0
# A serial target's row is only sent while at least this share of its lease is left: a row
# that waited for its turn until the lease (nearly) ran out may be another replica's by now.
LEASE_MARGIN = 0.25


def _ignore(*_: object) -> None:
    return None


class _Unconfigured:
    """The target of rows owed to a channel that was removed from the settings since."""

    serial = False
    follow_ups = FollowUps()

    def __init__(self, channel: str) -> None:
        self.id = self.shown = channel

    async def send(self, row: Delivery) -> Result:
        return Result.rejected("channel no longer configured")


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        targets: Sequence[Target],
        policy: Policy,
        routes: Sequence[Route],
        max_attempts: int,
        retry_base: float,
        retry_cap: float,
        lease_seconds: float,
        clock: Callable[[], float],
        rand: Callable[[], float] = random.random,
        transitioned: Transitioned = _ignore,
        settled: Callable[[str, str], object] = _ignore,
    ) -> None:
        self.store = store
        self.targets = {t.id: t for t in targets}
        self.transitioned = transitioned  # a follow-up's state change, once committed
        self.settled = settled  # (channel, delivered | retry | dead) per attempt recorded
        self.policy = policy
        self.routes = list(routes)
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.rand = rand
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        # When our lease on each claimed row runs out; a row we claim again while it is
        # still in flight here gets the new time.
        self._leased: dict[int, float] = {}
        # A serial target sends one row at a time; its rows wait for their turn here.
        self._turns: dict[str, asyncio.Lock] = {}
        self._renewed_at = 0.0
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self, grace_seconds: float = 4.0) -> None:
        """Stop claiming, let deliveries under way finish, give back the rest."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight.values(), timeout=grace_seconds)
            if pending:
                log.warning(
                    "stopping: %d deliveries still under way after %g s; given back for the "
                    "next start or another replica",
                    len(pending),
                    grace_seconds,
                )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.store.release(self.owner)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._renew_leases()
                await self._claim_and_start()
                timeout = await self._idle_timeout()
            except Exception:
                log.exception("dispatcher: cannot read the outbox; trying again shortly")
                timeout = IDLE_POLL_SECONDS
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _renew_leases(self) -> None:
        """Keep the leases of deliveries still under way here (a slow halt call, a channel's
        queue): another replica takes a row over only when this process stops renewing."""
        now = self.clock()
        if not self._in_flight or now - self._renewed_at < self.lease_seconds / 3:
            return
        until = now + self.lease_seconds
        renewed = await self.store.renew(self.owner, list(self._in_flight), until)
        self._renewed_at = now
        # A row not renewed is another replica's by now: its old lease time stays, so a
        # serial row still waiting for its turn is left to that replica, not sent twice.
        for rid in renewed:
            if rid in self._in_flight:
                self._leased[rid] = until

    async def _claim_and_start(self) -> None:
        while not self._stopping:
            now = self.clock()
            rows = await self.store.claim(
                now=now, lease_seconds=self.lease_seconds, limit=CLAIM_BATCH, owner=self.owner
            )
            for row in rows:
                self._leased[row.id] = now + self.lease_seconds
            fresh = [r for r in rows if r.id not in self._in_flight]
            for row in fresh:
                task = asyncio.create_task(self._deliver(row), name=f"delivery-{row.id}")
                self._in_flight[row.id] = task
                task.add_done_callback(self._forget)
            if len(rows) < CLAIM_BATCH or not fresh:
                return

    def _forget(self, task: asyncio.Task[None]) -> None:
        for rid, running in list(self._in_flight.items()):
            if running is task:
                del self._in_flight[rid]
                self._leased.pop(rid, None)

    async def _idle_timeout(self) -> float:
        due = await self.store.next_due()
        if due is None:
            return IDLE_POLL_SECONDS
        return min(max(due - self.clock(), 0.0), IDLE_POLL_SECONDS)

    async def _deliver(self, row: Delivery) -> None:
        target = self.targets.get(row.channel) or _Unconfigured(row.channel)
        try:
            result = await self._attempt(target, row)
            if result is not None:
                await self._record(target, row, result)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable:
            # The result could not be recorded: the lease runs out and the row is tried again.
            log.exception("delivery %s (%s): cannot record its result", row.id, row.channel)
        except Exception as exc:
            # Not a clean answer from the target: still an attempt, so a row that can never
            # succeed ends dead (and a halt's people are told) instead of looping forever.
            log.exception("delivery %s (%s) failed unexpectedly", row.id, row.channel)
            with contextlib.suppress(Exception):
                error = f"unexpected {type(exc).__name__}: {exc}"
                await self._record(target, row, Result.retry(error))

    async def _attempt(self, target: Target, row: Delivery) -> Result | None:
        """The target's answer, or None when the row is no longer ours to send."""
        if not target.serial:
            return await target.send(row)
        async with self._turns.setdefault(target.id, asyncio.Lock()):
            left = self._leased.get(row.id, 0.0) - self.clock()
            if left < self.lease_seconds * LEASE_MARGIN:
                # Its lease ran out while it waited behind the target's other rows: another
                # replica may be sending it now. Leave it to whoever claims it next.
                log.info("delivery %s waited out its lease; left for the next claim", row.id)
                return None
            return await target.send(row)

    async def _record(self, target: Target, row: Delivery, result: Result) -> None:
        """Settle one attempt: done, retry later, or (after the last attempt, or a rejection)
        dead, with the target's follow-up event in the same commit."""
        if result.verdict is Verdict.DONE:
            follow_up = self._follow_up(row, target.follow_ups.done)
            await self._settle(row, DeliveryStatus.DELIVERED, follow_up=follow_up)
            return
        error = result.error or result.verdict.value
        attempt = row.attempts + 1
        if result.verdict is Verdict.RETRY and attempt < self.max_attempts:
            now = self.clock()
            at = next_attempt(attempt, now=now, base=self.retry_base, cap=self.retry_cap,
                              rand=self.rand(), retry_after=result.retry_after)  # fmt: skip
            log.warning(
                "delivery %s to %s failed (attempt %d): %s; next try in %.1f s",
                row.id,
                row.channel,
                attempt,
                error,
                at - now,
            )
            await self._settle(row, DeliveryStatus.PENDING, error, next_at=at)
            return
        await self._give_up(row, target, error)

    async def _give_up(self, row: Delivery, target: Target, error: str) -> None:
        hint = target.follow_ups.dead_hint
        log.error(
            "%s %s for task %s to %s is dead after %d attempts: %s%s",
            row.kind,
            row.id,
            row.task_id,
            target.shown,
            row.attempts + 1,
            error,
            f"; {hint}" if hint else "",
        )
        follow_up = self._follow_up(row, target.follow_ups.dead, error)
        await self._settle(row, DeliveryStatus.DEAD, error, follow_up=follow_up)

    def _follow_up(
        self, row: Delivery, kind: EventType | None, error: str | None = None
    ) -> FollowUp | None:
        if kind is None:
            return None
        now = self.clock()
        event = halt_result(kind, task_id=row.task_id, delivery_id=row.id, now=now, error=error)
        decide, count = tracked(decider(event, self.policy, self.routes, now), self.transitioned)
        return FollowUp(event, decide, count)

    async def _settle(
        self,
        row: Delivery,
        status: DeliveryStatus,
        error: str | None = None,
        *,
        next_at: float | None = None,
        follow_up: FollowUp | None = None,
    ) -> None:
        self.settled(row.channel, "retry" if status is DeliveryStatus.PENDING else status.value)
        kept = await self.store.settle(
            row.id,
            owner=self.owner,
            status=status,
            now=self.clock(),
            next_at=next_at,
            error=error,
            follow_up=follow_up,
        )
        if not kept:
            log.warning("delivery %s: lease lost before its result was recorded", row.id)
        elif follow_up is not None:
            follow_up.committed()
            self.wake()
