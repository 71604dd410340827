"""Issue 5's benchmark: the daemon against a bare Starlette baseline and Alertmanager, one run.

    /tmp/venv/bin/python bench/run.py            # full run (< 10 min)
    /tmp/venv/bin/python bench/run.py --quick    # smoke run (< 2 min)

See bench/README.md for what is measured and how. Writes bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PY = sys.executable
sys.path.insert(0, str(BENCH))

from reqfile import (  # noqa: E402
    NO_TAG,
    alertmanager_alert,
    budget_event,
    new_run_id,
    raw_request,
    write_records,
)

WEBHOOK_PATH = "/webhooks/budget"
SMALL_AMOUNTS = [f"{c / 100:.2f}" for c in range(1, 100, 7)]  # 0.01 .. 0.99

# The targets (ratios from one run on the 2-core machine).
TARGETS = {
    "rps_vs_alertmanager": 1.0,
    "rps_vs_baseline": 0.45,
    "p99_ms_at_rate": 10.0,
    "time_to_halt_p99_ms": 50.0,
    "time_to_alert_p99_ms": 250.0,
    "rss_under_load_mb": 100.0,
}


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


# -- processes ---------------------------------------------------------------------------


class Proc:
    """A child process we started, with its output in a log file; stopped by its own pid."""

    live: list[Proc] = []  # noqa: RUF012 - the registry every exit path cleans up

    def __init__(self, name: str, argv: list[str], logdir: Path, **kw: Any) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, **kw)
        self.pid = self.popen.pid
        Proc.live.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        with contextlib.suppress(ValueError):
            Proc.live.remove(self)
        return self.popen.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_all() -> None:
    for proc in list(reversed(Proc.live)):
        with contextlib.suppress(Exception):
            proc.stop(5)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - 127.0.0.1
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(proc: Proc, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(OSError):
            if http_get(url, 1.0)[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready after {timeout} s:\n{proc.tail()}")


# -- memory and CPU of a process tree ----------------------------------------------------


def tree(pid: int) -> list[int]:
    """pid and all its descendants (the daemon is one process; children would count too)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def rss_mb(pid: int) -> float:
    total_kb = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process tree."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            user += int(fields[11])
            system += int(fields[12])
    return user / ticks, system / ticks


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def postgres_backends_cpu(database: str | None) -> float | None:
    """CPU seconds of the PostgreSQL server processes serving ``database`` (its backends)."""
    if not database:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if not cmdline.startswith(b"postgres:") or f" {database} ".encode() not in cmdline:
                continue
            stat = (proc / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


class CpuMeter:
    """CPU used during one phase: the server's tree, its PostgreSQL backends, the machine."""

    def __init__(self, pid: int, database: str | None) -> None:
        self.pid, self.database = pid, database
        self.server0 = cpu_seconds(pid)
        self.split0 = cpu_split(pid)
        self.pg0 = postgres_backends_cpu(database)
        self.machine0 = machine_cpu()
        self.t0 = time.monotonic()

    def result(self, requests: int, loadgen_cpu: float) -> dict[str, Any]:
        server = cpu_seconds(self.pid) - self.server0
        user, system = (b - a for a, b in zip(self.split0, cpu_split(self.pid), strict=True))
        busy1, total1 = machine_cpu()
        busy = (busy1 - self.machine0[0]) / max(total1 - self.machine0[1], 1)
        busy_seconds = (busy1 - self.machine0[0]) / os.sysconf("SC_CLK_TCK")
        out: dict[str, Any] = {
            "seconds": round(time.monotonic() - self.t0, 2),
            "server_cpu_seconds": round(server, 2),
            "server_cpu_us_per_request": round(server / max(requests, 1) * 1e6, 1),
            "server_user_seconds": round(user, 2),
            "server_system_seconds": round(system, 2),
            "machine_busy_percent": round(100 * busy, 1),
            "machine_busy_cpu_seconds": round(busy_seconds, 2),
        }
        pg = 0.0
        pg1 = postgres_backends_cpu(self.database)
        if pg1 is not None and self.pg0 is not None:
            pg = pg1 - self.pg0
            out["postgres_backends_cpu_seconds"] = round(pg, 2)
            out["postgres_cpu_us_per_request"] = round(pg / max(requests, 1) * 1e6, 1)
        # Everything else on the machine (other work, the sink, the kernel's own threads).
        out["other_cpu_seconds"] = round(max(0.0, busy_seconds - server - pg - loadgen_cpu), 2)
        return out


class RssSampler:
    """VmRSS of the server's process tree every 0.2 s, labelled by phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.phase = "idle"
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples[self.phase].append(rss_mb(self.pid))
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, phase: str) -> float | None:
        values = self.samples.get(phase)
        return max(values) if values else None


# -- tools -------------------------------------------------------------------------------


def fs_type(path: Path) -> str:
    try:
        return subprocess.run(
            ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pick_workdir(explicit: str | None) -> tuple[Path, str]:
    """A scratch directory on a real disk (never tmpfs: fsync there proves nothing)."""
    candidates: list[str | None] = [explicit] if explicit else []
    candidates += [os.environ.get("TMPDIR"), tempfile.gettempdir(), "/var/tmp", str(RESULTS)]  # noqa: S108
    for cand in candidates:
        if not cand:
            continue
        path = Path(cand)
        with contextlib.suppress(OSError):
            path.mkdir(parents=True, exist_ok=True)
        kind = fs_type(path)
        if path.is_dir() and kind not in ("tmpfs", "ramfs"):
            return Path(tempfile.mkdtemp(prefix="budget-bench-", dir=path)), kind
        log(f"  {path} is on {kind}: not used for the database")
    raise SystemExit("no directory on a real disk found for the SQLite file (use --workdir)")


def fsync_probe(directory: Path, count: int = 200) -> dict[str, Any]:
    """How long one 4 KiB append + fsync takes here: the floor under a durable commit."""
    path = directory / "fsync-probe"
    times = []
    with path.open("ab") as f:
        for _ in range(count):
            started = time.perf_counter()
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - started)
    path.unlink()
    return stats_ms(times)


def apt_install(binary: str, package: str, allowed: bool) -> str | None:
    found = shutil.which(binary)
    if found or not allowed:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log(f"  {binary} missing and cannot apt-get install {package} (not root or no apt-get)")
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    log(f"  installing {package} (apt-get)")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log(f"  apt-get install {package} failed: {done.stderr.strip()[-300:]}")
    return shutil.which(binary)


def find_py_spy(allowed: bool) -> str | None:
    local = Path(PY).parent / "py-spy"
    found = shutil.which("py-spy") or (str(local) if local.exists() else None)
    if found or not allowed:
        return found
    log("  installing py-spy (pip)")
    subprocess.run([PY, "-m", "pip", "install", "-q", "py-spy"], capture_output=True)
    return shutil.which("py-spy") or (str(local) if local.exists() else None)


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


# -- request files -----------------------------------------------------------------------


@dataclass
class Signer:
    secret: str
    run: str
    ts: int = 0

    def __post_init__(self) -> None:
        from receiver.verify import sign

        self._sign = sign

    def request(self, msg_id: str, body: bytes) -> bytes:
        headers = self._sign(self.secret, msg_id, self.ts, body)
        return raw_request(WEBHOOK_PATH, body, headers)


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class DaemonLoad:
    """Tasks and events for a daemon: budgets set at warm-up, spends timed.

    Background: ``bg_tasks`` tasks with a budget no spend here comes near, each getting
    small ``amount`` increments. Saturated runs also carry first events of fresh tasks
    (budget riding along) that cross the 50 % threshold (1 in 100: an alert) or reach the
    limit (1 in 500: a halt call and a "halted" alert). The constant-rate run carries the
    probes: spends on tasks created at warm-up that cross 50 % (time-to-alert) or reach
    the limit (time-to-halt).
    """

    probes: int
    bg_tasks: int = 1000

    @staticmethod
    def _stamped(body: bytes, ts: str) -> bytes:
        return body.replace(b'{"type"', b'{"timestamp":"%s","type"' % ts.encode(), 1)

    def spend(self, task_id: str, amount: str, ts: str, **extra: str) -> bytes:
        body = budget_event(
            "task.spend", task_id, agent_id="agent-bench", amount=amount, currency="USD", **extra
        )
        return self._stamped(body, ts)

    def warmup(self, signer: Signer, path: Path) -> int:
        signer.ts = int(time.time())
        ts = iso_now()

        def records() -> Iterator[tuple[bytes, str]]:
            n = 0
            groups = [
                (self.bg_tasks, "t-{:04d}", "1000000.00"),
                (self.probes, "probe-alert-{:06d}", "100.00"),
                (self.probes, "probe-halt-{:06d}", "10.00"),
            ]
            for count, pattern, budget in groups:
                for k in range(count):
                    n += 1
                    task = pattern.format(k)
                    body = budget_event(
                        "task.created", task, task_name=task, agent_id="agent-bench",
                        budget=budget, currency="USD",
                    )  # fmt: skip
                    yield signer.request(f"msg_{signer.run}_w{n}", self._stamped(body, ts)), NO_TAG

        with path.open("wb") as out:
            return write_records(out, records())

    def saturated(self, signer: Signer, path: Path, events: int, tag: str) -> int:
        """``events`` spends, signed now; ``tag`` keeps ids and fresh tasks unique per file."""
        signer.ts = int(time.time())
        ts = iso_now()

        def records() -> Iterator[tuple[bytes, str]]:
            for i in range(events):
                if i % 500 == 0:
                    body = self.spend(f"k{tag}-{i // 500:06d}", "10.00", ts, budget="10.00")
                elif i % 100 == 50:
                    body = self.spend(f"x{tag}-{i // 100:06d}", "60.00", ts, budget="100.00")
                else:
                    amount = SMALL_AMOUNTS[i % len(SMALL_AMOUNTS)]
                    body = self.spend(f"t-{i % self.bg_tasks:04d}", amount, ts)
                yield signer.request(f"msg_{signer.run}_{tag}_{i}", body), NO_TAG

        with path.open("wb") as out:
            return write_records(out, records())

    def constant(self, signer: Signer, path: Path, rate: int, seconds: int) -> int:
        """rate x seconds spends; every step-th one is a probe (halt and alert in turn)."""
        signer.ts = int(time.time())
        ts = iso_now()
        total = rate * seconds
        step = max(1, total // (2 * self.probes))

        def records() -> Iterator[tuple[bytes, str]]:
            halt_k = alert_k = 0
            for i in range(total):
                tag = NO_TAG
                if i % step == step // 2 and (halt_k + alert_k) < 2 * self.probes:
                    if (i // step) % 2 == 0 and halt_k < self.probes:
                        task = f"probe-halt-{halt_k:06d}"
                        body, tag = self.spend(task, "10.00", ts), f"halt:{task}"
                        halt_k += 1
                    else:
                        task = f"probe-alert-{alert_k:06d}"
                        body, tag = self.spend(task, "60.00", ts), f"alert:{task}"
                        alert_k += 1
                else:
                    amount = SMALL_AMOUNTS[i % len(SMALL_AMOUNTS)]
                    body = self.spend(f"t-{i % self.bg_tasks:04d}", amount, ts)
                yield signer.request(f"msg_{signer.run}_c{i}", body), tag

        with path.open("wb") as out:
            return write_records(out, records())


def alertmanager_file(path: Path, run: str, count: int) -> int:
    def records() -> Iterator[tuple[bytes, str]]:
        for n in range(count):
            yield raw_request("/api/v2/alerts", alertmanager_alert(run, n)), NO_TAG

    with path.open("wb") as out:
        return write_records(out, records())


# -- load generators ---------------------------------------------------------------------


def run_child(argv: list[str], out: Any) -> tuple[int, float]:
    """Run a load generator; its exit status and the CPU seconds it used (user + system)."""
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, round(usage.ru_utime + usage.ru_stime, 2)


def run_wrk(
    wrk: str, plan: Plan, port: int, args: list[str], seconds: int, workdir: Path, name: str
) -> dict[str, Any]:
    argv = [
        wrk,
        f"-t{plan.wrk_threads}",
        f"-c{plan.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "wrk.lua"),
        f"http://127.0.0.1:{port}/",
        "--",
        *args,
        str(plan.wrk_threads),
    ]
    out_path = workdir / f"wrk-{name}.out"
    with out_path.open("w") as out:
        _, cpu = run_child(argv, out)
    text = out_path.read_text()
    found = re.search(r"^BENCHJSON (.*)$", text, re.M)
    if found is None:
        raise RuntimeError(f"wrk gave no result:\n{text[-2000:]}")
    result: dict[str, Any] = json.loads(found.group(1))
    result["seconds"] = result["duration_us"] / 1e6
    result["loadgen_cpu_seconds"] = cpu
    return result


def run_loadgen(mode: str, port: int, path: Path, out: Path, **opts: Any) -> dict[str, Any]:
    argv = [
        PY,
        str(BENCH / "loadgen.py"),
        mode,
        "--port",
        str(port),
        "--file",
        str(path),
        "--out",
        str(out),
    ]
    for key, value in opts.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    err_path = out.with_suffix(".err")
    with err_path.open("w") as err:
        code, cpu = run_child(argv, err)
    if code != 0:
        raise RuntimeError(f"loadgen {mode} failed:\n{err_path.read_text()[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["loadgen_cpu_seconds"] = cpu
    return result


# -- one target, side by side with the others ---------------------------------------------


class Sink:
    def __init__(self, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.proc = Proc(name, [PY, str(BENCH / "sink.py"), "--port", str(self.port)], workdir)
        wait_ready(self.proc, f"http://127.0.0.1:{self.port}/_count", 20)

    def count(self) -> int:
        return int(json.loads(http_get(f"http://127.0.0.1:{self.port}/_count")[1])["count"])

    def records(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(http_get(f"http://127.0.0.1:{self.port}/_records", 10)[1])
        return doc

    def wait_quiet(self, quiet: float, timeout: float) -> int:
        """Until nothing new arrives for ``quiet`` seconds (deliveries owed have drained)."""
        deadline = time.monotonic() + timeout
        last, since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return last

    def stop(self) -> None:
        self.proc.stop()


def stats_ms(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}

    def at(p: float) -> float:
        k = min(len(ordered) - 1, max(0, int(p / 100 * len(ordered) + 0.5) - 1))
        return round(ordered[k] * 1000, 2)

    return {
        "count": len(ordered),
        "p50": at(50),
        "p90": at(90),
        "p99": at(99),
        "max": round(ordered[-1] * 1000, 2),
        "min": round(ordered[0] * 1000, 2),
    }


def delivery_times(
    probes: dict[str, Any], sink: Sink, ok: int, plan: Plan
) -> tuple[dict[str, Any], dict[str, Any]]:
    """time-to-halt and time-to-alert: the probe's 2xx at the client -> arrival at the sink."""
    wanted = {tag for tag, p in probes.items() if p["status"] == ok}
    deadline = time.monotonic() + plan.drain_timeout
    while True:
        doc = sink.records()
        halts: dict[str, float] = {}
        alerts: dict[str, float] = {}
        for rec in doc["records"]:
            if rec["kind"] == "halt":
                halts.setdefault(rec["task_id"], rec["at"])
            elif rec["kind"] == "alert" and rec["type"] == "warning" and rec["task_id"]:
                alerts.setdefault(rec["task_id"], rec["at"])
        seen = {f"halt:{t}" for t in halts} | {f"alert:{t}" for t in alerts}
        if wanted <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = []
    for kind, arrivals in (("halt", halts), ("alert", alerts)):
        deltas, missing = [], 0
        for tag, p in probes.items():
            if not tag.startswith(kind + ":") or p["status"] != ok:
                continue
            arrived = arrivals.get(tag.split(":", 1)[1])
            if arrived is None:
                missing += 1
            else:
                deltas.append(arrived - p["at"])
        result = stats_ms(deltas)
        result["missing"] = missing
        result["not_accepted"] = sum(
            1 for tag, p in probes.items() if tag.startswith(kind + ":") and p["status"] != ok
        )
        out.append(result)
    return out[0], out[1]


# -- the targets -------------------------------------------------------------------------


PERF_EVENTS = [
    "syscalls:sys_enter_fdatasync",
    "syscalls:sys_enter_fsync",
    "syscalls:sys_enter_futex",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_pwrite64",
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_recvfrom",
    "context-switches",
]


def rps_of(wrk_result: dict[str, Any]) -> float:
    if not wrk_result:
        return 0.0
    return float(round(wrk_result["requests"] / (wrk_result["duration_us"] / 1e6), 1))


def perf_counts(pid: int, seconds: float) -> dict[str, int] | None:
    """Counts of a few syscalls (all threads of ``pid``) over ``seconds``; None without perf."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    argv = [perf, "stat", "-x", ",", "-e", ",".join(PERF_EVENTS), "-p", str(pid), "--",
            "sleep", str(seconds)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True)
    counts: dict[str, int] = {}
    for row in done.stderr.splitlines():
        cells = row.split(",")
        if len(cells) > 2 and cells[0].strip().isdigit():
            counts[cells[2].replace("syscalls:sys_enter_", "")] = int(cells[0])
    return counts or None


def per_event(counts: dict[str, int] | None, events: float) -> dict[str, float] | None:
    if not counts or events <= 0:
        return None
    return {k: round(v / events, 2) for k, v in counts.items()}


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


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


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


# -- profile ---------------------------------------------------------------------------


def profile(bench: Bench, py_spy: str, store: str, pg_url: str | None) -> dict[str, Any]:
    """py-spy (and perf stat) on a fresh daemon, saturated (wrk) and at the constant rate.

    Not part of the measured numbers: sampling costs the daemon a little.
    """
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
        outputs: dict[str, Path] = {}

        # Saturated: wrk as in the measured runs.
        argv = [bench.wrk, f"-t{plan.wrk_threads}", f"-c{plan.connections}", f"-d{wrk_secs}s",
                "--timeout", "10s", "-s", str(BENCH / "wrk.lua"),
                f"http://127.0.0.1:{daemon.port}/", "--", "file", str(sat_file),
                str(plan.wrk_threads)]  # fmt: skip
        wrk_path = daemon.dir / "wrk.out"
        with wrk_path.open("w") as wrk_out:
            load_proc = subprocess.Popen(argv, stdout=wrk_out, stderr=subprocess.STDOUT)
            try:
                time.sleep(2.0)
                for what, fmt_, extra in sat_runs:
                    outputs[what] = record(what, fmt_, extra)
                sat_syscalls = perf_counts(daemon.pid, secs)
            finally:
                load_proc.wait(wrk_secs + 30)
        found = re.search(r"^BENCHJSON (.*)$", wrk_path.read_text(), re.M)
        wrk_result = json.loads(found.group(1)) if found else {}
        sink.wait_quiet(1.5, plan.drain_timeout)

        # The constant rate: where the CPU goes at 1,000 events/s.
        const_path = daemon.dir / "const.bin"
        daemon.load.constant(daemon.signer, const_path, plan.rate, rate_secs)
        argv = [PY, str(BENCH / "loadgen.py"), "open", "--port", str(daemon.port),
                "--file", str(const_path), "--out", str(daemon.dir / "rate.json"),
                "--rate", str(plan.rate)]  # fmt: skip
        with (daemon.dir / "rate.err").open("w") as err:
            rate_proc = subprocess.Popen(argv, stdout=err, stderr=subprocess.STDOUT)
            try:
                time.sleep(2.0)
                for what, fmt_, extra in rate_runs:
                    outputs[what] = record(what, fmt_, extra)
                rate_syscalls = perf_counts(daemon.pid, secs)
            finally:
                rate_proc.wait(rate_secs + 60)
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


# -- profile summary ---------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short_file(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m.group('func')} ({short_file(m.group('file'))})"


def source_line(where: str, line: str | None) -> str | None:
    """The text of ``where:line`` (py-spy shortens paths: try the repo, site-packages, stdlib)."""
    import linecache
    import sysconfig

    if not line or not line.isdigit():
        return None
    paths = sysconfig.get_paths()
    for base in (ROOT, Path(paths["purelib"]), Path(paths["stdlib"]), Path("/")):
        candidate = base / where
        if candidate.is_file():
            return linecache.getline(str(candidate), int(line)).strip()[:120] or None
    return None


# Where a sample's time goes: the first frame from the leaf up that one of these matches
# (frame text is "function (file:line)"). Generic helpers (json, dataclasses, decimal, enum,
# contextlib, ...) match none, so their time goes to whoever called them.
STAGES: list[tuple[str, re.Pattern[str]]] = [
    (
        "metrics (prometheus_client, RequestTimer)",
        re.compile(r"\(prometheus_client/|\(receiver/metrics\.py"),
    ),
    ("logging (a JSON line per event)", re.compile(r"\(logging/|\(receiver/logs\.py")),
    ("signature (HMAC verify)", re.compile(r"\(receiver/verify\.py|\(hmac\.py|\(hashlib")),
    ("parse (JSON body, Decimal, event)", re.compile(r"\(receiver/(events|money)\.py")),
    (
        "decide (state machine, outbox rows, views)",
        re.compile(r"\(receiver/(state|outbox|views|record|alerts|model)\.py"),
    ),
    (
        "store: SQLite batch, BEGIN/COMMIT (fsync), thread hand-off",
        re.compile(
            r"^SQLiteStore\.(_run_batch|_write_loop|_answer|_write|_read)|settle .*sqlite\.py"
        ),
    ),
    ("store: SQL statements, row mapping (receiver/store)", re.compile(r"\(receiver/store/")),
    ("asyncpg (PostgreSQL protocol, pool)", re.compile(r"\(asyncpg/")),
    (
        "delivery (dispatcher, apprise, halt calls)",
        re.compile(
            r"\(receiver/(dispatch|halt|channels)\.py|\((apprise|httpx|httpcore|urllib3|requests)/"
        ),
    ),
    ("ingest handler (receiver/ingest.py)", re.compile(r"\(receiver/(ingest|app)\.py")),
    ("starlette (routing, Request, Response)", re.compile(r"\(starlette/")),
    ("uvicorn (HTTP protocol, transport writes)", re.compile(r"\(uvicorn/")),
    (
        "event loop, futures, queues, threads",
        re.compile(r"\((asyncio|concurrent)/|\((threading|queue|selectors)\.py"),
    ),
]


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in STAGES:
            if pattern.search(frame):
                return name
    return "other: " + frame_name(frames[-1])


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Shares of all samples by thread, by function (self and inclusive) and by source line.

    py-spy's collapsed stacks (``--threads``): ``thread (tid): name;frame;frame count``.
    A frame that spends time in C (uvloop, httptools, sqlite3, fsync) shows as self time
    of the nearest Python frame: ``Runner.run`` self time is the event loop's own C code.
    """
    self_time: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = 0
    for row in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = row.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        thread = "?"
        if frames and frames[0].startswith("thread ("):
            thread = re.sub(r"_\d+$|-[0-9a-f]{6,}.*$", "", frames.pop(0).partition(": ")[2])
        frames = [f for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        threads[thread] += count
        names = [frame_name(f) for f in frames]
        self_time[names[-1]] += count
        stages[stage_of(frames)] += count
        for name in set(names):
            incl[name] += count
        leaf = _FRAME.match(frames[-1].strip())
        if leaf:
            where = short_file(leaf.group("file"))
            lines[f"{leaf.group('func')} ({where}:{leaf.group('line')})"] += count
            packages[where.split("/")[0] if "/" in where else where] += count

    def share(c: Counter[str], n: int, keep: Callable[[str], bool] = lambda k: True) -> list[Any]:
        rows = [(k, v) for k, v in c.most_common() if keep(k)][:n]
        return [
            {"name": k, "samples": v, "percent": round(100 * v / max(total, 1), 1)} for k, v in rows
        ]

    self_lines = share(lines, top)
    for row in self_lines:
        m = re.match(r"^.* \((?P<file>.*):(?P<line>\d+)\)$", row["name"])
        row["code"] = source_line(m.group("file"), m.group("line")) if m else None
    return {
        "samples": total,
        "threads": share(threads, 10),
        "self": share(self_time, top),
        "self_lines": self_lines,
        "inclusive": share(incl, top + 15),
        # Outer frames are missing from some py-spy stacks (coroutines resumed from C), so
        # an outer function's inclusive share is a lower bound; "stages" does not need them.
        "inclusive_receiver": share(
            incl, top, lambda k: "(receiver/" in k and "(receiver/cli.py" not in k
        ),
        "stages": share(stages, 20),
        "self_by_package": share(packages, 15),
    }


# -- PostgreSQL --------------------------------------------------------------------------


def pg_create(url: str, name: str) -> str:
    import asyncpg

    async def go() -> str:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    version = asyncio.run(go())
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, "")) + "#" + version


