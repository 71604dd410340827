"""Whatever id the daemon accepts, it can halt and alert: end to end through `serve`.

Task ids, webhook ids and the other sources' ids are untrusted text. An id that is
accepted must reach the platform's halt endpoint as exactly one path segment with an
ASCII Idempotency-Key; an id that cannot (``.``, ``..``) is refused at ingest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from receiver.verify import sign
from tests.daemon import SECRET, Daemon, event, running
from tests.fixtures.sources_kit import budget_data, pubsub_push
from tests.servers import HttpSink
from tests.waiting import poll

pytestmark = pytest.mark.slow
GCP_TOKEN = "gcp-push-token-0123456789"


@pytest.fixture(scope="module")
def http() -> Iterator[HttpSink]:
    with HttpSink() as sink:
        yield sink


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, http: HttpSink) -> Iterator[Daemon]:
    """One daemon for the module: each test uses task ids of its own."""
    settings = {
        "RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{http.port}/alerts",
        "RECEIVER_HALT_URL": f"{http.url}/api/tasks/{{task_id}}/cancel",
        "RECEIVER_HALT_TOKEN": "platform-token-0123456789",
        "RECEIVER_RETRY_BASE_SECONDS": "0.05",
        "RECEIVER_RETRY_CAP_SECONDS": "0.1",
        "RECEIVER_DELIVERY_MAX_ATTEMPTS": "3",
        "RECEIVER_GCP_TOKEN": GCP_TOKEN,
    }
    with running(tmp_path_factory.mktemp("ids"), settings) as d:
        yield d


def halted_alert_for(alert: dict[str, str], task_id: str) -> bool:
    return alert["title"].startswith("Task halted") and task_id[:100] in alert["message"]


def cancel_path(task_id: str) -> str:
    return f"/api/tasks/{quote(task_id, safe='')}/cancel"


@pytest.mark.parametrize("task_id", ["ümlaut", "予算-7", "emoji 🚀/run", "x" * 256])
def test_any_accepted_task_id_is_halted_by_the_platform(
    daemon: Daemon, http: HttpSink, task_id: str
) -> None:
    """Non-ASCII, spaces, '/', the longest id: one halt call to one path segment with an
    ASCII Idempotency-Key, then halted, with the halted alert naming the task."""
    daemon.post_event(event("task.created", task_id, budget="10", currency="USD"))
    assert daemon.post_event(event("task.spend", task_id, spent="10")).status_code == 202
    (call,) = http.wait_for(1, cancel_path(task_id))
    assert call.headers["idempotency-key"].isascii()
    assert call.json["task_id"] == task_id
    daemon.wait_state(task_id, "halted")
    poll(
        lambda: [a.json for a in http.requests_to("/alerts") if halted_alert_for(a.json, task_id)],
        what=f"a halted alert for {task_id!r}",
        timeout=10,
    )
    assert len(http.requests_to(cancel_path(task_id))) == 1


def test_a_non_ascii_webhook_id_still_halts(daemon: Daemon, http: HttpSink) -> None:
    """A webhook-id with a non-ASCII character (sent as latin-1 bytes, as HTTP allows) is
    stored as the event id; the halt it owes still goes out and the task is halted."""
    daemon.post_event(event("task.created", "t-wid", budget="5", currency="USD"))
    body = json.dumps(event("task.spend", "t-wid", spent="5")).encode()
    msg_id = "msg-ünïcode-1"
    headers: dict[str, str | bytes] = dict(sign(SECRET, msg_id, int(time.time()), body))
    headers["webhook-id"] = msg_id.encode("latin-1")
    headers["content-type"] = "application/json"
    response = httpx.post(daemon.url + "/webhooks/budget", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == msg_id
    (call,) = http.wait_for(1, cancel_path("t-wid"))
    assert call.headers["idempotency-key"].isascii()
    daemon.wait_state("t-wid", "halted")


def test_a_non_ascii_gcp_budget_id_is_halted(daemon: Daemon, http: HttpSink) -> None:
    """GCP budgetId and messageId come in the body and may be any text: still haltable."""
    push = pubsub_push(
        budget_data(120.0, 100.0, threshold=1.0), budget_id="bü∂get", message_id="mé"
    )
    response = httpx.post(
        daemon.url + "/webhooks/gcp-billing",
        json=push,
        headers={"authorization": f"Bearer {GCP_TOKEN}"},
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert task_id == "gcp:bü∂get:2026-11-01"
    http.wait_for(1, cancel_path(task_id))
    daemon.wait_state(task_id, "halted")


@pytest.mark.parametrize("task_id", [".", ".."])
def test_dot_segment_task_ids_are_refused_at_ingest(
    daemon: Daemon, http: HttpSink, task_id: str
) -> None:
    """'.' and '..' would make the halt URL name another path (POST /api/tasks/cancel,
    POST /api/cancel) with the halt token: refused with 422, nothing stored, nothing called."""
    for doc in (
        event("task.created", task_id, budget="1", currency="USD"),
        {"event": "task_budget_reached", "task_id": task_id},
    ):
        response = daemon.post_event(doc)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_task_id"
        assert "path segment" in response.json()["detail"]
    tasks = daemon.api("GET", "/v1/tasks", params={"limit": 500}).json()["tasks"]
    assert task_id not in [t["task_id"] for t in tasks]
    assert task_id not in [r["task_id"] for r in daemon.deliveries()]  # nothing owed, so ...
    daemon.wait_settled()  # ... once the rest is made, nothing went to the wrong path either
    assert not [r for r in http.requests if r.path in ("/api/cancel", "/api/tasks/cancel")]
