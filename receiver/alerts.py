"""Turn an alert payload (see ``outbox.rows_for``) into a message a person can act on. Pure.

Each message says which task (name, id, agent, source), where its money stands
(spent of budget, percentage, remaining), what happened, and what to do next.
Title is plain text; body is Markdown (apprise converts it per channel). A channel
that blends the title into the body gets ``markdown_title``, escaped like the body.

Kinds map to apprise notify types so channels colour them sensibly:

    threshold         warning   spend crossed a warning threshold
    soft_budget       warning   spend crossed a soft budget (a line to warn at; nothing is stopped)
    forecast          warning   the sender projects spend past a limit; nothing was applied
    halted            failure   spend reached the limit; the task is stopped
    halt_failed       failure   the halt call did not succeed: a person must stop it
    spend_after_halt  failure   a halted task reported more spend
    resumed           info      a person gave the task a new budget (good news, not "success")
    test              info      notify-test

Text from webhooks (task name, agent, reasons) is untrusted: it is flattened to
one line, shortened, and Markdown-escaped so it cannot forge links or layout.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from .model import AlertKind, Severity
from .money import PERCENT_PRECISION

NOTIFY_TYPES = {
    AlertKind.THRESHOLD: "warning",
    AlertKind.HALTED: "failure",
    AlertKind.HALT_FAILED: "failure",
    AlertKind.SPEND_AFTER_HALT: "failure",
    AlertKind.RESUMED: "info",
    AlertKind.TEST: "info",
    AlertKind.SOFT_BUDGET: "warning",
    AlertKind.FORECAST: "warning",
}
_SEVERITY_NOTIFY_TYPES = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.CRITICAL: "failure",
}
_DEFAULT_SEVERITY = {
    AlertKind.THRESHOLD: Severity.WARNING,
    AlertKind.RESUMED: Severity.INFO,
    AlertKind.TEST: Severity.INFO,
    AlertKind.SOFT_BUDGET: Severity.WARNING,
    AlertKind.FORECAST: Severity.WARNING,
}
_MAX_FIELD = 200
# Enough to stop untrusted text forming links, emphasis, HTML or tables.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered alert: ``notify_type`` is an apprise NotifyType value."""

    title: str  # plain text
    body: str  # Markdown
    notify_type: str
    severity: Severity

    @property
    def markdown_title(self) -> str:
        """The title as Markdown text, for channels that put it into the (Markdown) body."""
        return _md(self.title)


def render(payload: dict[str, Any]) -> Message:
    """The message for one alert payload; tolerant of missing fields."""
    kind = _kind(payload.get("alert"))
    severity = _severity(payload.get("severity"), kind)
    task = payload.get("task")
    facts = _Facts.of(task if isinstance(task, dict) else {})

    if kind is AlertKind.TEST:
        title = "budget-receiver test alert"
        happened = (
            "This is a test alert sent by `budget-receiver notify-test`. "
            "If you can read it, this channel receives budget alerts."
        )
        todo = "Nothing."
        lines = [happened, "", f"**What to do:** {todo}"]
        return Message(title, _with_footer(lines, payload), _notify_type(kind, severity), severity)

    happened, todo, title = _story(kind, payload, facts)
    lines = [
        *facts.lines(),
        "",
        f"**What happened:** {happened}",
        "",
        f"**What to do:** {todo}",
    ]
    return Message(
        _one_line(title), _with_footer(lines, payload), _notify_type(kind, severity), severity
    )


