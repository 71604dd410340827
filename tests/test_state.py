"""The per-task state machine: pure transitions, time passed in."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from receiver import state
from receiver.errors import Conflict, CurrencyMismatch, InvalidEvent
from receiver.model import (
    INTERNAL_TYPES,
    Alert,
    AlertKind,
    BudgetEvent,
    Effect,
    EventType,
    Forecast,
    Halt,
    Severity,
    Task,
    TaskState,
)
from receiver.state import GateReason, Policy, gate, transition

D = Decimal
T0 = 1_764_000_000.0
NOW = T0 + 100.0
CALLS_OUT = Policy(halt_calls_out=True)
LOCAL = Policy(halt_calls_out=False)
ALL_THRESHOLDS = (D("0.5"), D("0.8"), D("0.9"))

THRESHOLD_50 = Alert(AlertKind.THRESHOLD, Severity.WARNING, threshold=D("0.5"))
THRESHOLD_80 = Alert(AlertKind.THRESHOLD, Severity.WARNING, threshold=D("0.8"))
THRESHOLD_90 = Alert(AlertKind.THRESHOLD, Severity.WARNING, threshold=D("0.9"))
HALTED = Alert(AlertKind.HALTED, Severity.CRITICAL)
HALT_FAILED = Alert(AlertKind.HALT_FAILED, Severity.CRITICAL)
SPEND_AFTER_HALT = Alert(AlertKind.SPEND_AFTER_HALT, Severity.CRITICAL)
RESUMED = Alert(AlertKind.RESUMED, Severity.INFO)
# LiteLLM's projection: spend will pass the soft budget of 56 around the 28th.
PROJECTION = Forecast(D("56"), D("130"), exceeds_on="2026-11-28", spent=D("60"), soft=True)
FORECAST = Alert(AlertKind.FORECAST, Severity.WARNING, forecast=PROJECTION)


def make_task(
    state: TaskState = TaskState.ACTIVE,
    spent: str = "0",
    budget: str | None = "100",
    alerted: tuple[Decimal, ...] = (),
    **kw: Any,
) -> Task:
    return Task(
        task_id="t-42",
        source="budget",
        state=state,
        spent=D(spent),
        created_at=T0,
        updated_at=T0,
        budget=None if budget is None else D(budget),
        currency="USD",
        thresholds_alerted=alerted,
        **kw,
    )


def ev(type_: EventType, n: int = 1, **kw: Any) -> BudgetEvent:
    for name in ("budget", "spent", "amount", "threshold", "soft_budget"):
        if isinstance(kw.get(name), str):
            kw[name] = D(kw[name])
    return BudgetEvent(
        event_id=f"evt-{n}",
        source="budget",
        type=type_,
        task_id="t-42",
        occurred_at=NOW,
        **kw,
    )


# One representative task in each state, budget 100 USD.
TASKS = {
    "active": make_task(TaskState.ACTIVE, spent="10"),
    "warning": make_task(TaskState.WARNING, spent="60", alerted=(D("0.5"),)),
    "halting": make_task(TaskState.HALTING, spent="100", alerted=ALL_THRESHOLDS),
    "halted": make_task(TaskState.HALTED, spent="100", alerted=ALL_THRESHOLDS, halted_at=T0),
    "completed": make_task(TaskState.COMPLETED, spent="40"),
}

EVENTS = {
    "created": ev(EventType.CREATED, budget="100", currency="USD"),
    "spend_spent": ev(EventType.SPEND, spent="95"),
    "spend_amount": ev(EventType.SPEND, amount="50"),
    "threshold": ev(EventType.THRESHOLD, threshold="0.8"),
    "reached": ev(EventType.REACHED),
    "completed": ev(EventType.COMPLETED),
    "resumed": ev(EventType.RESUMED, budget="200", actor="ops@example.com", reason="raise"),
    "halt_confirmed": ev(EventType.HALT_CONFIRMED),
    "halt_failed": ev(EventType.HALT_FAILED),
    # The figures a forecast carries are the sender's projection: none of them is applied.
    "forecast": ev(EventType.FORECAST, budget="56", spent="130", forecast=PROJECTION),
}

S = TaskState
# (task, event) -> (new state, spent, effects); a pair of them when halt_calls_out matters
# (first halt_calls_out=True, then False); an exception class for refusals.
Expected = tuple[TaskState, str, tuple[Effect, ...]]
LIMIT_CALLS_OUT = (S.HALTING, (Halt("limit_reached"),))
REACHED_CALLS_OUT = (S.HALTING, (Halt("budget_reached"),))
HALTED_LOCALLY = (S.HALTED, (HALTED,))

TABLE: dict[tuple[str, str], Any] = {
    # active, spent 10 of 100, nothing alerted
    ("active", "created"): (S.ACTIVE, "10", ()),
    ("active", "spend_spent"): (S.WARNING, "95", (THRESHOLD_90,)),
    ("active", "spend_amount"): (S.WARNING, "60", (THRESHOLD_50,)),
    ("active", "threshold"): (S.WARNING, "10", (THRESHOLD_80,)),
    ("active", "reached"): ({True: REACHED_CALLS_OUT, False: HALTED_LOCALLY}, "10"),
    ("active", "completed"): (S.COMPLETED, "10", ()),
    ("active", "resumed"): Conflict,
    ("active", "halt_confirmed"): (S.ACTIVE, "10", ()),
    ("active", "halt_failed"): (S.ACTIVE, "10", ()),
    ("active", "forecast"): (S.ACTIVE, "10", (FORECAST,)),
    # warning, spent 60 of 100, 0.5 alerted
    ("warning", "created"): (S.WARNING, "60", ()),
    ("warning", "spend_spent"): (S.WARNING, "95", (THRESHOLD_90,)),
    ("warning", "spend_amount"): ({True: LIMIT_CALLS_OUT, False: HALTED_LOCALLY}, "110"),
    ("warning", "threshold"): (S.WARNING, "60", (THRESHOLD_80,)),
    ("warning", "reached"): ({True: REACHED_CALLS_OUT, False: HALTED_LOCALLY}, "60"),
    ("warning", "completed"): (S.COMPLETED, "60", ()),
    ("warning", "resumed"): Conflict,
    ("warning", "halt_confirmed"): (S.WARNING, "60", ()),
    ("warning", "halt_failed"): (S.WARNING, "60", ()),
    ("warning", "forecast"): (S.WARNING, "60", (FORECAST,)),
    # halting, spent 100 of 100, halt call owed
    ("halting", "created"): (S.HALTING, "100", ()),
    ("halting", "spend_spent"): (S.HALTING, "100", ()),  # 95 < 100: late, changes nothing
    ("halting", "spend_amount"): (S.HALTING, "150", (SPEND_AFTER_HALT,)),
    ("halting", "threshold"): (S.HALTING, "100", ()),
    ("halting", "reached"): (S.HALTING, "100", ()),  # never a second halt
    ("halting", "completed"): (S.COMPLETED, "100", ()),
    ("halting", "resumed"): (S.WARNING, "100", (RESUMED,)),
    ("halting", "halt_confirmed"): (S.HALTED, "100", (HALTED,)),
    ("halting", "halt_failed"): (S.HALTING, "100", (HALT_FAILED,)),
    ("halting", "forecast"): (S.HALTING, "100", ()),
    # halted, spent 100 of 100
    ("halted", "created"): (S.HALTED, "100", ()),
    ("halted", "spend_spent"): (S.HALTED, "100", ()),
    ("halted", "spend_amount"): (S.HALTED, "150", (SPEND_AFTER_HALT,)),
    ("halted", "threshold"): (S.HALTED, "100", ()),
    ("halted", "reached"): (S.HALTED, "100", ()),
    ("halted", "completed"): (S.COMPLETED, "100", ()),
    ("halted", "resumed"): (S.WARNING, "100", (RESUMED,)),
    ("halted", "halt_confirmed"): (S.HALTED, "100", ()),
    ("halted", "halt_failed"): (S.HALTED, "100", ()),
    ("halted", "forecast"): (S.HALTED, "100", ()),
    # completed, spent 40 of 100: spend is still counted, nothing else happens
    ("completed", "created"): (S.COMPLETED, "40", ()),
    ("completed", "spend_spent"): (S.COMPLETED, "95", ()),
    ("completed", "spend_amount"): (S.COMPLETED, "90", ()),
    ("completed", "threshold"): (S.COMPLETED, "40", ()),
    ("completed", "reached"): (S.COMPLETED, "40", ()),
    ("completed", "completed"): (S.COMPLETED, "40", ()),
    ("completed", "resumed"): Conflict,
    ("completed", "halt_confirmed"): (S.COMPLETED, "40", ()),
    ("completed", "halt_failed"): (S.COMPLETED, "40", ()),
    ("completed", "forecast"): (S.COMPLETED, "40", ()),
}


def test_table_covers_every_state_and_event() -> None:
    """The transition table below has a row for every state x every event type."""
    assert set(TABLE) == {(s, e) for s in TASKS for e in EVENTS}
    assert {t.state for t in TASKS.values()} == set(TaskState)
    assert {e.type for e in EVENTS.values()} == set(EventType)


@pytest.mark.parametrize("halt_calls_out", [True, False], ids=["calls_out", "local"])
@pytest.mark.parametrize(("state", "event"), sorted(TABLE))
def test_transition_table(state: str, event: str, halt_calls_out: bool) -> None:
    """Every state x event gives the documented new state, spend and owed effects."""
    policy = Policy(halt_calls_out=halt_calls_out)
    expected = TABLE[(state, event)]
    if isinstance(expected, type):
        with pytest.raises(expected):
            transition(TASKS[state], EVENTS[event], policy, NOW)
        return
    if isinstance(expected[0], dict):
        new_state, effects = expected[0][halt_calls_out]
        spent = expected[1]
    else:
        new_state, spent, effects = expected
    result = transition(TASKS[state], EVENTS[event], policy, NOW)
    assert result.task.state is new_state
    assert result.task.spent == D(spent)
    assert result.effects == effects
    assert result.task.updated_at in (NOW, T0)


@pytest.mark.parametrize(
    "event",
    [
        ev(EventType.SPEND, spent="100"),
        ev(EventType.SPEND, spent="130"),
        ev(EventType.SPEND, amount="90"),
        ev(EventType.REACHED),
        ev(EventType.THRESHOLD, threshold="1"),
        ev(EventType.SPEND, spent="50", budget="50"),
    ],
    ids=["spent_at_limit", "spent_over_limit", "amount", "reached", "threshold_1", "budget_cut"],
)
def test_reaching_the_limit_with_a_halt_url_owes_one_halt_call(event: BudgetEvent) -> None:
    """With a halt URL, reaching the limit moves to halting and owes exactly one Halt."""
    result = transition(make_task(spent="10"), event, CALLS_OUT, NOW)
    assert result.task.state is TaskState.HALTING
    assert [e for e in result.effects if isinstance(e, Halt)] == list(result.effects)
    assert len(result.effects) == 1
    assert result.task.halted_at is None


@pytest.mark.parametrize(
    "event",
    [
        ev(EventType.SPEND, spent="100"),
        ev(EventType.SPEND, amount="90"),
        ev(EventType.REACHED),
        ev(EventType.THRESHOLD, threshold="1"),
    ],
    ids=["spent", "amount", "reached", "threshold_1"],
)
def test_reaching_the_limit_without_a_halt_url_halts_locally(event: BudgetEvent) -> None:
    """Without a halt URL, reaching the limit halts at once with one critical HALTED alert."""
    result = transition(make_task(spent="10"), event, LOCAL, NOW)
    assert result.task.state is TaskState.HALTED
    assert result.task.halted_at == NOW
    assert result.effects == (HALTED,)


def test_halt_reason_names_what_triggered_it() -> None:
    """The halt call says whether the sender declared the limit or spend reached it."""
    by_spend = transition(make_task(), ev(EventType.SPEND, spent="100"), CALLS_OUT, NOW)
    by_sender = transition(make_task(), ev(EventType.REACHED), CALLS_OUT, NOW)
    assert by_spend.effects == (Halt("limit_reached"),)
    assert by_sender.effects == (Halt("budget_reached"),)


def test_halt_confirmed_moves_halting_to_halted_with_time() -> None:
    """A confirmed halt call makes the task halted, stamped with the time passed in."""
    halting = transition(make_task(), ev(EventType.REACHED), CALLS_OUT, NOW).task
    result = transition(halting, ev(EventType.HALT_CONFIRMED, 2), CALLS_OUT, NOW + 5)
    assert result.task.state is TaskState.HALTED
    assert result.task.halted_at == NOW + 5
    assert result.task.updated_at == NOW + 5
    assert result.effects == (HALTED,)


@pytest.mark.parametrize(
    ("start", "spent", "alert"),
    [
        ("0", "55", THRESHOLD_50),
        ("0", "85", THRESHOLD_80),
        ("0", "95", THRESHOLD_90),
        ("0", "99.99", THRESHOLD_90),
        ("55", "95", THRESHOLD_90),
        ("55", "80", THRESHOLD_80),
    ],
)
def test_jump_over_several_thresholds_sends_one_alert_for_the_highest(
    start: str, spent: str, alert: Alert
) -> None:
    """One event that jumps over several thresholds owes one alert, for the highest."""
    before = transition(make_task(), ev(EventType.SPEND, spent=start), LOCAL, T0).task
    result = transition(before, ev(EventType.SPEND, 2, spent=spent), LOCAL, NOW)
    assert result.effects == (alert,)
    assert result.task.state is TaskState.WARNING
    assert alert.threshold in result.task.thresholds_alerted
    assert max(result.task.thresholds_alerted) == alert.threshold


def test_jump_over_thresholds_marks_the_skipped_ones_alerted() -> None:
    """Thresholds jumped over count as alerted, so they never alert later."""
    result = transition(make_task(), ev(EventType.SPEND, spent="95"), LOCAL, NOW)
    assert result.task.thresholds_alerted == ALL_THRESHOLDS


def test_each_threshold_alerts_once() -> None:
    """Spend creeping past a threshold, and staying past it, alerts for it once only."""
    task = make_task()
    seen: list[Effect] = []
    for n, spent in enumerate(["40", "50", "51", "55", "79", "80", "80", "85", "89.99"], 1):
        result = transition(task, ev(EventType.SPEND, n, spent=spent), LOCAL, NOW + n)
        task = result.task
        seen.extend(result.effects)
    assert seen == [THRESHOLD_50, THRESHOLD_80]


def test_sender_threshold_event_alerts_once() -> None:
    """A repeated task.budget_threshold for the same fraction alerts once."""
    task = make_task()
    first = transition(task, ev(EventType.THRESHOLD, threshold="0.8"), LOCAL, NOW)
    again = transition(first.task, ev(EventType.THRESHOLD, 2, threshold="0.8"), LOCAL, NOW)
    lower = transition(again.task, ev(EventType.THRESHOLD, 3, threshold="0.5"), LOCAL, NOW)
    assert first.effects == (THRESHOLD_80,)
    assert again.effects == ()
    assert lower.effects == ()


def test_spend_below_first_threshold_owes_nothing() -> None:
    """Ordinary spend below the first threshold stays active and owes no alert."""
    task = transition(None, ev(EventType.CREATED, budget="100", currency="USD"), LOCAL, T0).task
    for n, spent in enumerate(["1", "10", "49.99"], 2):
        result = transition(task, ev(EventType.SPEND, n, spent=spent), LOCAL, NOW)
        assert result.effects == ()
        assert result.task.state is TaskState.ACTIVE
        task = result.task


@pytest.mark.parametrize("halt_calls_out", [True, False])
def test_lower_cumulative_spent_arriving_late_changes_nothing(halt_calls_out: bool) -> None:
    """An older, lower cumulative figure arriving late is ignored: spend never goes back."""
    policy = Policy(halt_calls_out=halt_calls_out)
    task = transition(make_task(), ev(EventType.SPEND, spent="85"), policy, T0).task
    late = transition(task, ev(EventType.SPEND, 2, spent="30"), policy, NOW)
    assert late.effects == ()
    assert late.task.spent == D("85")
    assert dataclasses.replace(late.task, updated_at=task.updated_at) == task


def test_amount_increments_add_up() -> None:
    """task.spend with amount adds to the spend so far."""
    task = make_task()
    for n, amount in enumerate(["0.10", "0.20", "1.70"], 1):
        task = transition(task, ev(EventType.SPEND, n, amount=amount), LOCAL, NOW).task
    assert task.spent == D("2.00")


@pytest.mark.parametrize("state", [TaskState.HALTED, TaskState.HALTING])
def test_spend_after_halt_is_counted_and_alerts_once_per_quiet_period(state: TaskState) -> None:
    """A stopped task keeps counting spend, owes one spend_after_halt alert per quiet period."""
    policy = Policy(halt_calls_out=True, spend_after_halt_quiet_seconds=3600)
    task = make_task(state, spent="100", alerted=ALL_THRESHOLDS, halted_at=T0)

    first = transition(task, ev(EventType.SPEND, 1, spent="110"), policy, NOW)
    assert first.effects == (SPEND_AFTER_HALT,)
    assert first.task.spent == D("110")
    assert first.task.state is state
    assert first.task.last_after_halt_alert_at == NOW

    quiet = transition(first.task, ev(EventType.SPEND, 2, amount="5"), policy, NOW + 3599)
    assert quiet.effects == ()
    assert quiet.task.spent == D("115")

    reached = transition(quiet.task, ev(EventType.REACHED, 3), policy, NOW + 3599.5)
    assert reached.effects == ()

    later = transition(reached.task, ev(EventType.SPEND, 4, spent="120"), policy, NOW + 3600)
    assert later.effects == (SPEND_AFTER_HALT,)
    assert later.task.spent == D("120")
    assert later.task.state is state


def test_stopped_task_without_new_spend_owes_nothing() -> None:
    """Repeats of the same or a lower figure on a halted task raise no alert."""
    task = make_task(TaskState.HALTED, spent="100", alerted=ALL_THRESHOLDS, halted_at=T0)
    for n, spent in enumerate(["100", "90", "100"], 1):
        result = transition(task, ev(EventType.SPEND, n, spent=spent), LOCAL, NOW)
        assert result.effects == ()
        task = result.task


@pytest.mark.parametrize("halt_calls_out", [True, False])
def test_a_runaway_never_starts_a_second_halt(halt_calls_out: bool) -> None:
    """However many spend and limit events follow, only the first limit owes a halt."""
    policy = Policy(halt_calls_out=halt_calls_out)
    task = make_task()
    effects: list[Effect] = []
    events = [ev(EventType.SPEND, n, spent=str(n * 25)) for n in range(1, 10)]
    events += [ev(EventType.REACHED, 20), ev(EventType.THRESHOLD, 21, threshold="1")]
    for n, event in enumerate(events):
        result = transition(task, event, policy, NOW + n)
        task = result.task
        effects.extend(result.effects)
    halts = [e for e in effects if isinstance(e, Halt) or e == HALTED]
    assert len(halts) == 1


def test_stopped_task_budget_is_not_moved_by_a_webhook() -> None:
    """Only a person's resume gives a stopped task a new budget, not a webhook."""
    task = make_task(TaskState.HALTED, spent="100", alerted=ALL_THRESHOLDS, halted_at=T0)
    result = transition(task, ev(EventType.SPEND, spent="100", budget="1000"), LOCAL, NOW)
    assert result.task.budget == D("100")
    assert result.task.state is TaskState.HALTED


