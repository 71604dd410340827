"""The store as an operator meets it through `budget-receiver`: readiness that means a
write, and online backups."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.daemon import Daemon, event, running
from tests.faults import file_writes_refused

pytestmark = pytest.mark.slow


def readyz(d: Daemon) -> httpx.Response:
    return httpx.get(d.url + "/readyz", timeout=30)


def test_readyz_is_503_while_the_store_cannot_write(tmp_path: Path) -> None:
    """While the daemon cannot write its database (its files may not grow by a byte, as on a
    full disk) reads still work, yet /readyz answers 503 storage_unavailable, as webhooks
    do; once writes succeed again it answers 200 and events are accepted."""
    with running(tmp_path) as d:
        assert readyz(d).status_code == 200
        assert d.post_event(event("task.created", "t-1", budget="10", currency="USD")).is_success
        assert d.proc is not None
        with file_writes_refused(d.proc.pid):
            for _ in range(3):  # every probe, not just one
                r = readyz(d)
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "storage_unavailable"
            refused = d.post_event(event("task.spend", "t-1", spent="5"))
            assert refused.status_code == 503, refused.text
            assert d.task("t-1")["spent"] == "0"  # reads still work
        deadline = time.monotonic() + 15
        while readyz(d).status_code != 200:
            assert time.monotonic() < deadline, readyz(d).text
            time.sleep(0.05)
        assert d.post_event(event("task.spend", "t-1", spent="5")).status_code == 202
        assert d.task("t-1")["spent"] == "5"
