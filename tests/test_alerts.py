"""Alert rendering: every kind tells a person which task, where its money stands,
what happened and what to do. Payloads come from the real outbox.rows_for."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from receiver.alerts import Message, render
from receiver.model import Alert, AlertKind, BudgetEvent, EventType, Severity, Task, TaskState
from receiver.outbox import Route, rows_for

NOW = 1_795_860_000.0  # 2026-11-28 10:00:00 UTC
ROUTE = Route("ops", frozenset(Severity))


def payload_for(
    kind: AlertKind,
    severity: Severity,
    *,
    spent: str = "80.00",
    budget: str | None = "100.00",
    state: TaskState = TaskState.WARNING,
    threshold: str | None = None,
    event_type: EventType = EventType.SPEND,
    task_id: str = "t-42",
    task_name: str | None = "Purchase via AI Agent",
    actor: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    task = Task(
        task_id=task_id,
        source="budget",
        state=state,
        spent=Decimal(spent),
        created_at=NOW - 60,
        updated_at=NOW,
        budget=None if budget is None else Decimal(budget),
        currency="USD",
        task_name=task_name,
        agent_id="agent-7",
    )
    event = BudgetEvent(
        event_id="evt-1",
        source="budget",
        type=event_type,
        task_id=task_id,
        occurred_at=NOW,
        actor=actor,
        reason=reason,
    )
    alert = Alert(kind, severity, None if threshold is None else Decimal(threshold))
    (row,) = rows_for(task, [alert], event, [ROUTE], NOW)
    return row.payload


def assert_task_facts(message: Message) -> None:
    body = message.body
    for fact in ("Purchase via AI Agent", "`t-42`", "agent-7", "budget"):
        assert fact in body


def test_threshold_names_the_task_the_money_and_the_threshold() -> None:
    """A threshold alert: warning type; spent of budget with currency, percentage, remaining."""
    message = render(payload_for(AlertKind.THRESHOLD, Severity.WARNING, threshold="0.8"))
    assert message.notify_type == "warning"
    assert message.severity is Severity.WARNING
    assert "Purchase via AI Agent (t-42)" in message.title
    assert "80% of its budget" in message.title
    assert_task_facts(message)
    assert "80.00 USD of 100.00 USD (80% of budget)" in message.body
    assert "Remaining:** 20.00 USD" in message.body
    assert "Spend crossed 80% of budget" in message.body
    assert "halted automatically" in message.body
    assert "2026-11-28 10:00:00 UTC" in message.body
    assert "event `evt-1`" in message.body


def test_halted_without_a_halt_call_says_the_platform_was_not_told() -> None:
    """Halted locally (no halt URL): refused spend, check the platform, how to resume."""
    message = render(
        payload_for(AlertKind.HALTED, Severity.CRITICAL, spent="100.00", state=TaskState.HALTED)
    )
    assert message.notify_type == "failure"
    assert message.severity is Severity.CRITICAL
    assert (
        message.title == "Task halted: Purchase via AI Agent (t-42) reached its budget (100.00 USD)"
    )
    assert_task_facts(message)
    assert "'not allowed'" in message.body
    assert "platform was not called" in message.body
    assert '`budget-receiver tasks resume t-42 --budget NEW_BUDGET --reason "why"`' in message.body
    assert "above the 100.00 USD spent" in message.body


def test_halted_after_the_platform_confirmed() -> None:
    """Halted by a successful halt call: the message says the platform accepted it."""
    message = render(
        payload_for(
            AlertKind.HALTED,
            Severity.CRITICAL,
            spent="100.00",
            state=TaskState.HALTED,
            event_type=EventType.HALT_CONFIRMED,
        )
    )
    assert "platform accepted the halt call" in message.body
    assert "was not called" not in message.body


def test_halt_failed_asks_for_a_manual_halt_and_shows_the_error() -> None:
    """Halt failed: critical, 'halt it by hand on the platform', the last error, resume hint."""
    message = render(
        payload_for(
            AlertKind.HALT_FAILED,
            Severity.CRITICAL,
            spent="101.50",
            state=TaskState.HALTING,
            event_type=EventType.HALT_FAILED,
            reason="HTTP 503 Service Unavailable",
        )
    )
    assert message.notify_type == "failure"
    assert "halt it by hand on the platform" in message.title
    assert "ACTION NEEDED" in message.title
    assert_task_facts(message)
    assert "Last error: HTTP 503 Service Unavailable" in message.body
    assert "Halt it by hand on the platform now" in message.body
    assert "Over budget by:** 1.50 USD" in message.body
    assert "budget-receiver tasks resume t-42" in message.body


def test_spend_after_halt_says_it_may_still_be_running() -> None:
    """Spend after halt: the new spend and overspend, stop it by hand."""
    message = render(
        payload_for(
            AlertKind.SPEND_AFTER_HALT, Severity.CRITICAL, spent="120.00", state=TaskState.HALTED
        )
    )
    assert message.notify_type == "failure"
    assert message.title == "Spend after halt: Purchase via AI Agent (t-42) is still spending"
    assert "120.00 USD of 100.00 USD (120% of budget)" in message.body
    assert "Over budget by:** 20.00 USD" in message.body
    assert "now 120.00 USD" in message.body
    assert "Stop the task by hand on the platform" in message.body


def test_resumed_says_who_and_why() -> None:
    """Resumed: info, with the person, their reason and the new budget."""
    message = render(
        payload_for(
            AlertKind.RESUMED,
            Severity.INFO,
            spent="100.00",
            budget="250.00",
            state=TaskState.WARNING,
            event_type=EventType.RESUMED,
            actor="alice@example.com",
            reason="approved by finance, ticket 7",
        )
    )
    assert message.notify_type == "info"
    assert message.severity is Severity.INFO
    assert "budget now 250.00 USD" in message.title
    assert "alice@example.com resumed the task with a new budget of 250.00 USD" in message.body
    assert "Reason: approved by finance, ticket 7." in message.body
    assert "100.00 USD of 250.00 USD (40% of budget)" in message.body


def test_test_alert_from_notify_test() -> None:
    """The notify-test payload renders as a short info message."""
    message = render(
        {
            "alert": "test",
            "severity": "info",
            "event_id": "notify-test",
            "event_type": "notify-test",
            "at": NOW,
            "task": {"task_id": "notify-test", "spent": "0", "budget": None},
        }
    )
    assert message.title == "budget-receiver test alert"
    assert message.notify_type == "info"
    assert "notify-test" in message.body


def test_untrusted_text_cannot_forge_markdown_or_lines() -> None:
    """Task names and reasons from webhooks are escaped and kept on one line."""
    message = render(
        payload_for(
            AlertKind.HALT_FAILED,
            Severity.CRITICAL,
            task_name="[Click here](https://evil.example)\n- **Spent:** 0 USD",
            reason="<script>x</script>",
        )
    )
    assert "[Click here](" not in message.body
    assert r"\[Click here\](https://evil.example)" in message.body
    assert "\n- **Spent:** 0 USD" not in message.body
    assert "<script>" not in message.body
    assert "\n" not in message.title


def test_task_ids_are_shell_quoted_in_the_resume_command() -> None:
    """A task id with spaces or quotes still gives a command that can be pasted."""
    message = render(
        payload_for(AlertKind.HALTED, Severity.CRITICAL, task_id="run 7/it's", task_name=None)
    )
    assert "budget-receiver tasks resume 'run 7/it'\"'\"'s' --budget" in message.body
    assert message.title.startswith("Task halted: run 7/it's reached")


def test_missing_budget_is_said_not_guessed() -> None:
    """A task without a known budget shows its spend and says so."""
    message = render(payload_for(AlertKind.SPEND_AFTER_HALT, Severity.CRITICAL, budget=None))
    assert "80.00 USD (no budget known)" in message.body


@pytest.mark.parametrize(
    ("payload", "notify_type"),
    [
        ({}, "failure"),
        ({"alert": "brand_new_kind", "severity": "warning"}, "warning"),
        ({"alert": "threshold", "severity": "nonsense", "task": "not a dict"}, "warning"),
    ],
)
def test_odd_payloads_still_render(payload: dict[str, Any], notify_type: str) -> None:
    """A payload from a newer or older version never makes rendering fail."""
    message = render(payload)
    assert message.title
    assert message.notify_type == notify_type