def test_running_task_budget_can_be_raised_by_a_webhook() -> None:
    """A running task's budget follows the sender's latest figure."""
    result = transition(make_task(spent="10"), ev(EventType.SPEND, budget="500"), LOCAL, NOW)
    assert result.task.budget == D("500")


def test_cutting_a_running_budget_below_spend_halts() -> None:
    """A webhook lowering the budget below what was already spent halts the task."""
    result = transition(make_task(spent="60"), ev(EventType.CREATED, budget="50"), LOCAL, NOW)
    assert result.task.state is TaskState.HALTED
    assert result.effects == (HALTED,)


# --- resume -------------------------------------------------------------------------


def _halted(spent: str = "100") -> Task:
    return make_task(
        TaskState.HALTED,
        spent=spent,
        alerted=ALL_THRESHOLDS,
        halted_at=T0,
        last_after_halt_alert_at=T0 + 10,
    )


@pytest.mark.parametrize(
    ("budget", "state", "alerted"),
    [
        ("1000", TaskState.ACTIVE, ()),
        ("201", TaskState.ACTIVE, ()),
        ("200", TaskState.WARNING, (D("0.5"),)),
        ("125", TaskState.WARNING, (D("0.5"), D("0.8"))),
        ("110", TaskState.WARNING, ALL_THRESHOLDS),
        ("100.01", TaskState.WARNING, ALL_THRESHOLDS),
    ],
)
def test_resume_rearms_thresholds_above_the_new_used_fraction(
    budget: str, state: TaskState, alerted: tuple[Decimal, ...]
) -> None:
    """Resume keeps thresholds already passed under the new budget alerted, re-arms the rest."""
    event = ev(EventType.RESUMED, budget=budget, actor="ops", reason="more budget")
    result = transition(_halted(), event, LOCAL, NOW)
    assert result.task.state is state
    assert result.task.thresholds_alerted == alerted
    assert result.task.budget == D(budget)
    assert result.task.spent == D("100")
    assert result.task.halted_at is None
    assert result.task.last_after_halt_alert_at is None
    assert result.task.updated_at == NOW
    assert result.effects == (RESUMED,)


