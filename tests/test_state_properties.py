"""Properties of the state machine that must hold for any order and mix of events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.model import (
    AlertKind,
    BudgetEvent,
    Effect,
    EventType,
    Forecast,
    Halt,
    Task,
    TaskState,
)
from receiver.state import Policy, transition

D = Decimal
T0 = 1_764_000_000.0
CHECK = settings(max_examples=300, deadline=None, database=None)

money = st.decimals(
    min_value=0, max_value=D("100000"), places=2, allow_nan=False, allow_infinity=False
)
budgets = st.decimals(
    min_value=D("0.01"), max_value=D("100000"), places=2, allow_nan=False, allow_infinity=False
)
policies = st.builds(
    Policy,
    halt_calls_out=st.booleans(),
    spend_after_halt_quiet_seconds=st.sampled_from([0.0, 5.0, 3600.0]),
)


def event(n: int, type_: EventType, **kw: Any) -> BudgetEvent:
    return BudgetEvent(
        event_id=f"evt-{n}",
        source="budget",
        type=type_,
        task_id="t-1",
        occurred_at=T0 + n,
        **kw,
    )


def created(budget: Decimal) -> BudgetEvent:
    return event(0, EventType.CREATED, budget=budget, currency="USD")


def run(
    events: Sequence[BudgetEvent], policy: Policy, task: Task | None = None
) -> tuple[Task, list[Effect]]:
    """Apply events in order, one second apart; return the final task and every effect."""
    effects: list[Effect] = []
    for n, ev in enumerate(events):
        result = transition(task, ev, policy, T0 + n)
        task = result.task
        effects.extend(result.effects)
    assert task is not None
    return task, effects


@st.composite
def spends_and_a_permutation(draw: st.DrawFn) -> tuple[list[Decimal], list[Decimal]]:
    values = draw(st.lists(money, min_size=1, max_size=20))
    return values, draw(st.permutations(values))


@CHECK
@given(budget=budgets, pair=spends_and_a_permutation(), policy=policies)
def test_final_spent_is_the_max_of_cumulative_figures_in_any_order(
    budget: Decimal, pair: tuple[list[Decimal], list[Decimal]], policy: Policy
) -> None:
    """Whatever order cumulative spend figures arrive in, the task ends at the highest one."""
    values, shuffled = pair
    finals = []
    for order in (values, shuffled):
        evs = [created(budget)] + [
            event(n, EventType.SPEND, spent=v) for n, v in enumerate(order, 1)
        ]
        task, _ = run(evs, policy)
        finals.append(task.spent)
    assert finals == [max(values), max(values)]


@CHECK
@given(budget=budgets, amounts=st.lists(money, max_size=30), policy=policies)
def test_final_spent_is_the_sum_of_increments(
    budget: Decimal, amounts: list[Decimal], policy: Policy
) -> None:
    """Distinct amount events add up exactly, through warning, halting and halted alike."""
    evs = [created(budget)] + [
        event(n, EventType.SPEND, amount=a) for n, a in enumerate(amounts, 1)
    ]
    task, _ = run(evs, policy)
    assert task.spent == sum(amounts, D(0))


def _mixed_event(draw: st.DrawFn, n: int) -> BudgetEvent:
    kind = draw(
        st.sampled_from(
            ["spent", "amount", "reached", "threshold", "budget", "confirmed", "failed",
             "soft", "forecast"]
        )
    )  # fmt: skip
    if kind == "spent":
        return event(n, EventType.SPEND, spent=draw(money))
    if kind == "amount":
        return event(n, EventType.SPEND, amount=draw(money))
    if kind == "reached":
        return event(n, EventType.REACHED)
    if kind == "threshold":
        fraction = draw(st.sampled_from([D("0.5"), D("0.8"), D("0.9"), D("1")]))
        return event(n, EventType.THRESHOLD, threshold=fraction)
    if kind == "budget":
        return event(n, EventType.SPEND, amount=D(0), budget=draw(budgets))
    if kind == "confirmed":
        return event(n, EventType.HALT_CONFIRMED)
    if kind == "soft":
        return soft_crossing(n, draw(money), draw(money), draw(budgets))
    if kind == "forecast":
        return forecast(n, draw(money), draw(money))
    return event(n, EventType.HALT_FAILED)


def soft_crossing(n: int, spent: Decimal, soft: Decimal, budget: Decimal) -> BudgetEvent:
    """LiteLLM's soft_budget_crossed as its source maps it (threshold = soft / budget, at most 1)."""
    fraction = min((soft / budget).quantize(D("0.01"), rounding="ROUND_FLOOR"), D(1))
    return event(n, EventType.THRESHOLD, spent=spent, budget=budget, threshold=fraction,
                 soft_budget=soft)  # fmt: skip


