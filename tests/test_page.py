"""The status page: rendering (pure), its sign-in cookie, and a real browser on a real daemon."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import replace
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from receiver import page
from receiver.auth import SESSION_SECONDS, Role, Tokens
from receiver.model import Delivery, DeliveryStatus, Task, TaskState
from receiver.page import COOKIE, page_routes, read_snapshot
from receiver.page_html import Snapshot, bar, order_tasks, pct, render_login, render_status
from tests.browser import Browser, chromium_or_skip
from tests.daemon import ADMIN_TOKEN, READ_TOKEN, event, running
from tests.servers import HttpSink, Reply
from tests.waiting import poll

D = Decimal
NOW = 1_764_000_000.0
THRESHOLDS = (D("0.5"), D("0.8"), D("0.9"))
XSS = "<script>alert(1)</script>"
HALT_AT = D("1.0")


def task(task_id: str, state: TaskState, spent: str, budget: str | None = "100", **kw: Any) -> Task:
    return Task(
        task_id=task_id,
        source="budget",
        state=state,
        spent=D(spent),
        created_at=NOW - 600,
        updated_at=NOW - 60,
        budget=None if budget is None else D(budget),
        currency="USD",
        **kw,
    )


def delivery(id: int, status: DeliveryStatus, kind: str = "alert", **payload: Any) -> Delivery:
    return Delivery(
        id=id,
        kind=kind,
        channel="json-0a1b2c3d4e",
        task_id=payload.pop("task_id", "t-1"),
        payload=payload,
        idempotency_key=f"k{id}",
        status=status,
        attempts=3 if status is DeliveryStatus.DEAD else 1,
        next_at=NOW - 30,
        created_at=NOW - 90,
        last_error="HTTP 500" if status is DeliveryStatus.DEAD else None,
        delivered_at=NOW - 30 if status is DeliveryStatus.DELIVERED else None,
    )


def render(snapshot: Snapshot, halt_at: Decimal = HALT_AT) -> str:
    return render_status(
        snapshot, thresholds=THRESHOLDS, halt_at=halt_at, now=NOW, role="read",
        base_url="http://receiver.example:8080/",
    )  # fmt: skip


class Text(HTMLParser):
    """The text a person reads in each element with a class, and every tag seen."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.by_class: dict[str, list[str]] = {}
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("meta", "input", "br", "i"):
            return
        cls = dict(attrs).get("class")
        self._open.append(cls.split()[0] if cls else None)
        if cls:
            self.by_class.setdefault(cls.split()[0], []).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("meta", "input", "br", "i") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for cls in self._open:
            if cls:
                self.by_class[cls][-1] += data


# -- rendering (pure) -------------------------------------------------------------------


def test_tasks_are_ordered_halted_halting_warning_then_the_rest() -> None:
    """Halted, halting, warning, active, completed; within a state the most used first."""
    tasks = [
        task("done", TaskState.COMPLETED, "99"),
        task("low", TaskState.ACTIVE, "10"),
        task("nobudget", TaskState.ACTIVE, "5", budget=None),
        task("high", TaskState.ACTIVE, "40"),
        task("warn", TaskState.WARNING, "85"),
        task("halting", TaskState.HALTING, "120"),
        task("halted", TaskState.HALTED, "100"),
    ]
    ordered = [t.task_id for t in order_tasks(tasks)]
    assert ordered == ["halted", "halting", "warn", "high", "low", "nobudget", "done"]
    rows = Text(render(Snapshot(tasks, [], []))).by_class["name"]
    assert rows == ordered  # no name: the id stands in