def pg_drop(url: str, name: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    with contextlib.suppress(Exception):
        asyncio.run(go())


# -- report ------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    t = results["targets"]
    base = t.get("baseline", {}).get("saturated", {}).get("ok_rps")
    am = t.get("alertmanager", {}).get("saturated", {}).get("ok_rps")
    out: dict[str, Any] = {}
    for name in ("daemon-sqlite", "daemon-postgres"):
        rps = t.get(name, {}).get("saturated", {}).get("ok_rps")
        if rps is None:
            continue
        out[name] = {
            "vs_baseline": round(rps / base, 3) if base else None,
            "vs_alertmanager": round(rps / am, 3) if am else None,
        }
    return out


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, what: str, value: Any, limit: float, higher_is_better: bool) -> None:
        met = None if value is None else (value >= limit) == higher_is_better or value == limit
        sign = ">=" if higher_is_better else "<="
        out.append({"target": name, "check": f"{what} {sign} {limit}", "value": value, "met": met})

    for name, r in results["ratios"].items():
        t = results["targets"][name]
        add(name, "rps / Alertmanager", r["vs_alertmanager"], TARGETS["rps_vs_alertmanager"], True)
        add(name, "rps / baseline", r["vs_baseline"], TARGETS["rps_vs_baseline"], True)
        p99 = t["constant"]["latency_ms"]["p99"]
        add(name, "p99 ms at 1000/s", p99, TARGETS["p99_ms_at_rate"], False)
        halt = t.get("time_to_halt_ms", {}).get("p99")
        add(name, "time-to-halt p99 ms", halt, TARGETS["time_to_halt_p99_ms"], False)
        alert = t.get("time_to_alert_ms", {}).get("p99")
        add(name, "time-to-alert p99 ms", alert, TARGETS["time_to_alert_p99_ms"], False)
        rss = t["rss_mb"]["under_load_peak"]
        add(name, "RSS under load MB", rss, TARGETS["rss_under_load_mb"], False)
    return out


