"""End to end through `budget-receiver serve`: signed events in, task API out (SQLite)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.verify import sign
from tests.daemon import READ_TOKEN, SECRET, Daemon, event, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("ingest")) as d:
        yield d


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def snapshot(d: Daemon, task_id: str) -> tuple[Any, Any]:
    """Everything a bad request must leave alone: the task view and its timeline."""
    task = d.api("GET", f"/v1/tasks/{task_id}")
    events = d.api("GET", f"/v1/tasks/{task_id}/events")
    return task.json(), events.json()


def test_task_moves_through_its_states(daemon: Daemon) -> None:
    """created -> warning at 50 % -> halted at 100 % -> gate says no -> resume -> allowed."""
    tid = new_id()
    r = daemon.post_event(event("task.created", tid, budget="100.00", currency="USD",
                                task_name="Purchase via AI Agent", agent_id="agent-7"))  # fmt: skip
    assert r.status_code == 202 and r.json()["state"] == "active"
    assert daemon.post_event(event("task.spend", tid, spent="55.10")).json()["state"] == "warning"
    view = daemon.task(tid)
    assert view["spent"] == "55.10" and view["remaining"] == "44.90"
    assert view["thresholds_alerted"] == ["0.5"] and view["allowed"] is True

    assert daemon.post_event(event("task.spend", tid, spent="100")).json()["state"] == "halted"
    gate = daemon.api("POST", f"/v1/tasks/{tid}/authorize", token=READ_TOKEN, json={"amount": 1})
    assert gate.status_code == 402 and gate.json()["reason"] == "halted"

    resumed = daemon.api(
        "POST", f"/v1/tasks/{tid}/resume",
        json={"budget": "250", "reason": "approved by finance", "actor": "alice"},
    )  # fmt: skip
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["state"] == "active" and resumed.json()["budget"] == "250"
    gate = daemon.api("POST", f"/v1/tasks/{tid}/authorize", token=READ_TOKEN, json={"amount": "5"})
    assert gate.status_code == 200 and gate.json()["allowed"] is True

    timeline = daemon.api("GET", f"/v1/tasks/{tid}/events").json()["events"]
    assert [e["type"] for e in timeline] == [
        "task.created", "task.spend", "task.spend", "task.resumed",
    ]  # fmt: skip
    assert timeline[-1]["payload"]["actor"] == "alice"
    assert timeline[-1]["payload"]["reason"] == "approved by finance"


def test_flat_body_on_the_alias_route(daemon: Daemon) -> None:
    """The seed article's flat body on /webhooks/budget-tracking is the same event."""
    tid = new_id()
    daemon.post_event({"event": "task.created", "task_id": tid, "budget": 10, "currency": "EUR"})
    r = daemon.post_event(
        {"event": "task_budget_reached", "task_id": tid}, path="/webhooks/budget-tracking"
    )
    assert r.status_code == 202
    assert daemon.task(tid)["state"] == "halted"


def test_duplicate_webhook_id_is_applied_once(daemon: Daemon) -> None:
    """The same webhook-id twice: 200 duplicate, the increment counted once."""
    tid = new_id()
    daemon.post_event(event("task.created", tid, budget="100", currency="USD"))
    first = daemon.post_event(event("task.spend", tid, amount="7.5"), msg_id="msg-dup-" + tid)
    again = daemon.post_event(event("task.spend", tid, amount="7.5"), msg_id="msg-dup-" + tid)
    assert first.status_code == 202
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert daemon.task(tid)["spent"] == "7.5"


def test_money_is_exact_decimal(daemon: Daemon) -> None:
    """0.1 + 0.2 as JSON numbers is exactly 0.3, never a float's 0.30000000000000004."""
    tid = new_id()
    daemon.post_event(event("task.created", tid, budget=1, currency="USD"))
    daemon.post_event(event("task.spend", tid, amount=0.1))
    daemon.post_event(event("task.spend", tid, amount=0.2))
    assert daemon.task(tid)["spent"] == "0.3"


def test_unknown_type_is_ignored(daemon: Daemon) -> None:
    """An event type the receiver does not know is answered 200 ignored and stored nowhere."""
    tid = new_id()
    r = daemon.post_event(event("task.paused", tid))
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert daemon.api("GET", f"/v1/tasks/{tid}").status_code == 404