def test_task_names_and_every_other_field_are_escaped() -> None:
    """Webhook-supplied text is shown literally; the page contains no script element at all."""
    evil_id = '"><img src=x onerror=alert(2)>'
    t = task(evil_id, TaskState.HALTED, "100", task_name=XSS, agent_id="<b>agent</b>")
    recent = [delivery(7, DeliveryStatus.DELIVERED, alert="<i>x</i>", severity="critical",
                       task_id=evil_id, task={"task_name": XSS})]  # fmt: skip
    dead = [replace(delivery(8, DeliveryStatus.DEAD, alert="halted", task_id=evil_id),
                    last_error="<script>alert(3)</script>", channel="<u>ch</u>")]  # fmt: skip
    page_text = render(Snapshot([t], recent, dead))
    parsed = Text(page_text)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "u" not in parsed.tags
    assert "&lt;b&gt;agent&lt;/b&gt;" in page_text
    assert "<script>" not in page_text and "<img" not in page_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_text
    assert parsed.by_class["name"] == [XSS, XSS, XSS]  # task table, alert, dead row
    assert parsed.by_class["error"] == ["<script>alert(3)</script>"]
    assert f'data-task-id="{evil_id}"' not in page_text


def test_bar_width_and_marks() -> None:
    """The fill is spend over the bar's scale; marks at each threshold and at the halt line."""
    b = bar(task("w", TaskState.WARNING, "85"), THRESHOLDS, D("1.0"))
    assert b is not None and b.fill == D("85.00") and not b.over
    assert [(m.left, m.kind) for m in b.marks] == [
        (D("50.00"), "threshold"), (D("80.00"), "threshold"), (D("90.00"), "threshold"),
        (D("100.00"), "halt"),
    ]  # fmt: skip
    # A halt line past the budget: the bar runs to it and marks the budget too.
    b = bar(task("w", TaskState.WARNING, "85"), THRESHOLDS, D("1.2"))
    assert b is not None and b.fill == D("70.83")
    assert [(m.left, m.kind) for m in b.marks][-2:] == [
        (D("83.33"), "budget"),
        (D("100.00"), "halt"),
    ]
    # Spend past the end (after a halt): full and flagged, never wider than the bar.
    b = bar(task("h", TaskState.HALTED, "150"), THRESHOLDS, D("1.0"))
    assert b is not None and b.fill == D("100.00") and b.over
    assert bar(task("n", TaskState.ACTIVE, "5", budget=None), THRESHOLDS, D("1.0")) is None
    html = render(Snapshot([task("w", TaskState.WARNING, "85")], [], []))
    assert 'style="width:85.00%"' in html and 'style="left:90.00%"' in html
    assert Text(html).by_class["used"] == ["85%"]


@pytest.mark.parametrize(
    ("fraction", "text"),
    [("0.85", "85%"), ("1", "100%"), ("0.9996", "99.9%"), ("0.123", "12.3%"), ("0", "0%"),
     ("1.5", "150%")],
)  # fmt: skip
def test_percentages_round_down(fraction: str, text: str) -> None:
    """A task at 99.96 % never reads 100 %."""
    assert pct(D(fraction)) == text


def test_each_state_has_its_badge() -> None:
    """Every state is shown as a badge with its name and a class of its own."""
    tasks = [task(s.value, s, "10") for s in TaskState]
    html = render(Snapshot(tasks, [], []))
    for state in TaskState:
        assert f'<span class="badge s-{state.value}" ' in html
    assert sorted(Text(html).by_class["badge"]) == sorted(
        [s.value for s in TaskState] * 2
    )  # rows + counts


def test_alerts_and_dead_rows_say_what_and_how_to_replay() -> None:
    """Recent alerts show kind, task and channel; a dead row shows its retry call."""
    recent = [
        delivery(9, DeliveryStatus.DELIVERED, alert="threshold", threshold="0.8",
                 severity="warning", task={"task_name": "Research"}),
        delivery(5, DeliveryStatus.DELIVERED, kind="halt", task_id="t-2"),
    ]  # fmt: skip
    dead = [delivery(4, DeliveryStatus.DEAD, alert="halt_failed", severity="critical")]
    html = render(Snapshot([], recent, dead))
    text = Text(html)
    assert "threshold 80%" in html and "halt call" in html and "halt failed" in html
    assert text.by_class["name"] == ["Research", "t-2", "t-1"]
    assert text.by_class["replay"] == ["POST /v1/deliveries/4/retry"]
    assert "http://receiver.example:8080/v1/deliveries/ID/retry" in html
    assert '<meta http-equiv="refresh" content="10">' in html
    empty = render(Snapshot([], [], []))
    assert "No tasks yet." in empty and "No dead deliveries." in empty