def test_resumed_task_alerts_again_for_rearmed_thresholds_and_halts_again() -> None:
    """After resume, re-armed thresholds alert again and the new limit halts again."""
    resumed = transition(_halted(), ev(EventType.RESUMED, budget="1000"), CALLS_OUT, NOW).task
    assert resumed.state is TaskState.ACTIVE
    crossed = transition(resumed, ev(EventType.SPEND, 2, spent="850"), CALLS_OUT, NOW + 1)
    assert crossed.effects == (THRESHOLD_80,)
    limit = transition(crossed.task, ev(EventType.SPEND, 3, spent="1000"), CALLS_OUT, NOW + 2)
    assert limit.effects == (Halt("limit_reached"),)
    assert limit.task.state is TaskState.HALTING


def test_resume_of_a_halting_task_works() -> None:
    """A task whose halt call is still owed can be resumed by a person."""
    task = make_task(TaskState.HALTING, spent="100", alerted=ALL_THRESHOLDS)
    result = transition(task, ev(EventType.RESUMED, budget="400"), CALLS_OUT, NOW)
    assert result.task.state is TaskState.ACTIVE
    assert result.effects == (RESUMED,)


@pytest.mark.parametrize("budget", [None, "0", "50", "99.99", "100", "100.00"])
def test_resume_needs_a_budget_above_the_spend(budget: str | None) -> None:
    """Resume with no budget or one at or below the spend is refused (422)."""
    with pytest.raises(InvalidEvent) as info:
        transition(_halted(), ev(EventType.RESUMED, budget=budget), LOCAL, NOW)
    assert info.value.code == "budget_not_above_spent"
    assert info.value.status == 422