def _raw_post(d: Daemon, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(d.url + "/webhooks/budget", content=body, headers=headers, timeout=30)


def _signed(body: bytes, **over: str) -> dict[str, str]:
    headers = sign(SECRET, "msg_" + uuid.uuid4().hex, int(time.time()), body)
    headers["content-type"] = "application/json"
    headers.update(over)
    return headers


BAD = "whsec_" + "QmFkU2VjcmV0QmFkU2VjcmV0QmFk"


def _cases(tid: str) -> list[tuple[str, int, str, bytes, dict[str, str]]]:
    good = json.dumps(event("task.spend", tid, spent="99")).encode()

    def body(**data: Any) -> bytes:
        return json.dumps(event("task.spend", tid, **data)).encode()

    big = json.dumps(event("task.spend", tid, spent="99", pad="x" * 70000)).encode()
    old = sign(SECRET, "msg_old", int(time.time()) - 3600, good)
    return [
        ("malformed JSON", 400, "malformed_json", b'{"type": ', _signed(b'{"type": ')),
        ("wrong secret", 401, "invalid_signature", good,
         {**sign(BAD, "msg_x", int(time.time()), good), "content-type": "application/json"}),
        ("tampered body", 401, "invalid_signature", body(spent="1000"), _signed(good)),
        ("no signature", 401, "missing_signature", good, {"content-type": "application/json"}),
        ("stale timestamp", 401, "stale_timestamp", good, {**old, "content-type": "application/json"}),
        ("garbage timestamp", 401, "invalid_signature", good, _signed(good, **{"webhook-timestamp": "soon"})),
        ("garbage signature", 401, "invalid_signature", good, _signed(good, **{"webhook-signature": "v1"})),
        ("too large", 413, "payload_too_large", big, _signed(big)),
        ("not JSON", 415, "unsupported_media_type", good, _signed(good, **{"content-type": "text/plain"})),
        ("negative", 422, "invalid_money", body(spent="-5"), _signed(body(spent="-5"))),
        ("NaN", 422, "invalid_money", body(spent="NaN"), _signed(body(spent="NaN"))),
        ("Infinity", 422, "invalid_money", body(spent="Infinity"), _signed(body(spent="Infinity"))),
        ("lower-case currency", 422, "invalid_currency", body(spent="1", currency="usd"),
         _signed(body(spent="1", currency="usd"))),
        ("currency mismatch", 422, "currency_mismatch", body(spent="1", currency="EUR"),
         _signed(body(spent="1", currency="EUR"))),
        ("no spent or amount", 422, "missing_field", body(), _signed(body())),
    ]  # fmt: skip


def test_bad_input_gets_a_clear_error_and_changes_nothing(daemon: Daemon) -> None:
    """Every bad request: its status and error code, and the task exactly as before."""
    tid = new_id()
    daemon.post_event(event("task.created", tid, budget="100", currency="USD"))
    daemon.post_event(event("task.spend", tid, spent="10"))
    before = snapshot(daemon, tid)
    for name, status, code, body, headers in _cases(tid):
        r = _raw_post(daemon, body, headers)
        assert (name, r.status_code, r.json().get("error")) == (name, status, code), r.text
        assert r.json()["detail"], name
        assert snapshot(daemon, tid) == before, name


def test_oversized_body_without_content_length_is_cut_off(daemon: Daemon) -> None:
    """A chunked body with no Content-Length is refused once it passes the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"type": "task.spend", "data": {"pad": "'
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}}'

    headers = {"content-type": "application/json", "webhook-id": "m", "webhook-timestamp": "1",
               "webhook-signature": "v1,AAAA"}  # fmt: skip
    r = httpx.post(daemon.url + "/webhooks/budget", content=chunks(), headers=headers, timeout=30)
    assert r.status_code == 413


def test_api_needs_the_right_token(daemon: Daemon) -> None:
    """No token 401, wrong token 401, read token cannot resume (403)."""
    tid = new_id()
    daemon.post_event(event("task.created", tid, budget="5", currency="USD"))
    assert httpx.get(daemon.url + "/v1/tasks").status_code == 401
    assert daemon.api("GET", "/v1/tasks", token="wrong-token-wrong-token").status_code == 401
    assert daemon.api("GET", "/v1/tasks", token=READ_TOKEN).status_code == 200
    r = daemon.api("POST", f"/v1/tasks/{tid}/resume", token=READ_TOKEN,
                   json={"budget": "9", "reason": "x"})  # fmt: skip
    assert r.status_code == 403


def test_resume_rules(daemon: Daemon) -> None:
    """Resume: 409 when not halted, 422 when the budget is not above the spend, 404 unknown."""
    tid = new_id()
    daemon.post_event(event("task.created", tid, budget="10", currency="USD"))
    r = daemon.api("POST", f"/v1/tasks/{tid}/resume", json={"budget": "20", "reason": "x"})
    assert (r.status_code, r.json()["error"]) == (409, "not_halted")
    daemon.post_event(event("task.spend", tid, spent="12"))
    r = daemon.api("POST", f"/v1/tasks/{tid}/resume", json={"budget": "12", "reason": "x"})
    assert (r.status_code, r.json()["error"]) == (422, "budget_not_above_spent")
    assert daemon.task(tid)["state"] == "halted"
    r = daemon.api("POST", "/v1/tasks/nope/resume", json={"budget": "12", "reason": "x"})
    assert r.status_code == 404


def test_list_filters_and_pages(daemon: Daemon) -> None:
    """GET /v1/tasks filters by state and pages with `next`."""
    prefix = new_id("page")
    for n in range(5):
        daemon.post_event(event("task.created", f"{prefix}-{n}", budget="1", currency="USD"))
    daemon.post_event(event("task.completed", f"{prefix}-3"))
    seen: list[str] = []
    after = prefix
    while True:
        page = daemon.api("GET", "/v1/tasks", params={"limit": 2, "after": after}).json()
        seen += [t["task_id"] for t in page["tasks"] if t["task_id"].startswith(prefix)]
        if page["next"] is None or not page["next"].startswith(prefix):
            break
        after = page["next"]
    assert seen == [f"{prefix}-{n}" for n in range(5)]
    done = daemon.api("GET", "/v1/tasks", params={"state": "completed"}).json()["tasks"]
    assert f"{prefix}-3" in [t["task_id"] for t in done]
    bad = daemon.api("GET", "/v1/tasks", params={"state": "sleeping"})
    assert bad.status_code == 400


def test_storage_failure_is_503_and_changes_nothing(tmp_path: Path) -> None:
    """With the database locked by someone else, a webhook gets 503 (retry later), not a 2xx."""
    with running(tmp_path) as d:
        tid = new_id()
        d.post_event(event("task.created", tid, budget="10", currency="USD"))
        lock = sqlite3.connect(tmp_path / "receiver.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            r = d.post_event(event("task.spend", tid, spent="5"))
            assert r.status_code == 503 and r.json()["error"] == "storage_unavailable"
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert d.task(tid)["spent"] == "0"
        assert d.post_event(event("task.spend", tid, spent="5")).status_code == 202


def _page(d: Daemon) -> httpx.Response:
    """The status page, signed in with the read token."""
    with httpx.Client(base_url=d.url, timeout=30) as client:
        client.post("/login", data={"token": READ_TOKEN})
        return client.get("/")


def test_money_of_any_scale_never_breaks_a_view(daemon: Daemon) -> None:
    """A budget of 1E-12 with the largest spend, and an amount of 1E-999999: accepted within
    a bounded scale (12 decimal places, finer digits rounded), and every view (task, list,
    timeline, status page) still answers 200 with a small body."""
    tiny, crumbs = new_id("tiny"), new_id("crumbs")
    daemon.post_event(event("task.created", tiny, budget="1E-12", currency="USD"))
    daemon.post_event(event("task.spend", tiny, spent="999999999999999.999999999999"))
    daemon.post_event(event("task.created", crumbs, budget="10", currency="USD"))
    assert daemon.post_event(event("task.spend", crumbs, amount="1E-999999")).status_code == 202
    assert daemon.post_event(event("task.spend", crumbs, amount=0.1 + 0.2)).status_code == 202
    for path in (
        f"/v1/tasks/{tiny}",
        f"/v1/tasks/{crumbs}",
        "/v1/tasks",
        f"/v1/tasks/{crumbs}/events",
    ):
        r = daemon.api("GET", path, params={"limit": 500})
        assert r.status_code == 200 and len(r.content) < 200_000, (path, len(r.content))
    assert daemon.task(crumbs)["spent"] == "0.3"
    assert daemon.task(tiny)["state"] == "halted"
    page = _page(daemon)
    assert page.status_code == 200 and tiny in page.text