def test_login_page_does_not_refresh_and_escapes_its_message() -> None:
    html = render_login(error="<b>no</b>")
    assert "http-equiv" not in html and "&lt;b&gt;no&lt;/b&gt;" in html
    assert 'name="token" type="password"' in html


# -- sessions and routes -----------------------------------------------------------------


def tokens(admin: str | None = ADMIN_TOKEN, read: str | None = READ_TOKEN) -> Tokens:
    return Tokens(
        None if admin is None else SecretStr(admin), None if read is None else SecretStr(read)
    )


def test_session_is_not_the_token_and_expires() -> None:
    """A session grants the token's role until it expires; forged or altered ones nothing."""
    t = tokens()
    read, admin = t.session_for(READ_TOKEN, NOW), t.session_for(ADMIN_TOKEN, NOW)
    assert read is not None and admin is not None
    assert READ_TOKEN not in read and ADMIN_TOKEN not in admin
    assert t.session_role(read, NOW + 5) is Role.READ
    assert t.session_role(admin, NOW + SESSION_SECONDS - 1) is Role.ADMIN
    assert t.session_role(admin, NOW + SESSION_SECONDS) is None  # expired
    assert t.session_role(admin, NOW - 3600) is None  # from the future
    assert t.session_for("wrong", NOW) is None
    assert t.session_role(read.replace("read.", "admin.", 1), NOW) is None  # role swapped
    name, issued, mac = read.split(".")
    assert t.session_role(f"{name}.{int(issued) + 1}.{mac}", NOW) is None  # time moved
    for junk in ("", "read", "read..", "read.\uff11\uff12.x", READ_TOKEN, f"x.{issued}.{mac}"):
        assert t.session_role(junk, NOW) is None
    # Another daemon's tokens (or a rotated one) do not accept it.
    assert tokens(read="another-read-token-0123").session_role(read, NOW) is None
    assert tokens(read=None).session_role(read, NOW) is None


class FakeStore:
    """The three reads the page makes, over lists."""

    def __init__(self, tasks: list[Task], rows: list[Delivery]) -> None:
        self.tasks, self.rows = tasks, rows

    async def list_tasks(
        self, *, state: TaskState | None, after: str | None, limit: int
    ) -> list[Task]:
        found = sorted((t for t in self.tasks if state in (None, t.state)), key=lambda t: t.task_id)
        return [t for t in found if after is None or t.task_id > after][:limit]

    async def list_deliveries(
        self, *, status: DeliveryStatus | None, after: int | None, limit: int
    ) -> list[Delivery]:
        found = [d for d in self.rows if status in (None, d.status) and d.id > (after or 0)]
        return sorted(found, key=lambda d: d.id)[:limit]

    async def recent_deliveries(self, *, status: DeliveryStatus, limit: int) -> list[Delivery]:
        return sorted((d for d in self.rows if d.status is status), key=lambda d: -d.id)[:limit]


class Client:
    """Requests to the page's routes in this process: httpx over ASGI, on one event loop."""

    def __init__(self, app: Starlette, base_url: str) -> None:
        self.runner = asyncio.Runner()
        transport = httpx.ASGITransport(app=app)
        self.http = httpx.AsyncClient(transport=transport, base_url=base_url)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.runner.run(self.http.get(path, **kw))

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.runner.run(self.http.post(path, **kw))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.run(self.http.aclose())
        self.runner.close()


def client(t: Tokens | None = None, store: FakeStore | None = None, https: bool = False) -> Client:
    store = store or FakeStore([task("t-1", TaskState.HALTED, "100", task_name=XSS)], [])
    routes = page_routes(store, t or tokens(), THRESHOLDS, HALT_AT, clock=lambda: NOW)  # type: ignore[arg-type]
    return Client(Starlette(routes=routes), "https://testserver" if https else "http://testserver")


