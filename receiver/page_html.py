"""The status page's HTML: pure functions of plain data, escaping by default.

Every value goes through ``fill``, which escapes whatever is not already ``Html``
(markup this module built from escaped parts). Task names and ids arrive in
webhooks, so nothing from the store reaches the page unescaped. The page has no
script at all; it reloads itself with a meta refresh.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext
from string import Template

from .model import Delivery, Task, TaskState
from .money import PERCENT_PRECISION, fmt
from .views import iso

REFRESH_SECONDS = 10
RANK = {
    TaskState.HALTED: 0,
    TaskState.HALTING: 1,
    TaskState.WARNING: 2,
    TaskState.ACTIVE: 3,
    TaskState.COMPLETED: 4,
}
STATE_NOTE = {
    TaskState.HALTED: "stopped; a person must resume it",
    TaskState.HALTING: "halt call owed to the platform",
    TaskState.WARNING: "a warning threshold is crossed",
    TaskState.ACTIVE: "within budget",
    TaskState.COMPLETED: "ended normally",
}


class Html(str):
    """Markup that is safe as it is: built here from escaped parts."""

    __slots__ = ()


def fill(template: str, **values: object) -> Html:
    """``template`` with ``$name`` replaced; every value not ``Html`` is escaped."""
    safe = {k: v if isinstance(v, Html) else html.escape(str(v)) for k, v in values.items()}
    return Html(Template(template).substitute(safe))


def join(parts: Iterable[Html]) -> Html:
    return Html("".join(parts))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the page shows, as read from the store."""

    tasks: Sequence[Task]
    recent: Sequence[Delivery]  # delivered rows, newest first
    dead: Sequence[Delivery]
    more_tasks: bool = False  # more tasks exist than were read
    more_dead: bool = False


@dataclass(frozen=True, slots=True)
class Mark:
    left: Decimal  # percent of the bar's width
    label: str
    kind: str  # "threshold", "halt" or "budget"


@dataclass(frozen=True, slots=True)
class Bar:
    """A spend bar: 0 at the left, ``max(budget, halt line)`` at the right."""

    fill: Decimal  # percent of the bar's width, 0..100
    used: Decimal  # spent / budget
    marks: tuple[Mark, ...]
    over: bool  # spend runs past the right end


def order_tasks(tasks: Iterable[Task]) -> list[Task]:
    """Halted, then halting, then warning, then the rest; most used first within each."""
    return sorted(
        tasks,
        key=lambda t: (
            RANK[t.state],
            -(t.used_fraction if t.used_fraction is not None else Decimal(-1)),
            t.task_id,
        ),
    )


def bar(task: Task, thresholds: Sequence[Decimal], halt_at: Decimal) -> Bar | None:
    """The bar of a task with a budget; None for one without."""
    used = task.used_fraction
    if used is None:
        return None
    scale = max(Decimal(1), halt_at)
    marks = [Mark(_pos(t, scale), pct(t), "threshold") for t in thresholds if t < scale]
    if scale > 1:
        marks.append(Mark(_pos(Decimal(1), scale), "budget", "budget"))
    marks.append(Mark(_pos(halt_at, scale), f"halt at {pct(halt_at)}", "halt"))
    return Bar(fill=_pos(min(used, scale), scale), used=used, marks=tuple(marks), over=used > scale)


def pct(fraction: Decimal) -> str:
    """A fraction as a percentage, rounded down to 0.1 so 99.96 % never reads 100 %."""
    with localcontext(prec=PERCENT_PRECISION):  # a 1E-12 budget's fraction has 28 digits
        value = (fraction * 100).quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
    text = f"{value:f}"
    return text.removesuffix(".0") + "%"


def _pos(fraction: Decimal, scale: Decimal) -> Decimal:
    return (fraction / scale * 100).quantize(Decimal("0.01"))


def ago(moment: float | None, now: float) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int(now - moment))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _time(moment: float | None, now: float) -> Html:
    stamp = iso(moment) or ""
    return fill('<time datetime="$s" title="$s">$ago</time>', s=stamp, ago=ago(moment, now))


def badge(state: TaskState) -> Html:
    return fill(
        '<span class="badge s-$state" title="$note">$state</span>',
        state=state.value,
        note=STATE_NOTE[state],
    )


