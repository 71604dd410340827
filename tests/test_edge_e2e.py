"""The HTTP edge through `budget-receiver serve`: every body is read under a limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import ADMIN_TOKEN, READ_TOKEN, Daemon, event, running

pytestmark = pytest.mark.slow
MB = 1024 * 1024


def memory_mb(daemon: Daemon) -> dict[str, int]:
    """The daemon's resident memory now (VmRSS) and at its peak so far (VmHWM), in MiB."""
    assert daemon.proc is not None
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) // 1024 for key in ("VmRSS", "VmHWM")}


def huge_json(megabytes: int) -> Iterator[bytes]:
    """A JSON object of about ``megabytes`` MiB, sent chunked: no Content-Length to refuse."""
    yield b'{"amount": "1", "budget": "50", "reason": "r", "pad": "'
    for _ in range(megabytes):
        yield b"x" * MB
    yield b'"}'


def test_a_huge_chunked_body_to_the_task_api_is_refused_without_being_held(
    tmp_path: Path,
) -> None:
    """authorize and resume answer 413 to a 128 MiB chunked body, and the daemon's memory,
    now and at its peak, grows by nothing like the body's size; the task is unchanged."""
    with running(tmp_path) as d:
        d.post_event(event("task.created", "big-1", budget="10", currency="USD"))
        d.post_event(event("task.spend", "big-1", spent="10"))
        calls = [("authorize", READ_TOKEN), ("resume", ADMIN_TOKEN)]
        for path, token in calls:  # warm up: the first call of each route imports and caches
            d.api("POST", f"/v1/tasks/big-1/{path}", token=token, json={"amount": "1"})
        before, task = memory_mb(d), d.task("big-1")
        for path, token in calls:
            r = httpx.post(
                f"{d.url}/v1/tasks/big-1/{path}",
                content=huge_json(128),
                headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
                timeout=120,
            )
            assert (r.status_code, r.json()["error"]) == (413, "payload_too_large"), path
            assert r.json()["detail"]
        after = memory_mb(d)
        assert after["VmRSS"] - before["VmRSS"] < 32, (before, after)
        assert after["VmHWM"] - before["VmHWM"] < 32, (before, after)
        assert d.task("big-1") == task
        assert [e["type"] for e in d.events("big-1")] == ["task.created", "task.spend"]