def test_the_page_needs_a_session_and_the_form_sets_it() -> None:
    """/ sends a stranger to /login; the right token sets a strict HttpOnly cookie; POST /logout
    ends it."""
    with client() as c:
        first = c.get("/")
        assert first.status_code == 303 and first.headers["location"] == "/login"
        assert c.get("/login").status_code == 200

        wrong = c.post("/login", data={"token": "guess"})
        assert wrong.status_code == 401 and "neither the read nor the admin" in wrong.text
        assert "set-cookie" not in wrong.headers

        ok = c.post("/login", data={"token": f" {READ_TOKEN} "})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and READ_TOKEN not in cookie
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/", f"max-age={SESSION_SECONDS}"} <= flags
        assert "secure" not in flags  # plain http: a Secure cookie would never come back

        shown = c.get("/")
        assert shown.status_code == 200 and "&lt;script&gt;" in shown.text
        assert "default-src 'none'" in shown.headers["content-security-policy"]
        assert "script-src" not in shown.headers["content-security-policy"]  # none at all
        assert shown.headers["cache-control"] == "no-store"
        assert c.get("/login").headers["location"] == "/"  # signed in already

        assert c.get("/logout").status_code == 405  # a link or an <img> cannot sign out
        assert c.get("/").status_code == 200
        out = c.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert "max-age=0" in out.headers["set-cookie"].lower()
        assert c.get("/").status_code == 303


def test_https_cookie_is_secure_and_admin_token_works() -> None:
    with client(https=True) as c:
        ok = c.post("/login", data={"token": ADMIN_TOKEN})
        assert ok.status_code == 303 and "secure" in ok.headers["set-cookie"].lower()
        assert "admin token" in c.get("/").text


def test_login_refuses_what_is_not_the_form() -> None:
    with client() as c:
        assert c.post("/login", json={"token": READ_TOKEN}).status_code == 415
        too_many = "&".join(f"f{n}=1" for n in range(10))
        assert c.post("/login", content=too_many, headers={
            "content-type": "application/x-www-form-urlencoded"}).status_code == 400  # fmt: skip
        forged = c.get("/", headers={"cookie": f"{COOKIE}=admin.{int(NOW)}.{'0' * 64}"})
        assert forged.status_code == 303
        raw = c.get("/", headers={"cookie": f"{COOKIE}={READ_TOKEN}"})  # the token is no session
        assert raw.status_code == 303


def test_without_tokens_the_page_is_off() -> None:
    with client(tokens(admin=None, read=None)) as c:
        off = c.get("/login")
        assert off.status_code == 403 and "RECEIVER_READ_TOKEN" in off.text
        assert c.post("/login", data={"token": "x"}).status_code == 403
        assert c.get("/").status_code == 303


def test_snapshot_reads_most_urgent_first_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """With more tasks than the page holds, completed and active ones are the ones left out."""
    monkeypatch.setattr(page, "MAX_TASKS", 5)
    monkeypatch.setattr(page, "TASK_PAGE", 2)
    tasks = [task(f"a{n}", TaskState.ACTIVE, "1") for n in range(4)]
    tasks += [task(f"h{n}", TaskState.HALTED, "100") for n in range(3)]
    tasks += [task("w", TaskState.WARNING, "60"), task("c", TaskState.COMPLETED, "1")]
    dead = [delivery(n, DeliveryStatus.DEAD) for n in range(1, 60)]
    delivered = [delivery(n, DeliveryStatus.DELIVERED) for n in range(100, 130)]
    snap = asyncio.run(read_snapshot(FakeStore(tasks, dead + delivered)))  # type: ignore[arg-type]
    assert [t.task_id for t in snap.tasks] == ["h0", "h1", "h2", "w", "a0"] and snap.more_tasks
    assert [d.id for d in snap.recent] == list(range(129, 109, -1))
    assert len(snap.dead) == 50 and snap.dead[0].id == 1 and snap.more_dead

    exact = asyncio.run(read_snapshot(FakeStore(tasks[:5], [])))  # type: ignore[arg-type]
    assert len(exact.tasks) == 5 and not exact.more_tasks


# -- a person with a browser, against the real daemon ------------------------------------