def _bar_html(task: Task, thresholds: Sequence[Decimal], halt_at: Decimal) -> Html:
    b = bar(task, thresholds, halt_at)
    if b is None:
        return fill('<span class="muted">no budget yet; $spent spent</span>', spent=_money(task))
    marks = join(
        fill(
            '<i class="mark $kind" style="left:$left%" title="$label"></i>',
            kind=m.kind,
            left=f"{m.left:f}",
            label=m.label,
        )
        for m in b.marks
    )
    return fill(
        '<div class="bar s-$state$over" role="img" aria-label="$used of the budget spent">'
        '<b class="fill" style="width:$fill%"></b>$marks</div>'
        '<div class="figures"><span class="used">$used</span> '
        '<span class="muted">$spent of $budget</span></div>',
        state=task.state.value,
        over=" over" if b.over else "",
        fill=f"{b.fill:f}",
        marks=marks,
        used=pct(b.used),
        spent=_money(task),
        budget=_money(task, task.budget),
    )


def _money(task: Task, amount: Decimal | None = None) -> str:
    value = task.spent if amount is None else amount
    return f"{fmt(value)} {task.currency or ''}".strip()


def _task_row(task: Task, thresholds: Sequence[Decimal], halt_at: Decimal, now: float) -> Html:
    return fill(
        '<tr class="task" data-task-id="$id" data-state="$state">'
        '<td><div class="name">$name</div><div class="muted id">$id$agent</div></td>'
        '<td>$badge</td><td class="spend">$bar</td><td>$updated</td></tr>',
        id=task.task_id,
        state=task.state.value,
        name=task.task_name or task.task_id,
        agent=f" · agent {task.agent_id}" if task.agent_id else "",
        badge=badge(task.state),
        bar=_bar_html(task, thresholds, halt_at),
        updated=_time(task.updated_at, now),
    )


def _alert_kind(row: Delivery) -> str:
    if row.kind == "halt":
        return "halt call"
    kind = str(row.payload.get("alert", row.kind)).replace("_", " ")
    threshold = row.payload.get("threshold")
    if kind == "threshold" and isinstance(threshold, str):
        try:
            return f"threshold {pct(Decimal(threshold))}"
        except ArithmeticError:
            return kind
    return kind


def _task_name(row: Delivery, names: dict[str, str]) -> str:
    view = row.payload.get("task")
    name = view.get("task_name") if isinstance(view, dict) else None
    return str(name or names.get(row.task_id) or row.task_id)


def _task_cell(row: Delivery, names: dict[str, str]) -> Html:
    return fill(
        '<div class="name">$name</div><div class="muted id">$id</div>',
        name=_task_name(row, names),
        id=row.task_id,
    )


def _severity(row: Delivery) -> Html:
    severity = "critical" if row.kind == "halt" else str(row.payload.get("severity", ""))
    return fill('<span class="sev v-$s">$s</span>', s=severity)


def _alert_row(row: Delivery, names: dict[str, str], now: float) -> Html:
    return fill(
        '<tr class="alert" data-delivery-id="$id"><td>$sev $kind</td><td>$task</td>'
        "<td><code>$channel</code></td><td>$at</td></tr>",
        id=row.id,
        sev=_severity(row),
        kind=_alert_kind(row),
        task=_task_cell(row, names),
        channel=row.channel,
        at=_time(row.delivered_at, now),
    )


def _dead_row(row: Delivery, names: dict[str, str], now: float) -> Html:
    return fill(
        '<tr class="dead" data-delivery-id="$id"><td>#$id</td><td>$sev $kind</td><td>$task</td>'
        "<td><code>$channel</code></td><td>$attempts</td>"
        '<td class="error">$error</td><td>$since</td>'
        '<td><code class="replay">POST /v1/deliveries/$id/retry</code></td></tr>',
        id=row.id,
        sev=_severity(row),
        kind=_alert_kind(row),
        task=_task_cell(row, names),
        channel=row.channel,
        attempts=row.attempts,
        error=(row.last_error or "")[:300],
        since=_time(row.created_at, now),
    )