@pytest.mark.parametrize("state", [TaskState.ACTIVE, TaskState.WARNING, TaskState.COMPLETED])
def test_resume_of_a_task_that_is_not_stopped_is_a_conflict(state: TaskState) -> None:
    """Resuming a task that is not halted or halting is 409 not_halted."""
    with pytest.raises(Conflict) as info:
        transition(make_task(state, spent="10"), ev(EventType.RESUMED, budget="500"), LOCAL, NOW)
    assert info.value.code == "not_halted"
    assert info.value.status == 409


@pytest.mark.parametrize(
    "type_", [EventType.RESUMED, EventType.HALT_CONFIRMED, EventType.HALT_FAILED]
)
def test_internal_events_for_an_unknown_task_are_a_conflict(type_: EventType) -> None:
    """Resume or halt results for a task never seen are refused, not invented."""
    with pytest.raises(Conflict) as info:
        transition(None, ev(type_, budget="500"), LOCAL, NOW)
    assert info.value.code == "unknown_task"


def test_every_event_type_has_a_handler() -> None:
    """transition dispatches on the event type: every EventType has its own entry in the
    table, so a new type cannot fall through to another's handling unnoticed."""
    assert set(state._HANDLERS) == set(EventType)
    assert all(callable(handler) for handler in state._HANDLERS.values())


