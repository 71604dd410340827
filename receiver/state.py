"""The per-task state machine: pure functions over plain data, time passed in.

active -> warning -> halting -> halted        (any) -> completed
                                halted/halting -- resume (a person) --> active|warning

A forecast (a sender's projection) moves nothing: it only warns a spending task.
A soft budget is a line to warn at, never a limit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from .errors import Conflict, CurrencyMismatch, InvalidEvent
from .model import (
    Alert,
    AlertKind,
    BudgetEvent,
    Effect,
    EventType,
    Halt,
    Severity,
    Task,
    TaskState,
    Transition,
)

SPENDING = frozenset({TaskState.ACTIVE, TaskState.WARNING})
STOPPED = frozenset({TaskState.HALTING, TaskState.HALTED})


@dataclass(frozen=True, slots=True)
class Policy:
    thresholds: tuple[Decimal, ...] = (Decimal("0.5"), Decimal("0.8"), Decimal("0.9"))
    halt_at: Decimal = Decimal("1.0")
    # False: no halt URL, so reaching the limit halts the task locally at once.
    halt_calls_out: bool = False
    spend_after_halt_quiet_seconds: float = 3600.0


class GateReason(StrEnum):
    ALLOWED = "allowed"
    HALTED = "halted"
    HALTING = "halting"
    COMPLETED = "completed"
    NO_BUDGET = "no_budget"
    BUDGET_EXHAUSTED = "budget_exhausted"
    WOULD_EXCEED = "would_exceed_budget"


def new_task(event: BudgetEvent, now: float) -> Task:
    return Task(
        task_id=event.task_id,
        source=event.source,
        state=TaskState.ACTIVE,
        spent=Decimal(0),
        created_at=now,
        updated_at=now,
    )


def transition(task: Task | None, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    """Apply one event to a task (None: not seen before) and say what is owed."""
    if task is None:
        if event.type in (EventType.RESUMED, EventType.HALT_CONFIRMED, EventType.HALT_FAILED):
            raise Conflict(f"task {event.task_id!r} does not exist", code="unknown_task")
        task = new_task(event, now)
    if event.type is EventType.FORECAST:
        return _forecast(task, event, now)
    before = task
    task = _merge_budget(_merge_details(task, event), event)
    effects: list[Effect] = []

    if event.type is EventType.RESUMED:
        return _resume(task, event, policy, now)
    if event.type is EventType.HALT_CONFIRMED:
        if task.state is not TaskState.HALTING:
            return Transition(task)
        halted = dataclasses.replace(task, state=TaskState.HALTED, halted_at=now, updated_at=now)
        return Transition(halted, (Alert(AlertKind.HALTED, Severity.CRITICAL),))
    if event.type is EventType.HALT_FAILED:
        if task.state is not TaskState.HALTING:
            return Transition(task)
        return Transition(
            dataclasses.replace(task, updated_at=now),
            (Alert(AlertKind.HALT_FAILED, Severity.CRITICAL),),
        )
    if event.type is EventType.COMPLETED:
        done = dataclasses.replace(task, state=TaskState.COMPLETED, updated_at=now)
        return Transition(done)

    task = _add_spend(task, event)
    if task.state is TaskState.COMPLETED:
        return Transition(dataclasses.replace(task, updated_at=now))

    if task.state in STOPPED:
        # A stopped task never re-initiates a halt; more spend owes one alert per quiet period.
        if task.spent > before.spent and _quiet_period_over(task, policy, now):
            task = dataclasses.replace(task, last_after_halt_alert_at=now)
            effects.append(Alert(AlertKind.SPEND_AFTER_HALT, Severity.CRITICAL))
        return Transition(dataclasses.replace(task, updated_at=now), tuple(effects))

    used = task.used_fraction
    reached = event.type is EventType.REACHED or (used is not None and used >= policy.halt_at)
    # A budget of 0 has no used fraction, yet any spend at all is over it.
    reached = reached or (task.budget == 0 and task.spent > 0)
    if event.type is EventType.THRESHOLD and event.threshold is not None:
        # A soft budget is a line to warn at: only the spend itself can make it a halt.
        reached = reached or (event.soft_budget is None and event.threshold >= policy.halt_at)
    crossed = _crossed_thresholds(task, event, policy, used)
    if crossed:
        alerted = tuple(sorted({*task.thresholds_alerted, *crossed}))
        task = dataclasses.replace(task, thresholds_alerted=alerted, state=TaskState.WARNING)

    if reached:
        if policy.halt_calls_out:
            task = dataclasses.replace(task, state=TaskState.HALTING)
            effects.append(Halt(reason=_halt_reason(event)))
        else:
            task = dataclasses.replace(task, state=TaskState.HALTED, halted_at=now)
            effects.append(Alert(AlertKind.HALTED, Severity.CRITICAL))
    elif crossed or (event.soft_budget is not None and task.budget is None):
        # Without a budget a soft budget is no fraction to remember: each crossing reported warns.
        effects.append(_warning(event, max(crossed, default=None)))
    return Transition(dataclasses.replace(task, updated_at=now), tuple(effects))


def gate(task: Task, amount: Decimal = Decimal(0)) -> GateReason:
    """May this task keep spending (``amount`` more)?"""
    if task.state is TaskState.HALTED:
        return GateReason.HALTED
    if task.state is TaskState.HALTING:
        return GateReason.HALTING
    if task.state is TaskState.COMPLETED:
        return GateReason.COMPLETED
    if task.budget is None:
        return GateReason.NO_BUDGET
    if task.spent >= task.budget:
        return GateReason.BUDGET_EXHAUSTED
    if task.spent + amount > task.budget:
        return GateReason.WOULD_EXCEED
    return GateReason.ALLOWED


def _forecast(task: Task, event: BudgetEvent, now: float) -> Transition:
    """A projection is news, not spend: budget, spent and state stay; a spending task is warned."""
    task = dataclasses.replace(_merge_details(task, event), updated_at=now)
    if task.state not in SPENDING:
        return Transition(task)  # already stopped or done: a forecast adds nothing
    return Transition(task, (Alert(AlertKind.FORECAST, Severity.WARNING, forecast=event.forecast),))


def _warning(event: BudgetEvent, threshold: Decimal | None) -> Alert:
    if event.soft_budget is not None:
        return Alert(
            AlertKind.SOFT_BUDGET, Severity.WARNING, threshold, soft_budget=event.soft_budget
        )
    return Alert(AlertKind.THRESHOLD, Severity.WARNING, threshold=threshold)


def _merge_details(task: Task, event: BudgetEvent) -> Task:
    if event.currency is not None and task.currency not in (None, event.currency):
        raise CurrencyMismatch(
            f"task {task.task_id!r} is in {task.currency}, the event says {event.currency}"
        )
    return dataclasses.replace(
        task,
        task_name=event.task_name or task.task_name,
        agent_id=event.agent_id or task.agent_id,
        currency=event.currency or task.currency,
    )


def _merge_budget(task: Task, event: BudgetEvent) -> Task:
    # A webhook may set or move the budget of a running task; only a person's
    # resume gives a stopped task a new one.
    if event.budget is None or (task.state in STOPPED and task.budget is not None):
        return task
    return dataclasses.replace(task, budget=event.budget)


def _add_spend(task: Task, event: BudgetEvent) -> Task:
    if event.spent is not None and event.spent > task.spent:
        # Cumulative figures never go backwards: an older, lower one changes nothing.
        return dataclasses.replace(task, spent=event.spent)
    if event.amount is not None and event.amount > 0:
        return dataclasses.replace(task, spent=task.spent + event.amount)
    return task


def _crossed_thresholds(
    task: Task, event: BudgetEvent, policy: Policy, used: Decimal | None
) -> list[Decimal]:
    crossed = [t for t in policy.thresholds if used is not None and used >= t]
    if event.type is EventType.THRESHOLD and event.threshold is not None:
        crossed.append(event.threshold)
    highest_done = max(task.thresholds_alerted, default=Decimal(-1))
    # A threshold at or below one already alerted is covered by that alert.
    return [t for t in crossed if t > highest_done and t < policy.halt_at]


def _quiet_period_over(task: Task, policy: Policy, now: float) -> bool:
    last = task.last_after_halt_alert_at
    return last is None or now - last >= policy.spend_after_halt_quiet_seconds


def _halt_reason(event: BudgetEvent) -> str:
    if event.type is EventType.REACHED:
        return "budget_reached"
    return "limit_reached"


def _resume(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    if task.state not in STOPPED:
        raise Conflict(f"task {task.task_id!r} is {task.state}, not halted", code="not_halted")
    if event.budget is None or event.budget * policy.halt_at <= task.spent:
        raise InvalidEvent(
            f"the new budget must leave room: spent {task.spent} must stay below "
            f"{policy.halt_at} x budget",
            code="budget_not_above_spent",
        )
    resumed = dataclasses.replace(task, budget=event.budget)
    used = resumed.used_fraction or Decimal(0)
    # Thresholds the task is already past under the new budget stay alerted; the rest re-arm.
    alerted = tuple(t for t in policy.thresholds if used >= t)
    resumed = dataclasses.replace(
        resumed,
        state=TaskState.WARNING if alerted else TaskState.ACTIVE,
        thresholds_alerted=alerted,
        halted_at=None,
        last_after_halt_alert_at=None,
        updated_at=now,
    )
    return Transition(resumed, (Alert(AlertKind.RESUMED, Severity.INFO),))