def _counts(tasks: Sequence[Task]) -> Html:
    chips = []
    for state in RANK:
        n = sum(1 for t in tasks if t.state is state)
        if n:
            chips.append(fill('<span class="count">$badge $n</span>', badge=badge(state), n=n))
    return join(chips)


def render_status(
    snapshot: Snapshot,
    *,
    thresholds: Sequence[Decimal],
    halt_at: Decimal,
    now: float,
    role: str,
    base_url: str,
) -> Html:
    """The whole status page."""
    tasks = order_tasks(snapshot.tasks)
    names = {t.task_id: t.task_name for t in tasks if t.task_name}
    task_rows = join(_task_row(t, thresholds, halt_at, now) for t in tasks)
    if not tasks:
        task_rows = Html('<tr><td colspan="4" class="empty">No tasks yet.</td></tr>')
    alerts = join(_alert_row(d, names, now) for d in snapshot.recent)
    if not snapshot.recent:
        alerts = Html('<tr><td colspan="4" class="empty">No alerts delivered yet.</td></tr>')
    dead = join(_dead_row(d, names, now) for d in snapshot.dead)
    if not snapshot.dead:
        dead = Html('<tr><td colspan="8" class="empty">No dead deliveries.</td></tr>')
    more_tasks = (
        fill('<p class="note">More tasks than shown here: see <code>GET /v1/tasks</code>.</p>')
        if snapshot.more_tasks
        else Html("")
    )
    more_dead = (
        fill('<p class="note">More dead rows: <code>GET /v1/deliveries?status=dead</code>.</p>')
        if snapshot.more_dead
        else Html("")
    )
    body = fill(
        STATUS_BODY,
        counts=_counts(tasks),
        updated=iso(now) or "",
        refresh=REFRESH_SECONDS,
        role=role,
        marks=", ".join(pct(t) for t in thresholds),
        halt=pct(halt_at),
        task_rows=task_rows,
        more_tasks=more_tasks,
        alerts=alerts,
        dead=dead,
        more_dead=more_dead,
        base=base_url.rstrip("/"),
    )
    return _document("budget-receiver status", body, refresh=True)


def render_login(*, error: str | None = None, disabled: bool = False) -> Html:
    """The sign-in form; ``disabled`` when no token is configured at all."""
    if disabled:
        return _document("budget-receiver: sign in", fill(LOGIN_OFF), refresh=False)
    problem = fill('<p class="problem" role="alert">$e</p>', e=error) if error else Html("")
    return _document("budget-receiver: sign in", fill(LOGIN_BODY, problem=problem), refresh=False)


def render_unavailable(detail: str) -> Html:
    body = fill(
        '<main class="narrow"><h1>Storage unavailable</h1><p>$detail</p>'
        '<p class="muted">This page tries again every $n s.</p></main>',
        detail=detail,
        n=REFRESH_SECONDS,
    )
    return _document("budget-receiver: storage unavailable", body, refresh=True)


def _document(title: str, body: Html, *, refresh: bool) -> Html:
    meta = (
        fill('<meta http-equiv="refresh" content="$n">', n=REFRESH_SECONDS) if refresh else Html("")
    )
    return fill(DOCUMENT, title=title, refresh=meta, css=Html(CSS), body=body)


DOCUMENT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
$refresh<title>$title</title>
<style>$css</style></head>
<body>$body</body></html>
"""

STATUS_BODY = """<header><h1>budget-receiver</h1><div class="counts">$counts</div>
<div class="who">updated <time datetime="$updated">$updated</time> · refreshes every $refresh s
· $role token · <form class="signout" method="post" action="/logout">
<button type="submit">sign out</button></form></div></header>
<main>
<section><h2>Tasks</h2>
<p class="legend">Bar: spend against budget; thin marks at the warning thresholds ($marks),
the red line where the task is halted ($halt).</p>
<table class="tasks"><thead><tr><th>Task</th><th>State</th><th>Spend</th><th>Updated</th>
</tr></thead><tbody id="tasks">$task_rows</tbody></table>$more_tasks</section>
<section><h2>Recent alerts</h2>
<table><thead><tr><th>Kind</th><th>Task</th><th>Channel</th><th>Delivered</th></tr></thead>
<tbody id="alerts">$alerts</tbody></table></section>
<section><h2>Dead deliveries</h2>
<p class="legend">Given up after every retry. Once the channel or platform works again,
replay one with the admin token:
<code>curl -X POST -H "Authorization: Bearer $$RECEIVER_ADMIN_TOKEN"
$base/v1/deliveries/ID/retry</code></p>
<table><thead><tr><th>Id</th><th>Kind</th><th>Task</th><th>Channel</th><th>Attempts</th>
<th>Last error</th><th>Owed since</th><th>Replay</th></tr></thead>
<tbody id="dead">$dead</tbody></table>$more_dead</section>
</main>"""

LOGIN_BODY = """<main class="narrow"><h1>budget-receiver</h1>
<form method="post" action="/login">
<label for="token">Read or admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password"
 required autofocus>