# A type outside EventType is refused by the type checker, never made by a source; what
# transition does with one is pinned here so the dispatch cannot change it unnoticed.
# No error: the value is applied like any event without handling of its own (like task.spend),
# and a plain string equal to a member's value is not that member.
OUTSIDE_TYPES = ["task.unknown", *(t.value for t in EventType)]


@pytest.mark.parametrize("halt_calls_out", [True, False], ids=["calls_out", "local"])
@pytest.mark.parametrize("type_", OUTSIDE_TYPES)
@pytest.mark.parametrize("state", sorted(TASKS))
def test_a_type_outside_event_type_is_applied_like_spend(
    state: str, type_: str, halt_calls_out: bool
) -> None:
    """An event whose type is no EventType member gives what a task.spend would, no error."""
    policy = Policy(halt_calls_out=halt_calls_out)
    for name in ("spend_spent", "spend_amount"):
        spend = dataclasses.replace(EVENTS[name], threshold=D("0.8"), soft_budget=D("50"))
        outside = dataclasses.replace(spend, **{"type": type_})
        assert type(outside.type) is str
        expected = transition(TASKS[state], spend, policy, NOW)
        assert transition(TASKS[state], outside, policy, NOW) == expected


@pytest.mark.parametrize("type_", OUTSIDE_TYPES)
def test_a_type_outside_event_type_for_an_unknown_task(type_: str) -> None:
    """For a task never seen, a plain string equal to a resume or halt result's value is
    refused as those are; any other is applied like task.spend to a new task."""
    outside = dataclasses.replace(EVENTS["spend_spent"], **{"type": type_})
    if type_ in INTERNAL_TYPES:  # resume, halt confirmed, halt failed
        with pytest.raises(Conflict) as info:
            transition(None, outside, LOCAL, NOW)
        assert info.value.code == "unknown_task"
        return
    expected = transition(None, EVENTS["spend_spent"], LOCAL, NOW)
    assert transition(None, outside, LOCAL, NOW) == expected


