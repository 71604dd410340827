"""The targets measured side by side: the bare Starlette baseline, Alertmanager and the
daemon (SQLite or PostgreSQL). Each is started once and then measured phase by phase
(warm-up, saturated rounds, constant rate) in turn with the others."""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import secrets
import sqlite3
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.load import DaemonLoad, Signer, alertmanager_file, run_loadgen, run_wrk
from bench.measure import CpuMeter, RssSampler, delivery_times, median
from bench.plan import BENCH, PY, Plan, log
from bench.procs import Proc, Sink, free_port, wait_ready
from bench.reqfile import new_run_id
from bench.tools import command_output


class Bench:
    """What every server of one run shares: the plan, scratch space, the webhook secret."""

    def __init__(self, args: argparse.Namespace, plan: Plan, workdir: Path, wrk: str) -> None:
        self.args = args
        self.plan = plan
        self.workdir = workdir
        self.wrk = wrk
        self.run = new_run_id()
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.baseline_rps: float | None = None

    def signer(self, tag: str) -> Signer:
        return Signer(self.secret, f"{self.run}{tag}")

    def sat_events(self, seconds: float) -> int:
        """Pre-signed events for ``seconds`` of saturation: more than the baseline could take."""
        return int(min(300_000, max(5000, 1.3 * (self.baseline_rps or 10_000) * seconds)))


class Server:
    """One target: started once, then measured phase by phase, side by side with the others."""

    ok_status = 202
    wraps_by_design = False  # wrk may send a request file more than once

    def __init__(self, bench: Bench, name: str, label: str) -> None:
        self.bench = bench
        self.plan = bench.plan
        self.name = name
        self.dir = bench.workdir / name
        self.dir.mkdir()
        self.result: dict[str, Any] = {"label": label}
        self.rounds: list[dict[str, Any]] = []
        self.port = free_port()
        self.proc: Proc | None = None
        self.sink: Sink | None = None
        self.database: str | None = None
        self.rss: RssSampler | None = None

    # to be filled in by each kind of server
    def launch(self) -> Proc:
        raise NotImplementedError

    def warm_file(self) -> Path | None:
        return None

    def wrk_args(self, rnd: int) -> list[str]:
        raise NotImplementedError

    def const_file(self) -> Path:
        raise NotImplementedError

    # the phases
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def phase(self, name: str) -> None:
        assert self.rss is not None
        self.rss.phase = name

    def start(self) -> None:
        self.proc = self.launch()
        self.rss = RssSampler(self.proc.pid).__enter__()

    def warmup(self) -> None:
        path = self.warm_file()
        if path is None:
            return
        self.phase("warmup")
        warm = run_loadgen("closed", self.port, path, self.dir / "warm.json", concurrency=32)
        self.result["warmup"] = {k: warm[k] for k in ("requests", "seconds", "rps", "statuses")}
        if self.sink is not None:
            self.sink.wait_quiet(1.0, self.plan.drain_timeout)
        self.phase("between")

    def saturate(self, rnd: int) -> dict[str, Any]:
        args = self.wrk_args(rnd)  # built (and signed) before the clock starts
        self.phase("saturated")
        meter = CpuMeter(self.pid, self.database)
        sat = run_wrk(self.bench.wrk, self.plan, self.port, args, self.plan.sat_seconds,
                      self.dir, f"sat{rnd}")  # fmt: skip
        sat["cpu"] = meter.result(sat["requests"], sat["loadgen_cpu_seconds"])
        self.phase("drain")
        sat["ok"] = int(sat["statuses"].get(str(self.ok_status), 0))
        sat["rps"] = round(sat["requests"] / sat["seconds"], 1)
        sat["ok_rps"] = round(sat["ok"] / sat["seconds"], 1)
        log(
            f"  {self.name} round {rnd + 1}: {sat['ok_rps']:.0f} {self.ok_status}/s "
            f"(statuses {sat['statuses']}, wrk p99 {sat['latency_us']['p99'] / 1000:.1f} ms, "
            f"machine busy {sat['cpu']['machine_busy_percent']:.0f}%)"
        )
        if sat.get("wrapped") and not self.wraps_by_design:
            log(f"  NOTE: wrk sent every pre-built request of {self.name} and started over")
        if self.sink is not None:
            sat["deliveries_after"] = self.sink.wait_quiet(1.5, self.plan.drain_timeout)
        self.phase("between")
        self.rounds.append(sat)
        return sat

    def constant(self) -> None:
        path = self.const_file()
        self.phase("constant")
        meter = CpuMeter(self.pid, self.database)
        const = run_loadgen("open", self.port, path, self.dir / "const.json",
                            rate=self.plan.rate, drain_timeout=self.plan.drain_timeout)  # fmt: skip
        const["cpu"] = meter.result(const["requests"], const["loadgen_cpu_seconds"])
        self.phase("drain")
        probes = const.pop("probes")
        self.result["constant"] = const
        lat = const["latency_ms"]
        log(
            f"  {self.name} at {self.plan.rate}/s: p50 {lat['p50']} ms p99 {lat['p99']} ms "
            f"(statuses {const['statuses']}, client send lag p99 {const['send_lag_ms']['p99']} ms)"
        )
        if self.sink is not None:
            halt, alert = delivery_times(probes, self.sink, self.ok_status, self.plan)
            self.result["time_to_halt_ms"] = halt
            self.result["time_to_alert_ms"] = alert
            log(
                f"  {self.name} time-to-halt p50 {halt.get('p50')} p99 {halt.get('p99')} ms "
                f"(missing {halt['missing']}); time-to-alert p50 {alert.get('p50')} "
                f"p99 {alert.get('p99')} ms (missing {alert['missing']})"
            )
            self.result["sink_bad_requests"] = self.sink.records()["bad"]
        self.phase("after")

    def finish(self) -> dict[str, Any]:
        if self.rss is not None:
            time.sleep(0.5)
            self.rss.__exit__()
            rss = self.rss
            loaded = [v for v in (rss.peak("saturated"), rss.peak("constant")) if v is not None]
            self.result["rss_mb"] = {
                "idle": rss.peak("idle"),
                "warmup_peak": rss.peak("warmup"),
                "saturated_peak": rss.peak("saturated"),
                "constant_peak": rss.peak("constant"),
                "after": rss.samples["after"][-1] if rss.samples.get("after") else None,
                "under_load_peak": max(loaded) if loaded else None,
            }
        if self.rounds:
            self.result["saturated"] = combine_rounds(self.rounds)
        self.stop()
        return self.result

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        if self.sink is not None:
            self.sink.stop()