@dataclass(frozen=True, slots=True)
class _Facts:
    task_id: str
    name: str
    agent: str | None
    source: str | None
    state: str | None
    spent: str | None
    budget: str | None
    currency: str
    percent: str | None

    @classmethod
    def of(cls, task: dict[str, Any]) -> _Facts:
        task_id = _text(task.get("task_id")) or "(unknown task)"
        return cls(
            task_id=task_id,
            name=_text(task.get("task_name")) or task_id,
            agent=_text(task.get("agent_id")),
            source=_text(task.get("source")),
            state=_text(task.get("state")),
            spent=_text(task.get("spent")),
            budget=_text(task.get("budget")),
            currency=_text(task.get("currency")) or "",
            percent=_percent(task.get("used_fraction")),
        )

    def money(self, amount: str | None) -> str:
        return " ".join(p for p in (amount or "?", self.currency) if p)

    @property
    def label(self) -> str:
        """Plain-text task label for titles: the name, and the id when they differ."""
        return self.name if self.name == self.task_id else f"{self.name} ({self.task_id})"

    def lines(self) -> list[str]:
        lines = [f"- **Task:** {_md(self.name)} (id `{_code(self.task_id)}`)"]
        if self.agent:
            lines.append(f"- **Agent:** {_md(self.agent)}")
        if self.source:
            lines.append(f"- **Source:** {_md(self.source)}")
        if self.state:
            lines.append(f"- **State:** {_md(self.state)}")
        if self.budget is None:
            lines.append(f"- **Spent:** {self.money(self.spent)} (no budget known)")
        else:
            pct = f" ({self.percent} of budget)" if self.percent else ""
            spent, budget = self.money(self.spent), self.money(self.budget)
            lines.append(f"- **Spent:** {spent} of {budget}{pct}")
            remaining = _remaining(self.spent, self.budget)
            if remaining is not None and remaining < 0:
                lines.append(f"- **Over budget by:** {self.money(f'{-remaining:f}')}")
            elif remaining is not None:
                lines.append(f"- **Remaining:** {self.money(f'{remaining:f}')}")
        return lines

    def resume_hint(self) -> str:
        command = (
            f"budget-receiver tasks resume {shlex.quote(self.task_id)} "
            '--budget NEW_BUDGET --reason "why"'
        )
        above = f" (NEW_BUDGET must be above the {self.money(self.spent)} spent)"
        return f"`{_code(command)}`{above if self.spent else ''}"


def _story(kind: AlertKind | None, payload: dict[str, Any], f: _Facts) -> tuple[str, str, str]:
    """(what happened, what to do, title) for one alert kind."""
    reason = _text(payload.get("reason"))
    actor = _text(payload.get("actor"))
    if kind is AlertKind.THRESHOLD:
        crossed = _percent(payload.get("threshold")) or f.percent or "a warning threshold"
        return (
            f"Spend crossed {crossed} of budget.",
            "Nothing if this spend is expected: the task is halted automatically when it "
            "reaches its limit. If it should not be spending this much, stop it on the "
            "platform now.",
            f"Budget warning: {f.label} passed {crossed} of its budget",
        )
    if kind is AlertKind.SOFT_BUDGET:
        soft = f.money(_text(payload.get("soft_budget")))
        passed = _percent(payload.get("threshold"))
        of_budget = f" and passed {passed} of its budget" if passed else ""
        return (
            f"Spend crossed the soft budget of {soft}{of_budget}. A soft budget is a line "
            "to warn at: nothing was stopped.",
            "Nothing if this spend is expected: the task is halted automatically when it "
            "reaches its budget. If it should not be spending this much, stop it on the "
            "platform now.",
            f"Soft budget crossed: {f.label} passed its soft budget ({soft})",
        )
    if kind is AlertKind.FORECAST:
        return _forecast_story(payload.get("forecast"), f)
    if kind is AlertKind.HALTED:
        if payload.get("event_type") == "task.halt_confirmed":
            how = "The platform accepted the halt call."
        else:
            how = (
                "No halt endpoint is configured, so the platform was not called: check "
                "that the task has really stopped."
            )
        return (
            "Spend reached the budget and the task was halted. Any request to keep "
            f"spending is answered 'not allowed'. {how}",
            "If the task should continue, give it a new budget: " + f.resume_hint(),
            f"Task halted: {f.label} reached its budget ({f.money(f.budget)})",
        )
    if kind is AlertKind.HALT_FAILED:
        error = f" Last error: {_md(reason)}." if reason else ""
        return (
            "Spend reached the budget, but the platform's halt endpoint did not confirm "
            f"the halt after repeated tries.{error} The receiver still answers 'not "
            "allowed' to spend requests, but the task may be running.",
            "Halt it by hand on the platform now. When it is safe to continue: " + f.resume_hint(),
            f"ACTION NEEDED: could not halt {f.label}: halt it by hand on the platform",
        )
    if kind is AlertKind.SPEND_AFTER_HALT:
        return (
            f"The task is halted, but the platform reported more spend (now "
            f"{f.money(f.spent)}). It may not have stopped. Further spend reports are "
            "counted; the next alert about them comes after a quiet period.",
            "Stop the task by hand on the platform and check its agent. To let it "
            "continue instead: " + f.resume_hint(),
            f"Spend after halt: {f.label} is still spending",
        )
    if kind is AlertKind.RESUMED:
        who = _md(actor) if actor else "Someone"
        why = f" Reason: {_md(reason)}." if reason else ""
        return (
            f"{who} resumed the task with a new budget of {f.money(f.budget)}.{why}",
            "Nothing; the task may spend again and warning thresholds re-arm.",
            f"Task resumed: {f.label} (budget now {f.money(f.budget)})",
        )
    name = _text(payload.get("alert")) or "alert"
    return (
        f"Alert {_md(name)}." + (f" {_md(reason)}" if reason else ""),
        "Check the task on the platform.",
        f"Budget alert ({name}): {f.label}",
    )