# --- first events, details, currency ----------------------------------------------------


def test_created_registers_an_active_task() -> None:
    """task.created makes an active task with its budget, currency and names, owing nothing."""
    event = ev(
        EventType.CREATED,
        budget="100.00",
        currency="USD",
        task_name="Purchase via AI Agent",
        agent_id="agent-7",
    )
    result = transition(None, event, LOCAL, NOW)
    task = result.task
    assert result.effects == ()
    assert task.state is TaskState.ACTIVE
    assert (task.task_id, task.source) == ("t-42", "budget")
    assert (task.budget, task.spent, task.currency) == (D("100.00"), D(0), "USD")
    assert (task.task_name, task.agent_id) == ("Purchase via AI Agent", "agent-7")
    assert task.created_at == task.updated_at == NOW


def test_spend_before_created_is_counted_and_alerts_once_budget_known() -> None:
    """Spend for an unknown task is kept; the budget arriving later triggers the alert owed."""
    first = transition(None, ev(EventType.SPEND, spent="85"), LOCAL, T0)
    assert first.effects == ()
    assert first.task.budget is None
    created = ev(EventType.CREATED, 2, budget="100", currency="USD")
    second = transition(first.task, created, LOCAL, NOW)
    assert second.effects == (THRESHOLD_80,)
    assert second.task.state is TaskState.WARNING


