"""The per-task state machine: pure functions over plain data, time passed in.

active -> warning -> halting -> halted        (any) -> completed
                                halted/halting -- resume (a person) --> active|warning

A forecast (a sender's projection) moves nothing: it only warns a spending task.
A soft budget is a line to warn at, never a limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from .errors import Conflict, CurrencyMismatch, InvalidEvent
from .model import (
    Alert,
    AlertKind,
    BudgetEvent,
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
    return _handler(event)(_known_or_new(task, event, now), event, policy, now)


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


# --- dispatch ----------------------------------------------------------------------

# One handler per event type: (task, event, policy, now) -> what the event makes of the task.
_Handler = Callable[[Task, BudgetEvent, Policy, float], Transition]

# Results about a halt, and a person's resume, are about a task that must already exist.
_NEEDS_A_TASK = (EventType.RESUMED, EventType.HALT_CONFIRMED, EventType.HALT_FAILED)


def _known_or_new(task: Task | None, event: BudgetEvent, now: float) -> Task:
    if task is not None:
        return task
    if event.type in _NEEDS_A_TASK:
        raise Conflict(f"task {event.task_id!r} does not exist", code="unknown_task")
    return new_task(event, now)


def _handler(event: BudgetEvent) -> _Handler:
    # Only members are looked up: a value outside EventType (a plain string, which the types
    # forbid) keeps the usage handling it has always had; tests/test_state.py pins it.
    if isinstance(event.type, EventType):
        return _HANDLERS[event.type]
    return _apply_usage


# --- one handler per event type ------------------------------------------------------


def _apply_forecast(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    """A projection is news, not spend: budget, spent and state stay; a spending task is warned."""
    task = _touched(_merge_details(task, event), now)
    if task.state not in SPENDING:
        return Transition(task)  # already stopped or done: a forecast adds nothing
    return Transition(task, (Alert(AlertKind.FORECAST, Severity.WARNING, forecast=event.forecast),))


def _apply_resume(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    """A person gives a stopped task a new budget with room left under it."""
    task = _merged(task, event)
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


def _apply_halt_confirmed(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    """The halt call went through: a halting task is halted; any other is left as it is."""
    task = _merged(task, event)
    if task.state is not TaskState.HALTING:
        return Transition(task)
    halted = dataclasses.replace(task, state=TaskState.HALTED, halted_at=now, updated_at=now)
    return Transition(halted, (Alert(AlertKind.HALTED, Severity.CRITICAL),))


def _apply_halt_failed(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    """The halt call failed for good: a halting task stays halting and people are told."""
    task = _merged(task, event)
    if task.state is not TaskState.HALTING:
        return Transition(task)
    return Transition(_touched(task, now), (Alert(AlertKind.HALT_FAILED, Severity.CRITICAL),))


def _apply_completed(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    """The task is done, whatever state it was in."""
    done = dataclasses.replace(_merged(task, event), state=TaskState.COMPLETED, updated_at=now)
    return Transition(done)


def _apply_usage(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    """Created, spend, a threshold or the limit reported: count the spend, then warn or halt."""
    merged = _merged(task, event)
    task = _add_spend(merged, event)
    if task.state is TaskState.COMPLETED:
        return Transition(_touched(task, now))
    if task.state in STOPPED:
        return _spend_while_stopped(task, task.spent > merged.spent, policy, now)
    return _spend_while_spending(task, event, policy, now)


_HANDLERS: Mapping[EventType, _Handler] = {
    EventType.CREATED: _apply_usage,
    EventType.SPEND: _apply_usage,
    EventType.THRESHOLD: _apply_usage,
    EventType.REACHED: _apply_usage,
    EventType.COMPLETED: _apply_completed,
    EventType.RESUMED: _apply_resume,
    EventType.HALT_CONFIRMED: _apply_halt_confirmed,
    EventType.HALT_FAILED: _apply_halt_failed,
    EventType.FORECAST: _apply_forecast,
}


# --- usage: a stopped task, a spending task -------------------------------------------


def _spend_while_stopped(task: Task, spent_more: bool, policy: Policy, now: float) -> Transition:
    # A stopped task never re-initiates a halt; more spend owes one alert per quiet period.
    if not (spent_more and _quiet_period_over(task, policy, now)):
        return Transition(_touched(task, now))
    alerted = dataclasses.replace(task, last_after_halt_alert_at=now, updated_at=now)
    return Transition(alerted, (Alert(AlertKind.SPEND_AFTER_HALT, Severity.CRITICAL),))


def _spend_while_spending(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    used = task.used_fraction
    reached = _limit_reached(task, event, policy, used)
    crossed = _crossed_thresholds(task, event, policy, used)
    if crossed:
        task = _mark_alerted(task, crossed)
    if reached:
        return _halt(task, event, policy, now)
    if crossed or (event.soft_budget is not None and task.budget is None):
        # Without a budget a soft budget is no fraction to remember: each crossing reported warns.
        return Transition(_touched(task, now), (_warning(event, max(crossed, default=None)),))
    return Transition(_touched(task, now))


def _halt(task: Task, event: BudgetEvent, policy: Policy, now: float) -> Transition:
    """The limit is reached: owe the halt call, or halt at once when there is none to make."""
    if policy.halt_calls_out:
        halting = dataclasses.replace(task, state=TaskState.HALTING, updated_at=now)
        return Transition(halting, (Halt(reason=_halt_reason(event)),))
    halted = dataclasses.replace(task, state=TaskState.HALTED, halted_at=now, updated_at=now)
    return Transition(halted, (Alert(AlertKind.HALTED, Severity.CRITICAL),))


# --- shared checks -------------------------------------------------------------------


def _touched(task: Task, now: float) -> Task:
    return dataclasses.replace(task, updated_at=now)


def _merged(task: Task, event: BudgetEvent) -> Task:
    return _merge_budget(_merge_details(task, event), event)


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


def _reported_threshold(event: BudgetEvent) -> Decimal | None:
    """The fraction a task.budget_threshold event reports; None for any other event."""
    return event.threshold if event.type is EventType.THRESHOLD else None


def _limit_reached(task: Task, event: BudgetEvent, policy: Policy, used: Decimal | None) -> bool:
    if event.type is EventType.REACHED or (used is not None and used >= policy.halt_at):
        return True
    # A budget of 0 has no used fraction, yet any spend at all is over it.
    if task.budget == 0 and task.spent > 0:
        return True
    # A soft budget is a line to warn at: only the spend itself can make it a halt.
    reported = _reported_threshold(event)
    return reported is not None and event.soft_budget is None and reported >= policy.halt_at


def _crossed_thresholds(
    task: Task, event: BudgetEvent, policy: Policy, used: Decimal | None
) -> list[Decimal]:
    crossed = [t for t in policy.thresholds if used is not None and used >= t]
    reported = _reported_threshold(event)
    if reported is not None:
        crossed.append(reported)
    highest_done = max(task.thresholds_alerted, default=Decimal(-1))
    # A threshold at or below one already alerted is covered by that alert.
    return [t for t in crossed if t > highest_done and t < policy.halt_at]


def _mark_alerted(task: Task, crossed: list[Decimal]) -> Task:
    alerted = tuple(sorted({*task.thresholds_alerted, *crossed}))
    return dataclasses.replace(task, thresholds_alerted=alerted, state=TaskState.WARNING)


def _quiet_period_over(task: Task, policy: Policy, now: float) -> bool:
    last = task.last_after_halt_alert_at
    return last is None or now - last >= policy.spend_after_halt_quiet_seconds


def _halt_reason(event: BudgetEvent) -> str:
    if event.type is EventType.REACHED:
        return "budget_reached"
    return "limit_reached"


def _warning(event: BudgetEvent, threshold: Decimal | None) -> Alert:
    if event.soft_budget is not None:
        return Alert(
            AlertKind.SOFT_BUDGET, Severity.WARNING, threshold, soft_budget=event.soft_budget
        )
    return Alert(AlertKind.THRESHOLD, Severity.WARNING, threshold=threshold)
