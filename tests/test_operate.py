"""Operating the daemon: /metrics in Prometheus text, JSON log lines without secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import ADMIN_TOKEN, READ_TOKEN, SECRET, cli, event, running
from tests.servers import HttpSink
from tests.waiting import poll

pytestmark = pytest.mark.slow
METRICS_TOKEN = "metrics-scrape-token-0123456789"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_what_happened(tmp_path: Path) -> None:
    """Events by outcome, signature failures, transitions, tasks by state, deliveries, halts."""
    with HttpSink() as sink, running(tmp_path, {
        "RECEIVER_METRICS_TOKEN": METRICS_TOKEN,
        "RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{sink.port}/a",
        "RECEIVER_HALT_URL": f"{sink.url}/halt/{{task_id}}",
    }) as d:  # fmt: skip
        assert httpx.get(d.url + "/metrics").status_code == 401
        d.post_event(event("task.created", "m-1", budget="10", currency="USD"))
        d.post_event(event("task.spend", "m-1", spent="6"), msg_id="dup-1")
        d.post_event(event("task.spend", "m-1", spent="6"), msg_id="dup-1")
        d.post_event(event("task.spend", "m-1", spent="10"))
        d.post_event(event("task.spend", "m-1", spent="-1"))
        d.post_event(
            event("task.spend", "m-1", spent="1"), secret="whsec_" + "V3JvbmdXcm9uZ1dyb25nV3Jvbmc="
        )
        sink.wait_for(1, "/halt/m-1")
        sink.wait_for(2, "/a")

        def scrape() -> httpx.Response:
            return httpx.get(
                d.url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
            )

        r = scrape()
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        # The sink saw the calls before the daemon recorded their results: wait for those.
        found = poll(
            lambda: samples(scrape().text),
            lambda found: (
                ("receiver_outbox_pending", frozenset()) in found
                and value(found, "receiver_outbox_pending") == 0
                and value(found, "receiver_tasks", state="halted") == 1
            ),
            what="the halt call and both alerts to be recorded as made",
        )
    ev = "receiver_events_total"
    assert value(found, ev, source="budget", outcome="accepted", reason="") == 3
    assert value(found, ev, source="budget", outcome="duplicate", reason="") == 1
    assert value(found, ev, source="budget", outcome="rejected", reason="invalid_money") == 1
    assert value(found, ev, source="budget", outcome="rejected", reason="invalid_signature") == 1
    assert value(found, "receiver_signature_failures_total", source="budget") == 1
    tr = "receiver_state_transitions_total"
    assert value(found, tr, from_state="new", to_state="active") == 1
    assert value(found, tr, from_state="active", to_state="warning") == 1
    assert value(found, tr, from_state="warning", to_state="halting") == 1
    assert value(found, tr, from_state="halting", to_state="halted") == 1
    assert value(found, "receiver_tasks", state="halted") == 1
    assert value(found, "receiver_deliveries_total", channel_type="halt", outcome="delivered") == 1
    assert value(found, "receiver_deliveries_total", channel_type="json", outcome="delivered") == 2
    assert value(found, "receiver_outbox_pending") == 0
    assert value(found, "receiver_time_to_halt_seconds_count") == 1
    assert value(found, "receiver_halt_call_seconds_count", outcome="done") == 1
    assert value(found, "receiver_http_request_seconds_count", route="/webhooks/budget",
                 method="POST", status="202") == 3  # fmt: skip


def test_logs_are_json_lines_with_event_fields_and_no_secrets(tmp_path: Path) -> None:
    """JSON logs: one line per event with id, task and outcome; no secret anywhere."""
    password = "s3cr3t-channel-password"
    with HttpSink() as sink:
        settings = {
            "RECEIVER_LOG_FORMAT": "json",
            "RECEIVER_NOTIFY_URLS": f"json://bob:{password}@127.0.0.1:{sink.port}/a",
            "RECEIVER_HALT_URL": f"http://halter:{password}@127.0.0.1:{sink.port}/h/{{task_id}}",
            "RECEIVER_HALT_TOKEN": "halt-token-abcdefghijklmnop",
        }
        with running(tmp_path, settings) as d:
            d.post_event(event("task.created", "log-1", budget="10", currency="USD"), msg_id="ev-1")
            d.post_event(event("task.spend", "log-1", spent="10"), msg_id="ev-2")
            d.post_event(event("task.spend", "log-1", spent="x"), msg_id="ev-3")
            sink.wait_for(1, "/h/log-1")
            sink.wait_for(1, "/a")
            # Their results are logged too (with the channel's URL, redacted): wait for them.
            poll(
                d.log,
                lambda text: (
                    "task log-1 halted by the platform" in text
                    and "for task log-1 delivered to" in text
                ),
                what="the deliveries' log lines",
                context=lambda: d.log()[-3000:],
            )
        text = d.log()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    by_event = {x.get("event_id"): x for x in lines if x.get("event_id")}
    assert by_event["ev-1"]["outcome"] == "accepted" and by_event["ev-1"]["task_id"] == "log-1"
    assert by_event["ev-2"]["state"] == "halting"
    rejected = [x for x in lines if x.get("outcome") == "rejected"]
    assert len(rejected) == 1 and rejected[0]["reason"] == "invalid_money"
    msgs = " ".join(x["msg"] for x in lines)
    assert "listening on" in msgs and "store:" in msgs and "alert channels:" in msgs
    assert "halting: calls out" in msgs
    for secret in (password, SECRET, ADMIN_TOKEN, READ_TOKEN, "halt-token-abcdefghijklmnop"):
        assert secret not in text


def test_two_worker_processes_share_one_store(tmp_path: Path) -> None:
    """RECEIVER_WORKERS=2: two processes answer on one port over one store; SIGTERM stops both."""
    with running(tmp_path, {"RECEIVER_WORKERS": "2", "RECEIVER_LOG_FORMAT": "text"}) as d:
        with httpx.Client() as client:
            for _ in range(40):
                r = d.post_event(event("task.spend", "w-1", amount="1.25"), client=client)
                assert r.status_code == 202, r.text
        assert d.task("w-1")["spent"] == "50.00"
    assert d.proc is not None and d.proc.returncode == 0
    started = re.findall(r"Started server process \[(\d+)\]", d.log())
    assert len(set(started)) == 2, d.log()
    assert d.log().count("Application shutdown complete.") == 2
    assert "Traceback" not in d.log()


def test_a_store_that_cannot_open_is_one_clear_line(tmp_path: Path) -> None:
    """A database that cannot be opened stops `serve` with exit 3 and one line, no traceback."""
    env = tmp_path / "bad.env"
    env.write_text(
        "RECEIVER_ALLOW_UNSIGNED=true\n"
        f"RECEIVER_DATABASE_URL=sqlite:///{tmp_path}/not-a-dir/receiver.db\n"
    )
    (tmp_path / "not-a-dir").write_text("a file where the directory should be")
    out = cli("serve", env_file=env)
    assert out.returncode == 3, out.stderr
    assert "cannot open SQLite database" in out.stderr
    assert "Traceback" not in out.stderr