def test_details_missing_from_a_later_event_are_kept() -> None:
    """An event without name, agent or currency leaves the known ones in place."""
    task = dataclasses.replace(make_task(), task_name="n", agent_id="a")
    result = transition(task, ev(EventType.SPEND, spent="1"), LOCAL, NOW)
    assert (result.task.task_name, result.task.agent_id, result.task.currency) == ("n", "a", "USD")


@pytest.mark.parametrize(
    "type_", [EventType.SPEND, EventType.CREATED, EventType.COMPLETED, EventType.REACHED]
)
def test_currency_mismatch_is_refused(type_: EventType) -> None:
    """An event in another currency than the task's is 422 currency_mismatch."""
    event = ev(type_, spent="1", budget="100", currency="EUR")
    with pytest.raises(CurrencyMismatch) as info:
        transition(make_task(), event, LOCAL, NOW)
    assert info.value.code == "currency_mismatch"
    assert info.value.status == 422
    assert isinstance(info.value, InvalidEvent)


def test_same_currency_and_first_currency_are_accepted() -> None:
    """The task's own currency is fine, and a task without one adopts the first it sees."""
    same = transition(make_task(), ev(EventType.SPEND, spent="1", currency="USD"), LOCAL, NOW)
    assert same.task.currency == "USD"
    bare = dataclasses.replace(make_task(), currency=None)
    adopted = transition(bare, ev(EventType.SPEND, spent="1", currency="EUR"), LOCAL, NOW)
    assert adopted.task.currency == "EUR"


def test_transition_is_pure() -> None:
    """Same task, event and time give the same result, and the input task is untouched."""
    task = make_task(spent="10")
    snapshot = dataclasses.replace(task)
    event = ev(EventType.SPEND, spent="95")
    assert transition(task, event, LOCAL, NOW) == transition(task, event, LOCAL, NOW)
    assert task == snapshot


def test_custom_policy_thresholds_and_halt_at() -> None:
    """A policy with its own thresholds and a halt fraction below 1 is honoured."""
    policy = Policy(thresholds=(D("0.25"), D("0.75")), halt_at=D("0.9"), halt_calls_out=True)
    task = make_task()
    a = transition(task, ev(EventType.SPEND, 1, spent="30"), policy, NOW)
    assert a.effects == (Alert(AlertKind.THRESHOLD, Severity.WARNING, threshold=D("0.25")),)
    b = transition(a.task, ev(EventType.SPEND, 2, spent="80"), policy, NOW)
    assert b.effects == (Alert(AlertKind.THRESHOLD, Severity.WARNING, threshold=D("0.75")),)
    c = transition(b.task, ev(EventType.SPEND, 3, spent="90"), policy, NOW)
    assert c.effects == (Halt("limit_reached"),)


def test_zero_budget_halts_on_any_spend() -> None:
    """A task with a budget of 0 may not spend at all: the first spend halts it."""
    task = make_task(budget="0")
    assert transition(task, ev(EventType.SPEND, spent="0"), LOCAL, NOW).effects == ()
    result = transition(task, ev(EventType.SPEND, spent="0.01"), LOCAL, NOW)
    assert result.task.state is TaskState.HALTED
    assert result.effects == (HALTED,)


# --- forecasts and soft budgets (what LiteLLM really sends) --------------------------


@pytest.mark.parametrize("state", sorted(TASKS))
def test_a_forecast_never_changes_budget_spend_or_state(state: str) -> None:
    """A projection past a (soft) budget is news: budget, spent, thresholds and state stay."""
    before = TASKS[state]
    result = transition(before, EVENTS["forecast"], CALLS_OUT, NOW)
    assert (result.task.budget, result.task.spent, result.task.state) == (
        before.budget, before.spent, before.state,
    )  # fmt: skip
    assert result.task.thresholds_alerted == before.thresholds_alerted
    assert not any(isinstance(e, Halt) for e in result.effects)


