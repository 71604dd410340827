"""Money at the edges of what is accepted: every figure that parses can be shown everywhere.

Whatever `parse_money` accepts (any exponent a sender writes, any magnitude it allows)
is stored as a short exact Decimal, and the task view, the alerts and the status page
render it without an error.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from receiver.alerts import render
from receiver.errors import InvalidEvent
from receiver.model import Alert, AlertKind, BudgetEvent, EventType, Severity, Task, TaskState
from receiver.money import MAX_PLACES, MAX_WHOLE_DIGITS, parse_money
from receiver.outbox import Route, rows_for
from receiver.page_html import Snapshot, render_status
from receiver.views import task_view

D = Decimal
NOW = 1_764_000_000.0
CHECK = settings(max_examples=300, deadline=None, database=None)

# Decimal text with any exponent a sender might write, tiny and huge.
raw_money = st.builds(
    lambda digits, exponent: f"{digits}E{exponent}",
    st.integers(min_value=0, max_value=10**40),
    st.integers(min_value=-1_000_000, max_value=40),
)


def accepted(text: str) -> Decimal:
    try:
        return parse_money(text, "amount")
    except InvalidEvent:
        assume(False)
        raise


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("1E-999999", "0"),
        ("0.30000000000000004", "0.3"),
        ("0.0000000000015", "2E-12"),  # half to even at the 12th place
        ("0.1234567890125", "0.123456789012"),
        ("999999999999999.999999999999", "999999999999999.999999999999"),
        ("1E-10", "1E-10"),
        ("5E+14", "5E+14"),
    ],
)
def test_scale_is_bounded_by_rounding_past_twelve_places(text: str, kept: str) -> None:
    """Finer digits than 12 places are rounded half to even; the rest is exact."""
    assert parse_money(text, "amount") == D(kept)


@pytest.mark.parametrize("text", ["1E15", "1000000000000000", "1E+40", str(10**25)])
def test_more_than_fifteen_whole_digits_is_refused(text: str) -> None:
    with pytest.raises(InvalidEvent, match="at most 15 digits before the decimal point"):
        parse_money(text, "budget")


@CHECK
@given(raw_money)
def test_every_accepted_figure_is_short_and_exact(text: str) -> None:
    """Accepted money has at most 12 places and 27 digits, so sums of two are exact."""
    amount = accepted(text)
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int) and exponent >= -MAX_PLACES
    assert len(amount.as_tuple().digits) <= MAX_WHOLE_DIGITS + MAX_PLACES
    assert amount + amount - amount == amount


@CHECK
@given(raw_money, raw_money, st.sampled_from(list(TaskState)))
def test_any_accepted_budget_and_spend_render_everywhere(
    budget_text: str, spent_text: str, state: TaskState
) -> None:
    """Task view, every alert kind and the status page render any accepted pair."""
    task = Task(
        task_id="t-1", source="budget", state=state, spent=accepted(spent_text),
        created_at=NOW, updated_at=NOW, budget=accepted(budget_text), currency="USD",
    )  # fmt: skip
    view = task_view(task)
    assert len(json.dumps(view)) < 2_000
    event = BudgetEvent(
        event_id="e-1", source="budget", type=EventType.SPEND, task_id="t-1", occurred_at=NOW
    )
    alerts = [Alert(kind, Severity.CRITICAL, D("0.8")) for kind in AlertKind]
    for row in rows_for(task, alerts, event, [Route("ops", frozenset(Severity))], NOW):
        message = render(row.payload)
        assert message.title and len(message.body) < 10_000
    page = render_status(
        Snapshot(tasks=[task], recent=[], dead=[]), thresholds=(D("0.5"), D("0.8")),
        halt_at=D("1"), now=NOW, role="read", base_url="http://r.example/",
    )  # fmt: skip
    assert "t-1" in page