COLLECT = """(() => {
  const text = (el, sel) => { const x = el.querySelector(sel); return x ? x.textContent.trim() : null; };
  const rows = [...document.querySelectorAll('#tasks tr.task')].map(r => {
    const bar = r.querySelector('.bar'), fill = r.querySelector('.bar .fill');
    const w = bar ? bar.getBoundingClientRect().width : 0;
    return {
      id: r.dataset.taskId, name: text(r, '.name'), badge: text(r, '.badge'),
      used: text(r, '.used'),
      fill: bar ? fill.getBoundingClientRect().width / w : null,
      marks: bar ? [...bar.querySelectorAll('.mark')].map(
        m => (m.getBoundingClientRect().left - bar.getBoundingClientRect().left
              + (m.classList.contains('halt') ? m.getBoundingClientRect().width : m.getBoundingClientRect().width / 2)) / w) : [],
      visible: r.getBoundingClientRect().height > 0,
    };
  });
  const cells = sel => [...document.querySelectorAll(sel)].map(r => [...r.cells].map(c => c.textContent.trim()));
  return {
    path: location.pathname, cookie: document.cookie, scripts: document.scripts.length,
    refresh: document.querySelector('meta[http-equiv=refresh]')?.content ?? null,
    rows, alerts: cells('#alerts tr.alert'), dead: cells('#dead tr.dead'),
    deadIds: [...document.querySelectorAll('#dead tr.dead')].map(r => Number(r.dataset.deliveryId)),
    alertIds: [...document.querySelectorAll('#alerts tr.alert')].map(r => Number(r.dataset.deliveryId)),
    title: document.title,
  };
})()"""


