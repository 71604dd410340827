"""What a run measures of a server and its machine: CPU and RSS of a process tree, CPU of
the PostgreSQL backends, the machine's busy time, the disk's fsync, latency statistics,
delivery times (probe's answer -> arrival at the sink) and syscall counts (perf stat)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.plan import RESULTS, Plan, log
from bench.procs import Sink

# -- CPU and memory of a process tree, CPU of the machine --------------------------------


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


# -- the disk under the database ---------------------------------------------------------


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


# -- latencies and delivery times --------------------------------------------------------


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


# -- syscalls (perf stat) ----------------------------------------------------------------


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


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
