"""Retention in the background: prune what ``retention`` says is old enough, in small batches.

One run walks the events and the outbox from the oldest row up to the cutoff, one batch
(one short store transaction) at a time, with a pause between batches so the SQLite writer
is never held for long. Every replica may run it: on PostgreSQL a batch locks the tasks
whose rows it deletes and skips any that are locked, and deleting a row twice is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .errors import StoreUnavailable
from .retention import Pruned, cutoff
from .store import Store

log = logging.getLogger("receiver.retention")
RUN_INTERVAL_SECONDS = 3600.0
FIRST_RUN_SECONDS = 60.0  # after start: not in the way of start-up
BATCH = 500
PAUSE_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class Run:
    """What one run removed."""

    events: int
    deliveries: int


class Pruner:
    def __init__(
        self,
        store: Store,
        *,
        days: int,
        clock: Callable[[], float],
        interval: float = RUN_INTERVAL_SECONDS,
        first_run: float = FIRST_RUN_SECONDS,
        batch: int = BATCH,
        pause: float = PAUSE_SECONDS,
    ) -> None:
        self.store = store
        self.days = days
        self.clock = clock
        self.interval = interval
        self.first_run = first_run
        self.batch = batch
        self.pause = pause
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.days > 0:
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> Run:
        """Prune everything old enough now; log one line with the counts."""
        before = cutoff(self.clock(), self.days)
        if before is None:
            return Run(0, 0)
        run = Run(
            events=await self._drain(before, self.store.prune_events),
            deliveries=await self._drain(before, self.store.prune_deliveries),
        )
        log.info(
            "retention: pruned %d events and %d deliveries of tasks finished more than %d days ago",
            run.events,
            run.deliveries,
            self.days,
        )
        return run

    async def _drain(self, before: float, prune: Callable[..., Awaitable[Pruned]]) -> int:
        total, after = 0, 0
        while True:
            batch = await prune(before, after=after, limit=self.batch)
            total += batch.deleted
            if batch.next is None:
                return total
            after = batch.next
            await asyncio.sleep(self.pause)  # let other writers in between batches

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_run)
        while True:
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                log.warning("retention: run not finished, trying again later: %s", exc)
            except Exception:
                log.exception("retention: run failed; trying again later")
            await asyncio.sleep(self.interval)
