"""SIGTERM is a graceful stop: no new requests, the ones under way finish, deliveries under
way finish or are given back, the store is closed, and the process exits 0 in time.

`docker stop` and Kubernetes send SIGTERM, then SIGKILL after a grace period (10 s and
30 s by default). Everything acknowledged before the stop must be there after the
restart, and a halt call cut short by the stop must be made again at once, not only
when its lease runs out.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.dispatch import Dispatcher
from receiver.verify import sign
from tests.daemon import SECRET, Burst, Daemon, event
from tests.servers import HttpSink, Reply
from tests.waiting import poll

pytestmark = pytest.mark.slow
# The dispatcher's wait for deliveries under way; uvicorn waits for requests before it.
GRACE = inspect.signature(Dispatcher.stop).parameters["grace_seconds"].default
DOCKER_STOP_TIMEOUT = 10.0  # `docker stop` sends SIGKILL after this by default
THREADS = 8
TASKS = 20


def sigterm(daemon: Daemon, timeout: float) -> tuple[int, float]:
    """SIGTERM and wait for the exit: (exit code, seconds it took)."""
    assert daemon.proc is not None
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(timeout)
    return code, time.monotonic() - started


def log_records(daemon: Daemon) -> list[dict[str, Any]]:
    """The daemon's log (JSON lines: its stderr is not a terminal)."""
    return [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]


def assert_clean_stop(daemon: Daemon, db: Path) -> None:
    """The log ends with an orderly shutdown, nothing failed on the way, the store is
    closed (SQLite removes the WAL file when its last connection closes)."""
    messages = [r["msg"] for r in log_records(daemon)]
    assert "stopped" in messages and "Application shutdown complete." in messages, messages
    assert "Traceback" not in daemon.log()
    assert not [r for r in log_records(daemon) if r["level"] in ("error", "critical")]
    assert not Path(f"{db}-wal").exists(), "the store was not closed"


def test_sigterm_mid_burst_exits_0_and_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    """Threads send increments; SIGTERM mid-burst. The daemon exits 0 well within docker's
    stop timeout, and after a restart every event that got a 2xx is there, counted once."""
    daemon = Daemon(tmp_path).start()
    # Refused connections while it stops are not acknowledged, so nothing is owed for them.
    burst = Burst(daemon, [f"term-{n}" for n in range(TASKS)], THREADS, stop_on_error=False)
    burst.start().wait_for(400)
    signalled = time.monotonic()
    code, took = sigterm(daemon, timeout=GRACE + 20)
    burst.stop()
    assert len(burst.acked) >= 100, "the burst never got going"
    assert code == 0, daemon.log()
    assert took < DOCKER_STOP_TIMEOUT / 2, f"took {took:.1f} s to stop"
    late = sum(1 for a in burst.acked if a.at > signalled)
    print(
        f"\nSIGTERM after {len(burst.acked) - late} acks; stopped in {took:.2f} s; {late} acked after"
    )
    assert_clean_stop(daemon, tmp_path / "receiver.db")

    again = Daemon(tmp_path).start()
    try:
        burst.assert_reflected_in(again)
    finally:
        again.stop()


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_finishes_the_request_under_way_and_takes_no_new_one(tmp_path: Path) -> None:
    """A webhook half sent when SIGTERM comes: the port stops accepting connections, yet
    that request is finished (202) once the rest arrives, and it is stored."""
    daemon = Daemon(tmp_path).start()
    body = json.dumps(event("task.created", "in-flight", budget="10", currency="USD")).encode()
    headers = sign(SECRET, "msg_in_flight", int(time.time()), body)
    head = (
        "POST /webhooks/budget HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as conn:
        conn.sendall(head + body[:10])
        # Once the daemon has answered a later request, it has read this one's head too:
        # the request is under way, its body awaited.
        assert httpx.get(daemon.url + "/healthz", timeout=5).status_code == 200
        time.sleep(0.2)  # a margin on top: nothing outside the daemon shows the head was read
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        poll(
            lambda: _refused(daemon.port),
            what="the port to refuse connections after SIGTERM",
            timeout=5,
        )
        assert daemon.proc.poll() is None, "exited with a request under way"
        conn.sendall(body[10:])
        answer = b""
        with contextlib.suppress(TimeoutError):
            while chunk := conn.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 202 "), answer
    assert b"connection: close" in answer.lower()
    assert daemon.proc.wait(10) == 0, daemon.log()
    assert_clean_stop(daemon, tmp_path / "receiver.db")

    again = Daemon(tmp_path).start()
    try:
        assert again.task("in-flight")["budget"] == "10"
    finally:
        again.stop()


@pytest.mark.parametrize(
    ("halt_timeout", "outcome"),
    [
        (60.0, "cut short by the grace period"),  # longer than GRACE: cancelled, given back
        (2.0, "timed out within the grace period"),  # recorded as a failed try, retried
    ],
)
def test_halt_call_under_way_at_sigterm_is_made_after_the_restart(
    tmp_path: Path, halt_timeout: float, outcome: str
) -> None:
    """The platform's halt endpoint hangs when SIGTERM comes. The stop does not hang with
    it (at most the grace period), the delivery is given back (no lease left on it), and
    after the restart the halt call is made again at once, with the same Idempotency-Key,
    and the task ends halted."""
    with HttpSink() as platform:
        t = "halt-at-stop"
        platform.script(f"/tasks/{t}/halt", Reply.hanging(120))
        settings = {
            "RECEIVER_HALT_URL": f"{platform.url}/tasks/{{task_id}}/halt",
            "RECEIVER_HALT_TIMEOUT_SECONDS": str(halt_timeout),
            "RECEIVER_LEASE_SECONDS": "60",  # a claim left behind would wait this long
            "RECEIVER_RETRY_BASE_SECONDS": "0.5",
        }
        daemon = Daemon(tmp_path, settings).start()
        daemon.post_event(event("task.created", t, budget="5", currency="USD"))
        assert daemon.post_event(event("task.spend", t, spent="5")).json()["state"] == "halting"
        platform.wait_for(1, f"/tasks/{t}/halt")  # the halt call is under way

        code, took = sigterm(daemon, timeout=GRACE + 20)
        assert code == 0, daemon.log()
        assert took < min(halt_timeout, GRACE) + 3, f"{outcome}: took {took:.1f} s to stop"
        assert_clean_stop(daemon, tmp_path / "receiver.db")
        with contextlib.closing(sqlite3.connect(tmp_path / "receiver.db")) as db:
            status, owner, attempts = db.execute(
                "SELECT status, lease_owner, attempts FROM outbox WHERE kind = 'halt'"
            ).fetchone()
        assert (status, owner) == ("pending", None), "the claim was not given back"
        assert attempts == (1 if halt_timeout < GRACE else 0), outcome

        restarted = time.monotonic()
        again = Daemon(tmp_path, settings).start()
        try:
            calls = platform.wait_for(2, f"/tasks/{t}/halt", timeout=10)
            assert time.monotonic() - restarted < 10  # not after the 60 s lease
            assert calls[0].headers["idempotency-key"] == calls[1].headers["idempotency-key"]
            again.wait_state(t, "halted", timeout=10)
        finally:
            again.stop()
        assert len(platform.requests_to(f"/tasks/{t}/halt")) == 2