def forecast(n: int, limit: Decimal, projected: Decimal) -> BudgetEvent:
    """LiteLLM's projection, with the soft budget in the budget field as LiteLLM sends it."""
    projection = Forecast(limit=limit, projected_spend=projected, soft=True)
    return event(n, EventType.FORECAST, budget=limit, spent=projected, forecast=projection)


@st.composite
def mixed_sequences(draw: st.DrawFn) -> list[BudgetEvent]:
    size = draw(st.integers(min_value=0, max_value=30))
    return [created(draw(budgets))] + [_mixed_event(draw, n) for n in range(1, size + 1)]


@CHECK
@given(events=mixed_sequences(), policy=policies)
def test_at_most_one_halt_across_any_sequence(events: list[BudgetEvent], policy: Policy) -> None:
    """Without a person's resume, no sequence of events owes more than one halt."""
    task, effects = run(events, policy)
    halts = [e for e in effects if isinstance(e, Halt)]
    halted_alerts = [e for e in effects if getattr(e, "kind", None) is AlertKind.HALTED]
    assert len(halts) <= 1
    assert len(halted_alerts) <= 1
    if not policy.halt_calls_out:
        assert halts == []
    if halts or halted_alerts:
        assert task.state in (TaskState.HALTING, TaskState.HALTED)


@CHECK
@given(events=mixed_sequences(), policy=policies)
def test_each_threshold_alerts_at_most_once(events: list[BudgetEvent], policy: Policy) -> None:
    """Each threshold alerts at most once per task, whatever the mix of events."""
    _, effects = run(events, policy)
    counts = Counter(
        getattr(e, "threshold", None)
        for e in effects
        if getattr(e, "kind", None) in (AlertKind.THRESHOLD, AlertKind.SOFT_BUDGET)
    )
    assert all(count == 1 for count in counts.values()), counts
    assert None not in counts  # every task here has a budget, so every crossing has a fraction


@CHECK
@given(budget=budgets, fractions=st.lists(st.integers(0, 4999), max_size=20), policy=policies)
def test_spend_below_the_first_threshold_owes_nothing(
    budget: Decimal, fractions: list[int], policy: Policy
) -> None:
    """While spend stays below the first threshold, no alert and no halt is owed."""
    first = policy.thresholds[0]
    limit = budget * first
    figures = [(budget * f / 10_000).quantize(D("0.01")) for f in fractions]
    figures = [s for s in figures if s < limit]
    evs = [created(budget)] + [event(n, EventType.SPEND, spent=s) for n, s in enumerate(figures, 1)]
    task, effects = run(evs, policy)
    assert effects == []
    assert task.state is TaskState.ACTIVE


@CHECK
@given(budget=budgets, values=st.lists(money, min_size=1, max_size=20), policy=policies)
def test_thresholds_alerted_only_grows_and_stays_sorted(
    budget: Decimal, values: list[Decimal], policy: Policy
) -> None:
    """The record of alerted thresholds never loses an entry and stays in order."""
    task = transition(None, created(budget), policy, T0).task
    for n, v in enumerate(values, 1):
        after = transition(task, event(n, EventType.SPEND, spent=v), policy, T0 + n).task
        assert set(task.thresholds_alerted) <= set(after.thresholds_alerted)
        assert list(after.thresholds_alerted) == sorted(after.thresholds_alerted)
        task = after


@CHECK
@given(events=mixed_sequences(), policy=policies, n=st.integers(1, 31))
def test_a_forecast_never_changes_budget_spent_or_state(
    events: list[BudgetEvent], policy: Policy, n: int
) -> None:
    """Wherever a forecast arrives in any mix of events, budget, spent, state and alerted
    thresholds are what they were, no halt is owed, and at most one forecast warning."""
    task, _ = run(events, policy)
    projection = forecast(n, D("56"), D("130"))
    result = transition(task, projection, policy, T0 + 100)
    after = result.task
    assert (after.budget, after.spent, after.state, after.thresholds_alerted) == (
        task.budget, task.spent, task.state, task.thresholds_alerted,
    )  # fmt: skip
    assert not any(isinstance(e, Halt) for e in result.effects)
    assert [getattr(e, "kind", None) for e in result.effects] in ([], [AlertKind.FORECAST])


@CHECK
@given(
    budget=budgets,
    crossings=st.lists(st.tuples(money, money), max_size=20),
    policy=policies,
)
def test_a_soft_budget_never_halts_while_spend_is_under_the_limit(
    budget: Decimal, crossings: list[tuple[Decimal, Decimal]], policy: Policy
) -> None:
    """Soft-budget crossings of any size halt a task only when spend itself reaches the limit."""
    evs = [created(budget)] + [
        soft_crossing(n, spent, soft, budget) for n, (spent, soft) in enumerate(crossings, 1)
    ]
    task, effects = run(evs, policy)
    stopped = any(isinstance(e, Halt) or getattr(e, "kind", None) is AlertKind.HALTED
                  for e in effects)  # fmt: skip
    assert stopped == (task.spent >= budget * policy.halt_at)