@pytest.mark.slow
def test_a_person_signs_in_and_sees_the_status(tmp_path: Path) -> None:
    """Headless Chromium signs in through the form and reads the page as a person would.

    Tasks in every state (one held in ``halting`` by a halt endpoint that never answers),
    alerts delivered to one channel and dead on another, and a task named like a script.
    """
    chromium = chromium_or_skip()
    with HttpSink() as http:
        http.script("/halt/checkout-bot", *[Reply.hanging(120)] * 5)
        http.script("/broken", *[500] * 200)
        config = tmp_path / "apprise.txt"
        config.write_text(
            f"json://127.0.0.1:{http.port}/ok\nwarning=json://127.0.0.1:{http.port}/broken\n"
        )
        settings = {
            "RECEIVER_APPRISE_CONFIG": str(config),
            "RECEIVER_HALT_URL": f"{http.url}/halt/{{task_id}}",
            "RECEIVER_HALT_TIMEOUT_SECONDS": "90",
            "RECEIVER_DELIVERY_MAX_ATTEMPTS": "2",
            "RECEIVER_RETRY_BASE_SECONDS": "0.05",
            "RECEIVER_RETRY_CAP_SECONDS": "0.1",
        }
        with running(tmp_path, settings) as d:
            tasks = [  # id, name, budget, spent
                ("nightly-research", "Nightly research agent", "100", "100"),
                ("checkout-bot", "Purchase via AI Agent", "50", "55"),
                ("summarizer", "Summarizer", "200", "170"),
                ("xss", XSS, "100", "42"),
                ("triage", "Ticket triage", "100", "20"),
                ("report", "Weekly report", "10", "4"),
            ]
            for tid, name, budget, spent in tasks:
                d.post_event(
                    event("task.created", tid, budget=budget, currency="USD", task_name=name)
                )
                assert d.post_event(event("task.spend", tid, spent=spent)).status_code == 202
            d.post_event(event("task.completed", "report"))
            d.wait_state("nightly-research", "halted", timeout=20)
            http.wait_for(1, "/halt/checkout-bot")
            outbox = poll(
                d.deliveries,
                lambda rows: (
                    not any(
                        r["status"] == "pending" and r["task_id"] != "checkout-bot" for r in rows
                    )
                ),
                what="every delivery but the stuck halt call to settle",
                timeout=20,
            )
            dead_ids = sorted(r["id"] for r in outbox if r["status"] == "dead")
            assert dead_ids, "the broken channel should have dead rows"
            assert d.task("checkout-bot")["state"] == "halting"

            with Browser(chromium, tmp_path) as browser:
                browser.goto(d.url + "/")
                assert browser.js("location.pathname") == "/login"  # no session: sent to sign in
                browser.click("#token")
                browser.type(READ_TOKEN)
                browser.click_and_wait("button[type=submit]")
                seen = browser.js(COLLECT)
                cookies = {c["name"]: c for c in browser.cookies()}
                shot = browser.screenshot(tmp_path / "status-page.png")

                # Auto-refresh: the page loads itself again, still signed in.
                browser.clear_events()
                browser.wait_event("Page.loadEventFired", timeout=20)
                assert browser.js("location.pathname") == "/"

                browser.click_and_wait("form[action='/logout'] button")
                assert browser.js("location.pathname") == "/login"
                browser.goto(d.url + "/")
                assert browser.js("location.pathname") == "/login"
                dialogs = browser.dialogs

    target = os.environ.get("RECEIVER_TEST_SCREENSHOT")
    if target:  # how docs/status-page.png is made
        shutil.copyfile(shot, target)

    assert seen["path"] == "/" and seen["refresh"] == "10"
    cookie = cookies[COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert cookie["value"] != READ_TOKEN and seen["cookie"] == ""  # scripts cannot read it
    # The XSS name is text on the page; nothing ran (no script element, no dialog).
    assert seen["scripts"] == 0 and dialogs == []

    rows = seen["rows"]
    assert [(r["id"], r["badge"]) for r in rows] == [
        ("nightly-research", "halted"), ("checkout-bot", "halting"), ("summarizer", "warning"),
        ("xss", "active"), ("triage", "active"), ("report", "completed"),
    ]  # fmt: skip
    assert rows[0]["name"] == "Nightly research agent"
    assert rows[3]["name"] == XSS
    assert [r["used"] for r in rows] == ["100%", "110%", "85%", "42%", "20%", "40%"]
    expected_fill = [1.0, 1.0, 0.85, 0.42, 0.20, 0.40]
    for row, fill in zip(rows, expected_fill, strict=True):
        assert row["visible"] and row["fill"] == pytest.approx(fill, abs=0.01), row
        assert row["marks"] == pytest.approx([0.5, 0.8, 0.9, 1.0], abs=0.01), row

    # Recent alerts: what the API says was delivered, newest first.
    delivered = sorted((r["id"] for r in outbox if r["status"] == "delivered"), reverse=True)
    assert seen["alertIds"] == delivered[:20]
    halted = [
        c for c in seen["alerts"] if c[0].endswith(" halted") and "Nightly research agent" in c[1]
    ]
    assert halted and halted[0][3].endswith(" ago")
    # Dead deliveries: every dead row, each with the call that replays it.
    assert sorted(seen["deadIds"]) == dead_ids
    for cells, dead_id in zip(seen["dead"], seen["deadIds"], strict=True):
        assert cells[-1] == f"POST /v1/deliveries/{dead_id}/retry"
    assert shot.stat().st_size > 10_000


def test_only_the_page_itself_signs_out(tmp_path: Path) -> None:
    """Through the daemon: GET /logout is 405 and a post from another site is 403, both
    leaving the person signed in; the page's own sign-out form (a POST) ends the session."""
    with running(tmp_path) as d, httpx.Client(base_url=d.url) as browser:
        assert browser.post("/login", data={"token": READ_TOKEN}).status_code == 303
        page_html = browser.get("/").text
        assert '<form class="signout" method="post" action="/logout">' in page_html
        assert 'href="/logout"' not in page_html

        by_link = browser.get("/logout")
        assert (by_link.status_code, by_link.json()["error"]) == (405, "method_not_allowed")
        from_elsewhere = browser.post("/logout", headers={"sec-fetch-site": "cross-site"})
        assert (from_elsewhere.status_code, from_elsewhere.json()["error"]) == (403, "cross_site")
        assert "set-cookie" not in by_link.headers and "set-cookie" not in from_elsewhere.headers
        assert browser.get("/").status_code == 200  # still signed in

        out = browser.post("/logout", headers={"sec-fetch-site": "same-origin"})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert browser.get("/").status_code == 303
