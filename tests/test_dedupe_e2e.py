"""Through `budget-receiver serve`: dedupe is per source, so no sender can use up an id of
the receiver's own follow-up events (halt confirmed, halt failed) and silence them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.daemon import event, running
from tests.servers import HttpSink

pytestmark = pytest.mark.slow


def settings_for(http: HttpSink, **extra: str) -> dict[str, str]:
    return {
        "RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{http.port}/a",
        "RECEIVER_HALT_URL": f"{http.url}/tasks/{{task_id}}/halt",
        "RECEIVER_RETRY_BASE_SECONDS": "0.05",
        "RECEIVER_RETRY_CAP_SECONDS": "0.2",
        **extra,
    }


def test_a_sender_using_the_halt_confirmed_id_first_does_not_stop_the_halt(
    tmp_path: Path,
) -> None:
    """A signed sender event with webhook-id `task.halt_confirmed:1` (the id the receiver
    gives the confirmation of outbox row 1) is accepted; the real confirmation of that row
    still halts the task and sends its halted alert."""
    t = f"t-{uuid.uuid4().hex[:8]}"
    with HttpSink() as http, running(tmp_path, settings_for(http)) as d:
        created = d.post_event(
            event("task.created", t, budget="10", currency="USD"), msg_id="task.halt_confirmed:1"
        )
        assert created.status_code == 202, created.text
        # The limit owes one halt call and nothing else: outbox row 1.
        assert d.post_event(event("task.spend", t, spent="10")).json()["state"] == "halting"
        rows = d.api("GET", "/v1/deliveries").json()["deliveries"]
        assert [r["id"] for r in rows if r["kind"] == "halt"] == [1]
        http.wait_for(1, f"/tasks/{t}/halt")
        d.wait_state(t, "halted")
        (alert,) = http.wait_for(1, "/a")
        assert alert.json["title"].startswith("Task halted"), alert.json
        timeline = [(e["event_id"], e["source"]) for e in d.events(t)]
        assert ("task.halt_confirmed:1", "budget") in timeline
        assert ("task.halt_confirmed:1", "receiver") in timeline


def test_a_sender_using_the_halt_failed_id_first_does_not_silence_the_failure(
    tmp_path: Path,
) -> None:
    """With `task.halt_failed:1` taken by a sender first, a halt call that fails for good
    still raises the critical "could not halt" alert."""
    t = f"t-{uuid.uuid4().hex[:8]}"
    with HttpSink() as http:
        http.script(f"/tasks/{t}/halt", 500)
        with running(tmp_path, settings_for(http, RECEIVER_DELIVERY_MAX_ATTEMPTS="1")) as d:
            created = d.post_event(
                event("task.created", t, budget="10", currency="USD"), msg_id="task.halt_failed:1"
            )
            assert created.status_code == 202, created.text
            d.post_event(event("task.spend", t, spent="10"))
            (alert,) = http.wait_for(1, "/a", timeout=15)
            assert "could not halt" in alert.json["title"], alert.json
            assert d.task(t)["state"] == "halting"
            timeline = [(e["event_id"], e["source"]) for e in d.events(t)]
            assert ("task.halt_failed:1", "receiver") in timeline
