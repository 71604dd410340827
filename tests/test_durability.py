"""SIGKILL mid-burst: every event that got a 2xx is still there after a restart."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.daemon import Daemon, event

pytestmark = pytest.mark.slow
THREADS = 8
TASKS = 20


def test_sigkill_mid_burst_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Threads send increments; the daemon is SIGKILLed mid-burst; acked events all survive."""
    daemon = Daemon(tmp_path).start()
    tasks = [f"burst-{n}" for n in range(TASKS)]
    for tid in tasks:
        assert (
            daemon.post_event(
                event("task.created", tid, budget="1000000", currency="USD")
            ).status_code
            == 202
        )

    acked: list[tuple[str, str, Decimal]] = []  # (webhook-id, task, amount)
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n: int) -> None:
        with httpx.Client() as client:
            i = 0
            while not stop.is_set():
                i += 1
                tid = tasks[(n + i) % TASKS]
                amount = Decimal(n + 1) / 100 + Decimal(i % 7)
                msg_id = f"burst-{n}-{i}-{uuid.uuid4().hex[:6]}"
                try:
                    r = daemon.post_event(event("task.spend", tid, amount=str(amount)),
                                          msg_id=msg_id, client=client)  # fmt: skip
                except httpx.HTTPError:
                    return  # the daemon is gone
                if r.status_code == 202:
                    with lock:
                        acked.append((msg_id, tid, amount))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(THREADS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    while len(acked) < 600 and time.monotonic() - started < 20:
        time.sleep(0.01)
    daemon.kill()
    elapsed = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 100, "the burst never got going"
    print(
        f"\nburst: {len(acked)} acked events in {elapsed:.2f} s = {len(acked) / elapsed:.0f} events/s"
    )

    again = Daemon(tmp_path).start()
    try:
        for tid in tasks:
            stored = again.api("GET", f"/v1/tasks/{tid}/events", params={"limit": 500}).json()
            events = stored["events"]
            while stored["next"] is not None:
                stored = again.api("GET", f"/v1/tasks/{tid}/events",
                                   params={"limit": 500, "after": stored["next"]}).json()  # fmt: skip
                events += stored["events"]
            ids = {e["event_id"] for e in events}
            mine = [(m, a) for m, t, a in acked if t == tid]
            assert {m for m, _ in mine} <= ids, f"{tid}: an acknowledged event is missing"
            stored_sum = sum(
                (
                    Decimal(e["payload"]["data"]["amount"])
                    for e in events
                    if e["type"] == "task.spend"
                ),
                Decimal(0),
            )
            assert Decimal(again.task(tid)["spent"]) == stored_sum
            assert stored_sum >= sum((a for _, a in mine), Decimal(0))
    finally:
        again.stop()
