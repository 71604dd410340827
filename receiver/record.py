"""Record one event: the pure decision, run inside one durable store commit, then wake delivery.

Every writer of events (webhook sources, a person's resume) goes through here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .ids import check_task_id
from .model import Applied, BudgetEvent, Outcome
from .outbox import Route, Transitioned, decider, tracked
from .state import Policy
from .store import Store


@dataclass
class Recorder:
    store: Store
    policy: Policy
    routes: Sequence[Route]
    clock: Callable[[], float]
    # Called after a commit that owed deliveries (the dispatcher's wake-up).
    committed: Callable[[], None] = field(default=lambda: None)
    # Told each committed state change (metrics).
    transitioned: Transitioned = field(default=lambda old, new: None)

    async def record(self, event: BudgetEvent) -> Applied:
        check_task_id(event.task_id)  # every source: what is stored must be haltable
        now = self.clock()
        decide, count = tracked(decider(event, self.policy, self.routes, now), self.transitioned)
        applied = await self.store.apply(event, decide, now)
        if applied.outcome is Outcome.ACCEPTED and count():
            self.committed()  # only when deliveries are owed: most spend events owe none
        return applied
