"""The outbox dispatcher: claim due rows, deliver each on its own, record the result.

Wakes at once when ingest commits new rows, and on a timer for retries, for rows
another replica wrote, and for leases that ran out. Every row is delivered by its
own asyncio task: a slow or failing channel never delays another channel, and
nothing ever delays a halt call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence

from .alerts import render
from .backoff import next_attempt
from .channels import Channel, send
from .errors import StoreUnavailable
from .halt import HaltCaller, HaltOutcome
from .internal import halt_result
from .metrics import Metrics
from .model import Delivery, DeliveryStatus, EventType, FollowUp
from .outbox import Route, decider
from .state import Policy
from .store import Store

log = logging.getLogger("receiver.dispatch")
CLAIM_BATCH = 64
IDLE_POLL_SECONDS = 1.0
# An alert is only sent while at least this share of its lease is left: a row that waited
# for its channel until the lease (nearly) ran out may be another replica's by now.
LEASE_MARGIN = 0.25


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        channels: Sequence[Channel],
        halt: HaltCaller | None,
        policy: Policy,
        routes: Sequence[Route],
        max_attempts: int,
        retry_base: float,
        retry_cap: float,
        lease_seconds: float,
        clock: Callable[[], float],
        metrics: Metrics,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.channels = {c.id: c for c in channels}
        self.halt = halt
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
        # A channel sends one message at a time; its rows wait for their turn here.
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
        await self.store.renew(self.owner, list(self._in_flight), until)
        self._renewed_at = now
        for rid in self._in_flight:
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
        try:
            if row.kind == "halt":
                await self._deliver_halt(row)
            else:
                await self._deliver_alert(row)
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
                await self._failed(row, f"unexpected {type(exc).__name__}: {exc}")

    async def _deliver_alert(self, row: Delivery) -> None:
        channel = self.channels.get(row.channel)
        if channel is None:
            await self._settle(row, DeliveryStatus.DEAD, "channel no longer configured")
            return
        async with self._turns.setdefault(channel.id, asyncio.Lock()):
            left = self._leased.get(row.id, 0.0) - self.clock()
            if left < self.lease_seconds * LEASE_MARGIN:
                # Its lease ran out while it waited behind the channel's other rows: another
                # replica may be sending it now. Leave it to whoever claims it next.
                log.info("alert %s waited out its lease; left for the next claim", row.id)
                return
            result = await send(channel, render(row.payload))
        if result.ok:
            await self._settle(row, DeliveryStatus.DELIVERED)
            log.info("alert %s for task %s delivered to %s", row.id, row.task_id, channel.redacted)
            return
        await self._failed(row, result.error or "failed")

    async def _deliver_halt(self, row: Delivery) -> None:
        if self.halt is None:
            # Owed before RECEIVER_HALT_URL was removed: the task is halted locally.
            await self._settle(
                row,
                DeliveryStatus.DELIVERED,
                follow_up=self._follow_up(row, EventType.HALT_CONFIRMED),
            )
            return
        started = time.perf_counter()
        result = await self.halt.call(row.payload, row.idempotency_key)
        self.metrics.halt_call_seconds.labels(result.outcome.value).observe(
            time.perf_counter() - started
        )
        if result.outcome in (HaltOutcome.DONE, HaltOutcome.GONE):
            self.metrics.time_to_halt.observe(max(0.0, self.clock() - row.created_at))
            log.warning("task %s halted by the platform (HTTP %s)", row.task_id, result.status)
            await self._settle(
                row,
                DeliveryStatus.DELIVERED,
                follow_up=self._follow_up(row, EventType.HALT_CONFIRMED),
            )
            return
        error = result.error or f"HTTP {result.status}"
        final = result.outcome is not HaltOutcome.RETRY
        await self._failed(row, error, retry_after=result.retry_after, final=final)

    async def _failed(
        self, row: Delivery, error: str, *, retry_after: float | None = None, final: bool = False
    ) -> None:
        """One failed attempt: retry later, or, after the last one (or a final answer), dead;
        a dead halt call owes the task's people a critical alert."""
        attempt = row.attempts + 1
        if not final and attempt < self.max_attempts:
            now = self.clock()
            at = next_attempt(attempt, now=now, base=self.retry_base, cap=self.retry_cap,
                              rand=self.rand(), retry_after=retry_after)  # fmt: skip
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
        if row.kind == "halt":
            log.error(
                "halt call for task %s failed for good: %s; halt it by hand", row.task_id, error
            )
            follow_up = self._follow_up(row, EventType.HALT_FAILED, error)
            await self._settle(row, DeliveryStatus.DEAD, error, follow_up=follow_up)
            return
        log.error(
            "alert %s for task %s to %s is dead after %d attempts: %s",
            row.id,
            row.task_id,
            row.channel,
            attempt,
            error,
        )
        await self._settle(row, DeliveryStatus.DEAD, error)

    def _follow_up(self, row: Delivery, kind: EventType, error: str | None = None) -> FollowUp:
        now = self.clock()
        event = halt_result(kind, task_id=row.task_id, delivery_id=row.id, now=now, error=error)
        decide, count = self.metrics.tracking(decider(event, self.policy, self.routes, now))
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
        self.metrics.delivery(
            row.channel, "retry" if status is DeliveryStatus.PENDING else status.value
        )
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
