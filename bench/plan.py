"""What one run is: its plan (how long, how hard), where its files go, how it logs."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PY = sys.executable


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int  # saturated runs per target, taking turns with the other targets
    sat_seconds: int
    connections: int
    wrk_threads: int
    rate: int
    const_seconds: int
    probes: int  # halt probes, and as many alert probes, in the constant-rate phase
    warmup_requests: int
    profile_seconds: int
    drain_timeout: float


FULL = Plan("full", 3, 6, 64, 1, 1000, 20, 300, 3000, 8, 30.0)
QUICK = Plan("quick", 2, 2, 64, 1, 1000, 5, 50, 1000, 2, 15.0)


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)