<button type="submit">Sign in</button>$problem
</form>
<p class="muted">The token is RECEIVER_READ_TOKEN (or RECEIVER_ADMIN_TOKEN) from the daemon's
settings. Signing in sets a session cookie for this page only.</p></main>"""

LOGIN_OFF = """<main class="narrow"><h1>budget-receiver</h1>
<p class="problem">The status page is off: set RECEIVER_READ_TOKEN (or RECEIVER_ADMIN_TOKEN)
to use it.</p></main>"""

CSS = """
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f7f8fa;--card:#fff;
--ok:#1f9d55;--warn:#d08700;--bad:#d92d20;--dead:#7a1212;--done:#98a2b3}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;align-items:center;gap:8px 20px;padding:12px 24px;
background:var(--card);border-bottom:1px solid var(--line)}
header h1{font-size:18px;margin:0}
.who{margin-left:auto;color:var(--muted);font-size:12px}
.signout{display:inline}.signout button{padding:0;background:none;color:inherit;
text-decoration:underline;font-size:12px}
main{padding:8px 24px 24px}
main.narrow{max-width:420px;margin:64px auto;background:var(--card);padding:24px;
border:1px solid var(--line);border-radius:8px}
h2{font-size:15px;margin:18px 0 6px}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line)}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;background:#fbfcfd}
td.spend{width:42%}
.name{font-weight:600;overflow-wrap:anywhere}
.muted,.legend,.note{color:var(--muted)}
.id{font-size:12px;overflow-wrap:anywhere}
.legend,.note{font-size:12px;margin:0 0 6px}
.empty{color:var(--muted);text-align:center}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;
font-weight:600;color:#fff;background:var(--done)}
.badge.s-active{background:var(--ok)}.badge.s-warning{background:var(--warn)}
.badge.s-halting{background:var(--bad)}.badge.s-halted{background:var(--dead)}
.count{margin-right:10px;font-weight:600}
.bar{position:relative;height:14px;margin-top:3px;background:#eef0f3;border-radius:3px}
.bar .fill{position:absolute;left:0;top:0;bottom:0;border-radius:3px;background:var(--ok)}
.bar.s-warning .fill{background:var(--warn)}
.bar.s-halting .fill,.bar.s-halted .fill{background:var(--bad)}
.bar.s-completed .fill{background:var(--done)}
.bar.over .fill{background:repeating-linear-gradient(45deg,var(--bad) 0 6px,var(--dead) 6px 12px)}
.mark{position:absolute;top:-3px;bottom:-3px;width:2px;margin-left:-1px;background:#475467}
.mark.halt{width:3px;margin-left:-3px;background:var(--bad)}
.mark.budget{background:var(--fg)}
.figures{font-size:12px;margin-top:2px}.used{font-weight:600}
.sev{display:inline-block;min-width:56px;font-size:11px;font-weight:600;text-transform:uppercase}
.v-critical{color:var(--bad)}.v-warning{color:var(--warn)}.v-info{color:var(--muted)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}
td.error{max-width:280px;overflow-wrap:anywhere;font-size:12px}
form{display:grid;gap:8px}
input{font:inherit;padding:8px;border:1px solid var(--line);border-radius:6px}
button{font:inherit;padding:8px;border:0;border-radius:6px;background:var(--fg);color:#fff;
cursor:pointer}
.problem{color:var(--bad);font-weight:600;margin:0}
"""