def test_a_forecast_for_a_new_task_warns_and_sets_no_budget() -> None:
    """LiteLLM's projected_limit_exceeded (or its relabelled budget_crossed) for a key never
    seen: one forecast warning, and the soft budget it carries does not become the budget."""
    result = transition(None, EVENTS["forecast"], LOCAL, NOW)
    assert result.task.budget is None and result.task.spent == 0
    assert result.task.state is TaskState.ACTIVE
    assert result.effects == (FORECAST,)


def test_a_forecast_past_the_limit_does_not_halt_and_later_spend_uses_the_real_budget() -> None:
    """A task with a real budget of 100 hears a projection against a soft budget of 56 with
    spend already past 56: no halt; real spend of 60 is 60 % of 100, not a crossed limit."""
    task = make_task(spent="40")
    after = transition(task, EVENTS["forecast"], CALLS_OUT, NOW).task
    assert after.budget == D("100") and after.state is TaskState.ACTIVE
    spend = transition(after, ev(EventType.SPEND, 2, spent="60"), CALLS_OUT, NOW + 1)
    assert spend.task.state is TaskState.WARNING and spend.effects == (THRESHOLD_50,)


def test_soft_budget_crossing_warns_as_a_soft_budget() -> None:
    """Spend past a soft budget of 50 (of 100) owes one soft_budget warning that names it."""
    event = ev(EventType.THRESHOLD, spent="51", threshold="0.5", soft_budget="50")
    result = transition(make_task(spent="10"), event, CALLS_OUT, NOW)
    assert result.task.state is TaskState.WARNING
    assert result.effects == (
        Alert(AlertKind.SOFT_BUDGET, Severity.WARNING, D("0.5"), soft_budget=D("50")),
    )
    again = transition(result.task, dataclasses.replace(event, event_id="e-2"), CALLS_OUT, NOW)
    assert again.effects == ()  # the same crossing is not told twice


def test_soft_budget_at_or_over_the_budget_never_halts_by_itself() -> None:
    """A soft budget of 100 on a budget of 100 is a fraction of 1, yet spend of 60 is no halt."""
    event = ev(EventType.THRESHOLD, spent="60", threshold="1", soft_budget="100")
    result = transition(make_task(spent="10"), event, CALLS_OUT, NOW)
    assert result.task.state is TaskState.WARNING
    assert result.effects == (
        Alert(AlertKind.SOFT_BUDGET, Severity.WARNING, D("0.5"), soft_budget=D("100")),
    )


def test_soft_budget_without_a_budget_warns_and_sets_none() -> None:
    """No max budget: the soft budget is not a budget, yet its crossing is still told."""
    event = ev(EventType.SPEND, spent="51", soft_budget="50")
    result = transition(make_task(budget=None), event, CALLS_OUT, NOW)
    assert result.task.budget is None and result.task.spent == D("51")
    assert result.task.state is TaskState.ACTIVE
    assert result.effects == (Alert(AlertKind.SOFT_BUDGET, Severity.WARNING, soft_budget=D("50")),)


# --- gate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "amount", "reason"),
    [
        (make_task(spent="10"), "0", GateReason.ALLOWED),
        (make_task(TaskState.WARNING, spent="60"), "0", GateReason.ALLOWED),
        (make_task(spent="10"), "90", GateReason.ALLOWED),
        (make_task(spent="10"), "90.01", GateReason.WOULD_EXCEED),
        (make_task(TaskState.WARNING, spent="99.99"), "0.01", GateReason.ALLOWED),
        (make_task(TaskState.WARNING, spent="99.99"), "0.02", GateReason.WOULD_EXCEED),
        (make_task(spent="100"), "0", GateReason.BUDGET_EXHAUSTED),
        (make_task(spent="150"), "0", GateReason.BUDGET_EXHAUSTED),
        (make_task(budget="0"), "0", GateReason.BUDGET_EXHAUSTED),
        (make_task(budget=None), "0", GateReason.NO_BUDGET),
        (make_task(TaskState.HALTED, spent="100"), "0", GateReason.HALTED),
        (make_task(TaskState.HALTED, spent="1", budget="1000"), "0", GateReason.HALTED),
        (make_task(TaskState.HALTING, spent="100"), "0", GateReason.HALTING),
        (make_task(TaskState.COMPLETED, spent="1"), "0", GateReason.COMPLETED),
    ],
)
def test_gate_reasons(task: Task, amount: str, reason: GateReason) -> None:
    """A task may spend only while active or warning and under its budget; the reason says why."""
    assert gate(task, D(amount)) is reason


def test_gate_default_amount_is_zero() -> None:
    """Asking without an amount asks whether any spend at all is still allowed."""
    assert gate(make_task(spent="99.99")) is GateReason.ALLOWED