def table(results: dict[str, Any]) -> str:
    rows = [
        (
            "target",
            "sat rps (median)",
            "rounds",
            "non-ok",
            "CPU us/req",
            "p50 ms",
            "p99 ms",
            "lag p99",
            "halt p50/p99 ms",
            "alert p50/p99 ms",
            "RSS idle/load MB",
        )
    ]
    for name, r in results["targets"].items():
        if "saturated" not in r:
            rows.append((name, "skipped: " + r.get("skipped", "?"), *[""] * 9))
            continue
        sat, const = r["saturated"], r["constant"]
        non_ok = sat["requests"] - sat["ok"] + sum(sat["errors"].values()) - sat["errors"]["status"]
        halt, alert = r.get("time_to_halt_ms"), r.get("time_to_alert_ms")
        rows.append(
            (
                name,
                fmt(sat["ok_rps"], 0),
                "/".join(f"{v:.0f}" for v in sat["ok_rps_rounds"]),
                str(non_ok),
                fmt(sat["cpu"]["server_cpu_us_per_request"], 0),
                fmt(const["latency_ms"]["p50"], 2),
                fmt(const["latency_ms"]["p99"], 2),
                fmt(const["send_lag_ms"]["p99"], 2),
                f"{fmt(halt.get('p50'))} / {fmt(halt.get('p99'))}" if halt else "-",
                f"{fmt(alert.get('p50'))} / {fmt(alert.get('p99'))}" if alert else "-",
                f"{fmt(r['rss_mb']['idle'])} / {fmt(r['rss_mb']['under_load_peak'])}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_table(results: dict[str, Any]) -> str:
    rows = [
        (
            "target (saturated | constant)",
            "server CPU s (user+sys)",
            "PG backends CPU s",
            "load gen CPU s",
            "others CPU s",
            "machine busy %",
            "phase s",
        )
    ]
    for name, r in results["targets"].items():
        if "saturated" not in r:
            continue
        for phase in ("saturated", "constant"):
            p = r[phase]
            cpu = p["cpu"]
            rows.append(
                (
                    f"{name} {phase}",
                    f"{fmt(cpu['server_cpu_seconds'], 2)} ({fmt(cpu['server_user_seconds'], 2)}"
                    f"+{fmt(cpu['server_system_seconds'], 2)})",
                    fmt(cpu.get("postgres_backends_cpu_seconds"), 2),
                    fmt(p.get("loadgen_cpu_seconds"), 2),
                    fmt(cpu["other_cpu_seconds"], 2),
                    fmt(cpu["machine_busy_percent"], 0),
                    fmt(cpu["seconds"], 1),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    out = [table(results), "", cpu_table(results), ""]
    for name, r in results["ratios"].items():
        out.append(
            f"{name}: {fmt(r['vs_baseline'], 2)}x baseline, "
            f"{fmt(r['vs_alertmanager'], 2)}x Alertmanager (saturated durable 202/s)"
        )
    out.append("")
    for c in results["checks"]:
        mark = {True: "met ", False: "MISS", None: "n/a "}[c["met"]]
        out.append(f"  [{mark}] {c['target']}: {c['check']} (got {fmt(c['value'], 2)})")
    for store, prof in results.get("profiles", {}).items():
        if "skipped" in prof:
            out.append(f"\nprofile {store}: skipped: {prof['skipped']}")
            continue
        for mode, label in (
            ("saturated", f"saturated, {prof['saturated_rps_while_profiled']} rps while profiled"),
            ("rate", f"{results['plan']['rate']} events/s"),
        ):
            every, gil = prof[f"{mode}_all_threads"], prof[f"{mode}_gil"]
            secs = prof["seconds_each"]
            out.append(f"\nprofile {store}, {label} ({secs} s at 100 Hz per recording)")
            out.append(
                "  % of wall time each thread was busy (C code and fsync count as busy): "
                + ", ".join(f"{t['name']} {t['samples'] / secs:.0f}" for t in every["threads"])
            )
            calls = prof.get(f"{mode}_syscalls_per_event")
            if calls:
                out.append(
                    "  per event (perf stat): "
                    + ", ".join(f"{k} {v}" for k, v in calls.items() if v >= 0.01)
                )
            out.append(
                f"  GIL held {gil['samples'] / secs:.0f}% of the time; share of GIL samples "
                "by stage (threads: "
                + ", ".join(f"{t['name']} {t['percent']}%" for t in gil["threads"])
                + "):"
            )
            for row in gil["stages"][:14]:
                out.append(f"    {row['percent']:5.1f}%  {row['name']}")
            out.append("  GIL self time by source line:")
            for row in gil["self_lines"][:12]:
                out.append(f"    {row['percent']:5.1f}%  {row['name']}  {row.get('code') or ''}")
    return "\n".join(out)


def machine() -> dict[str, Any]:
    free = command_output(["free", "-g"])
    total = None
    for line in free.splitlines():
        if line.startswith("Mem:"):
            total = int(line.split()[1])
    head = command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(command_output(["git", "-C", str(ROOT), "status", "--porcelain", "receiver"]))
    from importlib.metadata import PackageNotFoundError, version

    import starlette
    import uvicorn

    try:
        loop = f"uvloop {version('uvloop')}"
    except PackageNotFoundError:
        loop = "asyncio"
    try:
        import httptools

        http = f"httptools {httptools.__version__}"
    except ImportError:
        http = "h11"
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "mem_total_gib_free_g": total,
        "loadavg_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "starlette": starlette.__version__,
        "event_loop": loop,
        "http_parser": http,
        "sqlite": sqlite3.sqlite_version,
        "git_head": head,
        "receiver_has_uncommitted_changes": dirty,
    }


# -- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, < 2 min")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["baseline", "alertmanager", "sqlite", "postgres"],
        help="run only these targets",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL"),
        help="server for a fresh database (the role needs CREATEDB); default: a throw-away "
        "server started with scripts/scratch-postgres",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never apt-get/pip install missing tools; skip what needs them",
    )
    parser.add_argument(
        "--profile",
        choices=["none", "sqlite", "postgres", "both"],
        help="py-spy the daemon under load (default: both; with --quick: sqlite)",
    )
    parser.add_argument("--workdir", help="scratch dir on a real disk (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    parser.add_argument(
        "--daemon-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra RECEIVER_* setting for the daemon, e.g. RECEIVER_WORKERS=2 (repeatable)",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.profile is None:
        args.profile = "sqlite" if args.quick else "both"
    only = set(args.only or ["baseline", "alertmanager", "sqlite", "postgres"])
    args.stamp = time.strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()

    log(f"budget-receiver benchmark ({plan.name})")
    wrk = apt_install("wrk", "wrk", not args.no_install)
    if wrk is None:
        log("wrk is needed for the saturated runs: apt-get install wrk")
        return 2
    alertmanager = None
    if "alertmanager" in only:
        alertmanager = apt_install(
            "prometheus-alertmanager", "prometheus-alertmanager", not args.no_install
        )
    py_spy = find_py_spy(not args.no_install) if args.profile != "none" else None
    workdir, kind = pick_workdir(args.workdir)
    log(f"scratch dir {workdir} ({kind})")
    fsync = fsync_probe(workdir)
    log(f"fsync of 4 KiB there: p50 {fsync['p50']} ms, p99 {fsync['p99']} ms")

    results: dict[str, Any] = {
        "machine": machine(),
        "plan": plan.__dict__,
        "load_generators": {
            "saturated": f"{command_output([wrk, '-v']).splitlines()[0]} "
            f"(-t{plan.wrk_threads} -c{plan.connections}, Lua script bench/wrk.lua)",
            "constant_rate": "bench/loadgen.py (asyncio + uvloop, open loop, own process)",
        },
        "workdir_fs": kind,
        "fsync_4k_ms": fsync,
        "targets": {},
        "profiles": {},
    }
    bench = Bench(args, plan, workdir, wrk)
    pg_dbs: list[str] = []
    # Not inside the 0700 scratch dir: the server runs as the postgres user.
    scratch_pg = Path(tempfile.mkdtemp(prefix="budget-bench-pg-"))
    if args.pg_url is None and ("postgres" in only or args.profile in ("postgres", "both")):
        try:
            args.pg_url = subprocess.run(
                [str(ROOT / "scripts" / "scratch-postgres"), str(scratch_pg), str(free_port())],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
                timeout=600,
            ).stdout.strip()
            log(f"started a throw-away PostgreSQL: {args.pg_url}")
        except Exception as exc:
            log(f"  could not start PostgreSQL with scripts/scratch-postgres: {exc}")
            args.pg_url = "postgresql://unavailable@127.0.0.1:1/none"

    def pg_fresh(tag: str) -> str | None:
        name = f"bench_{args.stamp.lower()}_{tag}"
        try:
            url_v = pg_create(args.pg_url, name)
        except Exception as exc:
            log(f"  PostgreSQL not usable at {args.pg_url.split('@')[-1]}: {exc}")
            return None
        pg_dbs.append(name)
        url, _, version = url_v.partition("#")
        results["machine"]["postgres"] = version
        return url

    servers: list[Server] = []
    try:
        # Every target is started first and stays up (idle when not measured), so each phase
        # measures them one after the other within a few seconds, and the saturated runs
        # take turns over several rounds: drifting background load hits them all alike.
        if "baseline" in only:
            servers.append(Baseline(bench))
        if "alertmanager" in only:
            if alertmanager is None:
                msg = "prometheus-alertmanager not installed and could not be (apt-get)"
                log(f"alertmanager: SKIPPED: {msg}")
                results["targets"]["alertmanager"] = {"skipped": msg}
            else:
                servers.append(Alertmanager(bench, alertmanager))
        if "sqlite" in only:
            servers.append(Daemon(bench, "sqlite"))
        if "postgres" in only:
            url = pg_fresh("pg")
            if url is None:
                results["targets"]["daemon-postgres"] = {"skipped": "PostgreSQL not reachable"}
            else:
                servers.append(Daemon(bench, "postgres", url))
        log("starting " + ", ".join(s.name for s in servers))
        for server in servers:
            server.start()
        time.sleep(1.0)  # RSS at idle
        log("warm-up (tasks created, connections made)")
        for server in servers:
            server.warmup()
        for rnd in range(plan.rounds):
            log(f"saturated, round {rnd + 1} of {plan.rounds} ({plan.sat_seconds} s each)")
            for server in servers:
                server.saturate(rnd)
        log(f"constant rate, {plan.rate}/s for {plan.const_seconds} s each")
        for server in servers:
            server.constant()
        for server in servers:
            results["targets"][server.name] = server.finish()
            mem = server.result.get("rss_mb", {})
            log(f"  {server.name}: RSS idle {mem.get('idle')} MB, under load "
                f"{mem.get('under_load_peak')} MB")  # fmt: skip
        servers.clear()

        stores = {"none": [], "sqlite": ["sqlite"], "postgres": ["postgres"],
                  "both": ["sqlite", "postgres"]}[args.profile]  # fmt: skip
        for store in stores:
            if store == "postgres" and "postgres" not in only and args.profile == "both":
                continue
            if py_spy is None:
                results["profiles"][store] = {"skipped": "py-spy not installed"}
                continue
            log(f"profile: py-spy and perf stat on a fresh daemon ({store})")
            url = pg_fresh("prof") if store == "postgres" else None
            if store == "postgres" and url is None:
                results["profiles"][store] = {"skipped": "PostgreSQL not reachable"}
                continue
            try:
                results["profiles"][store] = profile(bench, py_spy, store, url)
            except RuntimeError as exc:
                log(f"  profile failed: {exc}")
                results["profiles"][store] = {"skipped": str(exc)[:500]}
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
        stop_all()
        for name in pg_dbs:
            pg_drop(args.pg_url, name)
        if scratch_pg.exists():
            subprocess.run(
                [str(ROOT / "scripts" / "scratch-postgres"), "--stop", str(scratch_pg)],
                check=False,
            )
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    results["ratios"] = ratios(results)
    results["checks"] = checks(results)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    out = RESULTS / f"{args.stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print()
    print(report(results))
    print(f"\nwall time {results['wall_seconds']} s; JSON: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
