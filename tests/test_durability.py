"""SIGKILL mid-burst: every event that got a 2xx is still there after a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.daemon import Burst, Daemon

pytestmark = pytest.mark.slow


def test_sigkill_mid_burst_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Threads send increments; the daemon is SIGKILLed mid-burst; acked events all survive."""
    daemon = Daemon(tmp_path).start()
    burst = Burst(daemon, [f"burst-{n}" for n in range(20)]).start()
    started = time.monotonic()
    burst.wait_for(600)
    daemon.kill()
    elapsed = time.monotonic() - started
    burst.stop()
    acked = len(burst.acked)
    assert acked >= 100, "the burst never got going"
    print(f"\nburst: {acked} acked events in {elapsed:.2f} s = {acked / elapsed:.0f} events/s")

    again = Daemon(tmp_path).start()
    try:
        burst.assert_reflected_in(again)
    finally:
        again.stop()