def combine_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The saturated rounds of one server: the median rate, the sums of everything counted."""
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    cpu: dict[str, float] = defaultdict(float)
    for r in rounds:
        statuses.update({k: int(v) for k, v in r["statuses"].items()})
        errors.update(r["errors"])
        for k, v in r["cpu"].items():
            cpu[k] += v
    requests = sum(r["requests"] for r in rounds)
    mid = sorted(rounds, key=lambda r: r["ok_rps"])[len(rounds) // 2]
    total = {k: round(v, 2) for k, v in cpu.items()}
    total["server_cpu_us_per_request"] = round(
        cpu["server_cpu_seconds"] / max(requests, 1) * 1e6, 1
    )
    total["machine_busy_percent"] = round(cpu["machine_busy_percent"] / len(rounds), 1)
    if "postgres_backends_cpu_seconds" in cpu:
        total["postgres_cpu_us_per_request"] = round(
            cpu["postgres_backends_cpu_seconds"] / max(requests, 1) * 1e6, 1
        )
    return {
        "ok_rps": round(median([r["ok_rps"] for r in rounds]), 1),
        "ok_rps_rounds": [r["ok_rps"] for r in rounds],
        "requests": requests,
        "ok": sum(r["ok"] for r in rounds),
        "seconds": round(sum(r["seconds"] for r in rounds), 2),
        "statuses": dict(statuses),
        "errors": dict(errors),
        "wrapped": sum(r.get("wrapped", 0) for r in rounds),
        "latency_us_median_round": mid["latency_us"],
        "loadgen_cpu_seconds": round(sum(r["loadgen_cpu_seconds"] for r in rounds), 2),
        "cpu": total,
        "rounds": rounds,
    }


class Baseline(Server):
    wraps_by_design = True  # it stores nothing: a repeated request is as good as a new one

    def __init__(self, bench: Bench) -> None:
        super().__init__(bench, "baseline", "bare Starlette route (uvicorn, the daemon's settings)")
        self.load = DaemonLoad(probes=self.plan.probes)
        self.signer = bench.signer("b")
        self._sat: Path | None = None

    def launch(self) -> Proc:
        argv = [PY, str(BENCH / "baseline_app.py"), "--port", str(self.port)]
        proc = Proc(self.name, argv, self.dir)
        wait_ready(proc, f"http://127.0.0.1:{self.port}/readyz")
        return proc

    def warm_file(self) -> Path:
        path = self.dir / "warm.bin"
        self.load.warmup(self.signer, path)  # the same requests the daemon gets
        return path

    def wrk_args(self, rnd: int) -> list[str]:
        if self._sat is None:  # the baseline keeps nothing: 20,000 requests, over and over
            self._sat = self.dir / "sat.bin"
            self.load.saturated(self.signer, self._sat, 20_000, "b")
        return ["file", str(self._sat)]

    def saturate(self, rnd: int) -> dict[str, Any]:
        sat = super().saturate(rnd)
        self.bench.baseline_rps = max(self.bench.baseline_rps or 0.0, sat["ok_rps"])
        return sat

    def const_file(self) -> Path:
        path = self.dir / "const.bin"
        self.load.constant(self.signer, path, self.plan.rate, self.plan.const_seconds)
        return path

    def constant(self) -> None:
        super().constant()
        self.result["client_check"] = self.client_check()

    def client_check(self) -> dict[str, Any]:
        """The open-loop client at 4x the rate against the baseline: far from its ceiling?"""
        rate = 4 * self.plan.rate
        seconds = 2 if self.bench.args.quick else 4
        path = self.dir / "client-check.bin"
        DaemonLoad(probes=1).constant(self.signer, path, rate, seconds)
        got = run_loadgen("open", self.port, path, self.dir / "client-check.json", rate=rate)
        got.pop("probes", None)
        log(
            f"  client check, open loop at {rate}/s on the baseline: sent at "
            f"{got['achieved_send_rate']:.0f}/s, p99 {got['latency_ms']['p99']} ms, "
            f"send lag p99 {got['send_lag_ms']['p99']} ms, "
            f"client CPU {got['loadgen_cpu_seconds']} s"
        )
        return got


class Alertmanager(Server):
    ok_status = 200

    def __init__(self, bench: Bench, binary: str) -> None:
        super().__init__(bench, "alertmanager", "Prometheus Alertmanager POST /api/v2/alerts")
        self.binary = binary

    def launch(self) -> Proc:
        (self.dir / "data").mkdir()
        config = self.dir / "alertmanager.yml"
        config.write_text("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
        argv = [
            self.binary, f"--config.file={config}", f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
            "--log.level=warn",
        ]  # fmt: skip
        proc = Proc(self.name, argv, self.dir)
        wait_ready(proc, f"http://127.0.0.1:{self.port}/-/ready")
        self.result["version"] = command_output([self.binary, "--version"]).splitlines()[0]
        return proc

    def warm_file(self) -> Path:
        path = self.dir / "warm.bin"
        alertmanager_file(path, self.bench.run + "-warm", self.plan.warmup_requests)
        return path

    def wrk_args(self, rnd: int) -> list[str]:
        return ["alertmanager", f"{self.bench.run}-sat{rnd}"]

    def const_file(self) -> Path:
        path = self.dir / "const.bin"
        alertmanager_file(path, self.bench.run + "-const", self.plan.rate * self.plan.const_seconds)
        return path


class Daemon(Server):
    """``budget-receiver serve`` with a temp env file; halts and alerts go to a local sink."""

    def __init__(
        self, bench: Bench, store: str, pg_url: str | None = None, name: str | None = None
    ) -> None:
        super().__init__(bench, name or f"daemon-{store}", f"budget-receiver serve ({store})")
        self.store = store
        self.pg_url = pg_url
        self.database = None if pg_url is None else urlsplit(pg_url).path.lstrip("/")
        self.load = DaemonLoad(probes=self.plan.probes)
        self.signer = bench.signer(store[0])

    def launch(self) -> Proc:
        self.sink = Sink(self.dir, "sink")
        db_url = self.pg_url or f"sqlite:///{self.dir / 'receiver.db'}"
        env_file = self.dir / "receiver.env"
        settings = {
            "RECEIVER_HOST": "127.0.0.1",
            "RECEIVER_PORT": str(self.port),
            "RECEIVER_DATABASE_URL": db_url,
            "RECEIVER_WEBHOOK_SECRETS": self.bench.secret,
            "RECEIVER_ADMIN_TOKEN": secrets.token_hex(16),
            "RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{self.sink.port}/alert",
            "RECEIVER_HALT_URL": f"http://127.0.0.1:{self.sink.port}/halt/{{task_id}}",
            "RECEIVER_HALT_TOKEN": secrets.token_hex(16),
            **dict(item.split("=", 1) for item in self.bench.args.daemon_setting),
        }
        env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
        exe = Path(PY).parent / "budget-receiver"
        argv = [str(exe) if exe.exists() else "budget-receiver", "serve", "--env-file",
                str(env_file)]  # fmt: skip
        proc = Proc(self.name, argv, self.dir, env=env, cwd=self.dir)
        wait_ready(proc, f"http://127.0.0.1:{self.port}/readyz")
        return proc

    def warm_file(self) -> Path:
        path = self.dir / "warm.bin"
        self.load.warmup(self.signer, path)
        return path

    def wrk_args(self, rnd: int) -> list[str]:
        path = self.dir / f"sat{rnd}.bin"
        events = self.bench.sat_events(self.plan.sat_seconds)
        self.load.saturated(self.signer, path, events, f"r{rnd}")
        return ["file", str(path)]

    def const_file(self) -> Path:
        path = self.dir / "const.bin"
        self.load.constant(self.signer, path, self.plan.rate, self.plan.const_seconds)
        return path

    def finish(self) -> dict[str, Any]:
        result = super().finish()
        if self.proc is not None:
            errors = [
                line for line in self.proc.tail(10**6).splitlines()
                if '"level": "error"' in line or "Traceback" in line
            ]  # fmt: skip
            result["daemon_error_log_lines"] = len(errors)
            result["daemon_error_examples"] = errors[:5]
        if self.store == "sqlite":
            result["database"] = sqlite_counts(self.dir / "receiver.db")
        return result


def sqlite_counts(path: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        outbox = dict(
            conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        )
    return {"events": events, "outbox": outbox, "bytes": path.stat().st_size}