def _forecast_story(forecast: object, f: _Facts) -> tuple[str, str, str]:
    """A projection, told as one: nothing was counted, changed or stopped."""
    facts = forecast if isinstance(forecast, dict) else {}
    line = "soft budget" if facts.get("soft") is True else "budget"
    limit, projected = _text(facts.get("limit")), _text(facts.get("projected_spend"))
    when, spent = _text(facts.get("exceeds_on")), _text(facts.get("spent"))
    past = f"its {line} of {f.money(limit)}" if limit else f"its {line}"
    on = f" around {_md(when)}" if when else ""
    by = f", reaching {f.money(projected)} by the end of its budget period" if projected else ""
    so_far = f" The sender counts {f.money(spent)} spent so far." if spent else ""
    return (
        f"Forecast: at its current rate, spend passes {past}{on}{by}.{so_far} This is a "
        "projection, not spend: the receiver did not count it, change the budget or halt.",
        "Nothing if this spend is expected. If it is not, lower the task's usage or stop "
        "it on the platform before the forecast comes true.",
        f"Forecast: {f.label} is projected to pass its {line}",
    )


def _with_footer(lines: list[str], payload: dict[str, Any]) -> str:
    footer = []
    event_id, event_type = _text(payload.get("event_id")), _text(payload.get("event_type"))
    if event_id:
        kind = f" ({event_type})" if event_type else ""
        footer.append(f"event `{_code(event_id)}`{kind}")
    at = payload.get("at")
    if isinstance(at, int | float) and not isinstance(at, bool):
        footer.append(datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    footer.append("budget-receiver")
    return "\n".join([*lines, "", "_" + " · ".join(footer) + "_"])


def _kind(value: object) -> AlertKind | None:
    try:
        return AlertKind(str(value))
    except ValueError:
        return None


def _severity(value: object, kind: AlertKind | None) -> Severity:
    try:
        return Severity(str(value))
    except ValueError:
        return _DEFAULT_SEVERITY.get(kind, Severity.CRITICAL) if kind else Severity.CRITICAL


def _notify_type(kind: AlertKind | None, severity: Severity) -> str:
    return NOTIFY_TYPES[kind] if kind is not None else _SEVERITY_NOTIFY_TYPES[severity]


def _percent(fraction: object) -> str | None:
    """'0.8' -> '80%', '0.8125' -> '81.3%'."""
    if fraction is None or isinstance(fraction, bool):
        return None
    try:
        with localcontext(prec=PERCENT_PRECISION):
            value = (Decimal(str(fraction)) * 100).quantize(Decimal("0.1"))
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite():
        return None
    return f"{value:.0f}%" if value == value.to_integral_value() else f"{value:f}%"


def _remaining(spent: str | None, budget: str | None) -> Decimal | None:
    try:
        return Decimal(budget or "") - Decimal(spent or "0")
    except InvalidOperation:
        return None


def _text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = _one_line(str(value))
    return text[: _MAX_FIELD - 1] + "…" if len(text) > _MAX_FIELD else text or None


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _code(text: str) -> str:
    """Text for inside an inline code span: a backtick would end it early."""
    return text.replace("`", "'")
