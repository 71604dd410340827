"""Alert rendering: every kind tells a person which task, where its money stands,
what happened and what to do. Payloads are made by the real path: the stored task, a real
event (parsed webhook, a resume, a halt call's result) and the store's decision on it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from receiver.alerts import Message, render
from receiver.events import parse_event
from receiver.internal import halt_result, resumed
from receiver.model import BudgetEvent, EventType, Severity, Task, TaskState
from receiver.outbox import Route, decider
from receiver.state import Policy

D = Decimal

NOW = 1_795_860_000.0  # 2026-11-28 10:00:00 UTC
ROUTE = Route("ops", frozenset(Severity))
POLICY = Policy()  # no halt URL: reaching the limit halts at once


def prior(
    state: TaskState = TaskState.WARNING,
    *,
    spent: str = "80.00",
    budget: str | None = "100.00",
    task_id: str = "t-42",
    task_name: str | None = "Purchase via AI Agent",
) -> Task:
    """The task as stored before the event."""
    alerted = (D("0.5"),) if state is not TaskState.ACTIVE else ()
    return Task(
        task_id=task_id, source="budget", state=state, spent=D(spent), created_at=NOW - 60,
        updated_at=NOW - 30, budget=None if budget is None else D(budget), currency="USD",
        task_name=task_name, agent_id="agent-7", thresholds_alerted=alerted,
    )  # fmt: skip


def webhook(task: Task, **data: Any) -> BudgetEvent:
    """A signed sender's task.spend for ``task``, parsed as the webhook route parses it."""
    doc = {"type": "task.spend", "data": {"task_id": task.task_id, **data}}
    event = parse_event(doc, event_id="evt-1", source="budget", fallback_time=NOW)
    assert event is not None
    return event


def payload_for(task: Task, event: BudgetEvent) -> dict[str, Any]:
    """The payload of the one alert ``event`` owes, made as the real path makes it: the
    decision the store runs (transition + outbox rows) on the stored task."""
    decision = decider(event, POLICY, [ROUTE], NOW)(task)
    (row,) = [item for item in decision.items if item.kind == "alert"]
    return row.payload


def halt_failed(task: Task, error: str) -> dict[str, Any]:
    """What the dispatcher records when a halt call goes dead with ``error``."""
    event = halt_result(EventType.HALT_FAILED, task_id=task.task_id, delivery_id=7, now=NOW,
                        error=error)  # fmt: skip
    return payload_for(task, event)


def assert_task_facts(message: Message) -> None:
    body = message.body
    for fact in ("Purchase via AI Agent", "`t-42`", "agent-7", "budget"):
        assert fact in body


def test_threshold_names_the_task_the_money_and_the_threshold() -> None:
    """A threshold alert: warning type; spent of budget with currency, percentage, remaining."""
    message = render(
        payload_for(prior(TaskState.ACTIVE, spent="0"), webhook(prior(), spent="80.00"))
    )
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
    message = render(payload_for(prior(), webhook(prior(), spent="100.00")))
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
    halting = prior(TaskState.HALTING, spent="100.00")
    event = halt_result(EventType.HALT_CONFIRMED, task_id="t-42", delivery_id=7, now=NOW)
    message = render(payload_for(halting, event))
    assert "platform accepted the halt call" in message.body
    assert "was not called" not in message.body


def test_halt_failed_asks_for_a_manual_halt_and_shows_the_error() -> None:
    """Halt failed: critical, 'halt it by hand on the platform', the last error, resume hint."""
    message = render(
        halt_failed(prior(TaskState.HALTING, spent="101.50"), "HTTP 503 Service Unavailable")
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
    halted = prior(TaskState.HALTED, spent="100.00")
    message = render(payload_for(halted, webhook(halted, spent="120.00")))
    assert message.notify_type == "failure"
    assert message.title == "Spend after halt: Purchase via AI Agent (t-42) is still spending"
    assert "120.00 USD of 100.00 USD (120% of budget)" in message.body
    assert "Over budget by:** 20.00 USD" in message.body
    assert "now 120.00 USD" in message.body
    assert "Stop the task by hand on the platform" in message.body


def test_resumed_says_who_and_why() -> None:
    """Resumed: info, with the person, their reason and the new budget."""
    event = resumed("t-42", D("250.00"), actor="alice@example.com",
                    reason="approved by finance, ticket 7", now=NOW)  # fmt: skip
    message = render(payload_for(prior(TaskState.HALTED, spent="100.00"), event))
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
    task = prior(TaskState.HALTING, task_name="[Click here](https://evil.example) - **Spent:**")
    message = render(halt_failed(task, "<script>x</script>\n- **Spent:** 0 USD"))
    assert "[Click here](" not in message.body
    assert r"\[Click here\](https://evil.example)" in message.body
    assert "\n- **Spent:** 0 USD" not in message.body
    assert "<script>" not in message.body
    assert "\n" not in message.title


def test_task_ids_are_shell_quoted_in_the_resume_command() -> None:
    """A task id with spaces or quotes still gives a command that can be pasted."""
    task = prior(task_id="run 7/it's", task_name=None)
    message = render(payload_for(task, webhook(task, spent="100")))
    assert "budget-receiver tasks resume 'run 7/it'\"'\"'s' --budget" in message.body
    assert message.title.startswith("Task halted: run 7/it's reached")


def test_missing_budget_is_said_not_guessed() -> None:
    """A task without a known budget shows its spend and says so."""
    task = prior(TaskState.HALTED, spent="70.00", budget=None)
    message = render(payload_for(task, webhook(task, spent="80.00")))
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
