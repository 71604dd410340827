"""py-spy and perf stat on a fresh daemon, saturated (wrk) and at the constant rate.

Not part of the measured numbers: sampling costs the daemon a little.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.load import DaemonLoad, loadgen_argv, rps_of, run_loadgen, wrk_argv, wrk_output
from bench.measure import per_event, perf_counts
from bench.plan import RESULTS, ROOT
from bench.servers import Bench, Daemon
from bench.stacks import summarise_profile


def profile(bench: Bench, py_spy: str, store: str, pg_url: str | None) -> dict[str, Any]:
    """The profiles of a fresh daemon on ``store``: summaries, file names, syscalls per event."""
    plan = bench.plan
    secs = plan.profile_seconds
    prefix = f"{bench.args.stamp}-profile-{store}"
    daemon = Daemon(bench, store, pg_url, name=f"profile-{store}")
    daemon.load = DaemonLoad(probes=20)
    daemon.signer = bench.signer(f"p{store[0]}")

    def record(what: str, fmt_: str, extra: list[str]) -> Path:
        out = RESULTS / f"{prefix}-{what}.{'svg' if fmt_ == 'flamegraph' else 'txt'}"
        spy = [py_spy, "record", "--pid", str(daemon.pid), "--duration", str(secs),
               "--rate", "100", "--threads", "--nonblocking", *extra,
               "--format", fmt_, "-o", str(out)]  # fmt: skip
        done = subprocess.run(spy, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed: {done.stderr.strip()[-500:]}")
        return out

    outputs: dict[str, Path] = {}

    def under_load(
        argv: list[str], out: Path, runs: list[tuple[str, str, list[str]]], wait: float
    ) -> dict[str, int] | None:
        """Start the load, record each py-spy run and one perf stat while it runs."""
        with out.open("w") as log_file:
            load = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
            try:
                time.sleep(2.0)
                for what, fmt_, extra in runs:
                    outputs[what] = record(what, fmt_, extra)
                return perf_counts(daemon.pid, secs)
            finally:
                load.wait(wait)

    try:
        daemon.proc = daemon.launch()
        sink = daemon.sink
        assert sink is not None
        sat_runs = [("sat-all", "raw", []), ("sat-gil", "raw", ["--gil"])]
        if not bench.args.quick:
            sat_runs.append(("sat", "flamegraph", []))
        rate_runs = [("rate-all", "raw", []), ("rate-gil", "raw", ["--gil"])]
        # One more stretch of each for perf stat, and room to start and stop.
        wrk_secs = (len(sat_runs) + 1) * (secs + 1) + 4
        rate_secs = (len(rate_runs) + 1) * (secs + 1) + 4
        warm = daemon.warm_file()
        run_loadgen("closed", daemon.port, warm, daemon.dir / "warm.json", concurrency=32)
        sat_file = daemon.dir / "sat.bin"
        daemon.load.saturated(daemon.signer, sat_file, bench.sat_events(wrk_secs), "p")

        # Saturated: wrk as in the measured runs.
        argv = wrk_argv(bench.wrk, plan, daemon.port, wrk_secs, ["file", str(sat_file)])
        wrk_path = daemon.dir / "wrk.out"
        sat_syscalls = under_load(argv, wrk_path, sat_runs, wrk_secs + 30)
        wrk_result = wrk_output(wrk_path.read_text()) or {}
        sink.wait_quiet(1.5, plan.drain_timeout)

        # The constant rate: where the CPU goes at 1,000 events/s.
        const_path = daemon.dir / "const.bin"
        daemon.load.constant(daemon.signer, const_path, plan.rate, rate_secs)
        argv = loadgen_argv("open", daemon.port, const_path, daemon.dir / "rate.json",
                            rate=plan.rate)  # fmt: skip
        rate_syscalls = under_load(argv, daemon.dir / "rate.err", rate_runs, rate_secs + 60)
        rate_result = json.loads((daemon.dir / "rate.json").read_text())
        sat_rps = rps_of(wrk_result)
        return {
            "seconds_each": secs,
            "saturated_all_threads": summarise_profile(outputs["sat-all"]),
            "saturated_gil": summarise_profile(outputs["sat-gil"]),
            "rate_all_threads": summarise_profile(outputs["rate-all"]),
            "rate_gil": summarise_profile(outputs["rate-gil"]),
            "files": {k: str(v.relative_to(ROOT)) for k, v in outputs.items()},
            "saturated_statuses": wrk_result.get("statuses"),
            "saturated_rps_while_profiled": sat_rps,
            # perf stat over one more recording's length: syscalls per event.
            "saturated_syscalls_per_event": per_event(sat_syscalls, secs * sat_rps),
            "saturated_syscall_counts": sat_syscalls,
            "rate_syscalls_per_event": per_event(rate_syscalls, secs * plan.rate),
            "rate_syscall_counts": rate_syscalls,
            "rate_statuses": rate_result.get("statuses"),
            "rate_latency_ms_while_profiled": rate_result.get("latency_ms"),
        }
    finally:
        daemon.stop()
