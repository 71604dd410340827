"""End to end through `budget-receiver serve`: alerts through apprise, halt calls, retries."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, cli, event, running
from tests.servers import HttpSink, Reply, SmtpSink
from tests.waiting import poll

pytestmark = pytest.mark.slow


def tid() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sinks() -> Iterator[tuple[HttpSink, SmtpSink]]:
    with HttpSink() as http, SmtpSink() as smtp:
        yield http, smtp


def settings_for(http: HttpSink, smtp: SmtpSink | None = None, **extra: str) -> dict[str, str]:
    urls = [f"json://127.0.0.1:{http.port}/a", f"json://127.0.0.1:{http.port}/b"]
    if smtp is not None:
        urls.append(smtp.url())
    return {
        "RECEIVER_NOTIFY_URLS": " ".join(urls),
        "RECEIVER_HALT_URL": f"{http.url}/tasks/{{task_id}}/halt",
        "RECEIVER_HALT_TOKEN": "platform-token-0123456789",
        "RECEIVER_RETRY_BASE_SECONDS": "0.05",
        "RECEIVER_RETRY_CAP_SECONDS": "0.2",
        **extra,
    }


def test_crossing_sends_one_alert_per_channel(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    """A threshold crossing: one alert on each json channel and one email, with the facts."""
    http, smtp = sinks
    with running(tmp_path, settings_for(http, smtp)) as d:
        t = tid()
        d.post_event(
            event("task.created", t, budget="100", currency="USD", task_name="Research agent")
        )
        assert d.post_event(event("task.spend", t, spent="85")).status_code == 202
        a = http.wait_for(1, "/a")
        b = http.wait_for(1, "/b")
        mail = smtp.wait_for(1)
        d.wait_settled(t)  # every alert owed is made: a second, wrong, one would be here too
        assert len(http.requests_to("/a")) == len(http.requests_to("/b")) == 1
        assert len(smtp.messages) == 1
        for req in (a[0], b[0]):
            doc = req.json
            assert "Research agent" in doc["title"] and "80%" in doc["title"]
            assert "85 USD of 100 USD" in doc["message"]
            assert doc["type"] == "warning"
        assert "Research agent" in mail[0]["Subject"]
        body = mail[0].get_body(("plain", "html"))
        assert body is not None and "85 USD of 100 USD" in body.get_content()


def test_halt_is_called_once_and_the_task_is_halted(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    """Reaching the limit: one halt call with the documented body and headers, then halted."""
    http, _ = sinks
    with running(tmp_path, settings_for(http)) as d:
        t = tid()
        d.post_event(event("task.created", t, budget="10.00", currency="EUR"))
        assert d.post_event(event("task.spend", t, spent="10.00")).json()["state"] == "halting"
        d.post_event(event("task.spend", t, spent="11.00"))  # spend after halt: no second halt
        halt = http.wait_for(1, f"/tasks/{t}/halt")[0]
        assert halt.method == "POST"
        assert halt.headers["authorization"] == "Bearer platform-token-0123456789"
        assert halt.headers["idempotency-key"]
        assert halt.json == {"task_id": t, "reason": "limit_reached", "spent": "10.00",
                               "budget": "10.00", "currency": "EUR"}  # fmt: skip
        d.wait_state(t, "halted")
        alerts = http.wait_for(2, "/a")  # halted, then spend_after_halt (order may vary)
        kinds = sorted(r.json["title"].split(":")[0] for r in alerts)
        assert kinds == ["Spend after halt", "Task halted"], kinds
        d.wait_settled(t)
        assert len(http.requests_to(f"/tasks/{t}/halt")) == 1


def test_a_short_halt_token_of_the_platforms_choosing_starts_and_is_sent(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    """The platform chooses its halt token: a short one starts the daemon and goes out as is
    (it used to stop start-up with "use at least 16 characters")."""
    http, _ = sinks
    with running(tmp_path, settings_for(http, RECEIVER_HALT_TOKEN="pk_7Qx")) as d:
        t = tid()
        d.post_event(event("task.created", t, budget="1", currency="USD"))
        assert d.post_event(event("task.spend", t, spent="1")).json()["state"] == "halting"
        halt = http.wait_for(1, f"/tasks/{t}/halt")[0]
        assert halt.headers["authorization"] == "Bearer pk_7Qx"
        d.wait_state(t, "halted")


def test_platform_failing_twice_gets_three_calls_with_one_key(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    """500, then 429 with Retry-After, then 200: three calls, one Idempotency-Key, halted."""
    http, _ = sinks
    t = tid()
    http.script(f"/tasks/{t}/halt", 500, Reply.retry_after("0"), 200)
    with running(tmp_path, settings_for(http)) as d:
        d.post_event(event("task.created", t, budget="1", currency="USD"))
        d.post_event(event("task.budget_reached", t))
        calls = http.wait_for(3, f"/tasks/{t}/halt", timeout=15)
        d.wait_state(t, "halted")
        assert len({c.headers["idempotency-key"] for c in calls}) == 1
        d.wait_settled(t)
        assert len(http.requests_to(f"/tasks/{t}/halt")) == 3


def test_dead_halt_owes_a_critical_alert_and_can_be_replayed(
    tmp_path: Path, sinks: tuple[HttpSink, SmtpSink]
) -> None:
    """The platform keeps failing: the halt goes dead, the task stays halting, people are told;
    after the platform is fixed, POST /v1/deliveries/{id}/retry halts it."""
    http, _ = sinks
    t = tid()
    http.script(f"/tasks/{t}/halt", 503, 503)
    with running(tmp_path, settings_for(http, RECEIVER_DELIVERY_MAX_ATTEMPTS="2")) as d:
        d.post_event(event("task.created", t, budget="1", currency="USD"))
        d.post_event(event("task.spend", t, spent="2"))
        failed = http.wait_for(1, "/a", timeout=15)[0].json
        assert "could not halt" in failed["title"] and failed["type"] == "failure"
        assert "Last error: HTTP 503" in failed["message"]
        assert d.task(t)["state"] == "halting"
        dead = d.api("GET", "/v1/deliveries", params={"status": "dead"}).json()["deliveries"]
        (row,) = [x for x in dead if x["task_id"] == t]
        assert row["kind"] == "halt" and row["attempts"] == 2 and "503" in row["last_error"]
        listed = cli("deliveries", "list", "--status", "dead", env_file=d.env_file)
        assert listed.returncode == 0 and f'"id": {row["id"]}' in listed.stdout, listed.stderr
        retried = cli("deliveries", "retry", str(row["id"]), env_file=d.env_file)
        assert retried.returncode == 0 and '"status": "pending"' in retried.stdout, retried.stderr
        d.wait_state(t, "halted")
        assert len(http.requests_to(f"/tasks/{t}/halt")) == 3


def test_a_channel_that_is_down_never_delays_the_sender(tmp_path: Path) -> None:
    """With the channel refusing connections the 2xx comes at once; the alert arrives once it is back."""
    with HttpSink() as http:
        http.refuse()
        settings = {"RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{http.port}/a",
                    "RECEIVER_RETRY_BASE_SECONDS": "0.1", "RECEIVER_RETRY_CAP_SECONDS": "0.3"}  # fmt: skip
        with running(tmp_path, settings) as d:
            t = tid()
            d.post_event(event("task.created", t, budget="100", currency="USD"))
            for spent in ("60", "85", "95"):
                started = time.monotonic()
                r = d.post_event(event("task.spend", t, spent=spent))
                assert r.status_code == 202
                assert time.monotonic() - started < 2.0, "ingest waited on a channel"
            poll(
                lambda: d.deliveries(t),
                lambda rows: len(rows) == 3 and all(r["last_error"] for r in rows),
                what="each alert to have failed once on the channel that is down",
            )
            http.listen()
            alerts = http.wait_for(3, "/a", timeout=15)
            titles = sorted(a.json["title"] for a in alerts)
            assert [("50%" in x, "80%" in x, "90%" in x) for x in titles].count(
                (False, False, True)
            ) == 1
            d.wait_settled(t)
            assert len(http.requests_to("/a")) == 3


def test_sigkill_between_commit_and_delivery_still_delivers(tmp_path: Path) -> None:
    """Killed while the halt call hangs and the channel is down: after a restart both go out."""
    with HttpSink() as http:
        t = tid()
        http.script(f"/tasks/{t}/halt", Reply.hanging(30))
        http.script("/a", 500, 500, 500, 500, 500, 500)
        settings = settings_for(http, RECEIVER_RETRY_BASE_SECONDS="5", RECEIVER_RETRY_CAP_SECONDS="5",
                                RECEIVER_LEASE_SECONDS="2")  # fmt: skip
        d = Daemon(tmp_path, settings).start()
        d.post_event(event("task.created", t, budget="5", currency="USD"))
        assert d.post_event(event("task.spend", t, spent="3")).status_code == 202  # 50 % alert owed
        assert d.post_event(event("task.spend", t, spent="5")).status_code == 202  # halt owed
        http.wait_for(1, f"/tasks/{t}/halt")  # the halt call is in flight ...
        http.wait_for(1, "/a")  # ... and the alert failed once
        d.kill()
        http.clear_scripts()  # the channel works again
        again = Daemon(tmp_path, {**settings, "RECEIVER_RETRY_BASE_SECONDS": "0.05"}).start()
        try:
            calls = http.wait_for(2, f"/tasks/{t}/halt", timeout=20)
            assert calls[0].headers["idempotency-key"] == calls[1].headers["idempotency-key"]
            again.wait_state(t, "halted")
            # The failed try before the kill, then the retry after the restart (when due).
            poll(
                lambda: [r.json["title"] for r in http.requests_to("/a")],
                lambda titles: len([x for x in titles if "50%" in x]) >= 2,
                timeout=20,
                what="the owed 50 % alert to be tried again after the restart",
            )
        finally:
            again.stop()


def test_spend_after_halt_alerts_once_per_quiet_period(tmp_path: Path) -> None:
    """A halted task that keeps spending: one critical alert, not one per event, never a new halt."""
    with HttpSink() as http:
        settings = {"RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{http.port}/a"}
        with running(tmp_path, settings) as d:
            t = tid()
            d.post_event(event("task.created", t, budget="10", currency="USD"))
            d.post_event(event("task.spend", t, spent="10"))
            for spent in ("11", "12", "13", "14"):
                d.post_event(event("task.spend", t, spent=spent))
            d.wait_settled(t)
            titles = [r.json["title"].split(":")[0] for r in http.requests_to("/a")]
            assert sorted(titles) == ["Spend after halt", "Task halted"]
            assert d.task(t)["spent"] == "14"


def test_notify_test_reports_each_channel(tmp_path: Path) -> None:
    """`notify-test` sends one alert to every channel and prints ok/FAILED per channel, redacted."""
    with HttpSink() as http:
        env = tmp_path / "n.env"
        down = HttpSink()  # never listening: connection refused
        env.write_text(
            "RECEIVER_ALLOW_UNSIGNED=true\n"
            f"RECEIVER_NOTIFY_URLS=json://user:hunter2secret@127.0.0.1:{http.port}/a "
            f"json://127.0.0.1:{down.port}/b\n"
        )
        out = cli("notify-test", env_file=env)
        assert out.returncode == 1, out.stdout + out.stderr
        lines = out.stdout.splitlines()
        assert any(line.startswith("ok") and f":{http.port}" in line for line in lines), lines
        assert any(line.startswith("FAILED") and f":{down.port}" in line for line in lines), lines
        assert "hunter2secret" not in out.stdout + out.stderr
        assert http.wait_for(1, "/a")[0].json["title"]


def test_bad_channel_url_stops_start_up_without_leaking(tmp_path: Path) -> None:
    """An apprise URL it cannot load: exit 2, a message naming the entry, no secret."""
    env = tmp_path / "bad.env"
    env.write_text(
        "RECEIVER_ALLOW_UNSIGNED=true\nRECEIVER_NOTIFY_URLS=nosuchscheme://topsecret@x\n"
    )
    out = cli("serve", env_file=env)
    assert out.returncode == 2
    assert "RECEIVER_NOTIFY_URLS" in out.stderr and "topsecret" not in out.stderr
    assert "Traceback" not in out.stderr


def test_a_halt_call_slower_than_the_lease_is_made_once(tmp_path: Path) -> None:
    """Two daemons on one store, a 2 s lease, a platform that takes 5 s to answer: the
    replica making the call keeps renewing its lease, so the other never calls too."""
    with HttpSink() as http:
        t = tid()
        http.script(f"/tasks/{t}/halt", Reply.hanging(5))
        settings = settings_for(http, RECEIVER_LEASE_SECONDS="2")
        first = Daemon(tmp_path, settings).start()
        second = Daemon(tmp_path, settings).start()
        try:
            first.post_event(event("task.created", t, budget="1", currency="USD"))
            assert first.post_event(event("task.spend", t, spent="1")).status_code == 202
            second.wait_state(t, "halted", timeout=20)
            # Halted: the halt row is settled, by whoever called last, and a settled row is
            # never claimed again. A second caller (one that claimed the row after the first
            # one's lease ran out) was recorded by the sink before it could settle it.
            calls = http.requests_to(f"/tasks/{t}/halt")
            assert len(calls) == 1, [c.at_monotonic for c in calls]
        finally:
            first.stop()
            second.stop()
