"""The load: request files (signed daemon events, Alertmanager alerts) and the two load
generators that send them, wrk (saturated) and bench/loadgen.py (constant rate, warm-up),
each in its own process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plan import BENCH, PY, Plan
from bench.reqfile import NO_TAG, alertmanager_alert, budget_event, raw_request, write_records

WEBHOOK_PATH = "/webhooks/budget"
SMALL_AMOUNTS = [f"{c / 100:.2f}" for c in range(1, 100, 7)]  # 0.01 .. 0.99


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


def run_child(argv: list[str], out: Any) -> tuple[int, float]:
    """Run a load generator; its exit status and the CPU seconds it used (user + system)."""
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, round(usage.ru_utime + usage.ru_stime, 2)


def wrk_argv(wrk: str, plan: Plan, port: int, seconds: int, args: list[str]) -> list[str]:
    """wrk with bench/wrk.lua; ``args`` tell the script what to send ("file PATH", ...)."""
    return [
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


def wrk_output(text: str) -> dict[str, Any] | None:
    """The "BENCHJSON {...}" line that bench/wrk.lua prints at the end, or None."""
    found = re.search(r"^BENCHJSON (.*)$", text, re.M)
    if found is None:
        return None
    result: dict[str, Any] = json.loads(found.group(1))
    return result


def run_wrk(
    wrk: str, plan: Plan, port: int, args: list[str], seconds: int, workdir: Path, name: str
) -> dict[str, Any]:
    out_path = workdir / f"wrk-{name}.out"
    with out_path.open("w") as out:
        _, cpu = run_child(wrk_argv(wrk, plan, port, seconds, args), out)
    text = out_path.read_text()
    result = wrk_output(text)
    if result is None:
        raise RuntimeError(f"wrk gave no result:\n{text[-2000:]}")
    result["seconds"] = result["duration_us"] / 1e6
    result["loadgen_cpu_seconds"] = cpu
    return result


def loadgen_argv(mode: str, port: int, path: Path, out: Path, **opts: Any) -> list[str]:
    """bench/loadgen.py sending the requests in ``path``; its result JSON goes to ``out``."""
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
    return argv


def run_loadgen(mode: str, port: int, path: Path, out: Path, **opts: Any) -> dict[str, Any]:
    err_path = out.with_suffix(".err")
    with err_path.open("w") as err:
        code, cpu = run_child(loadgen_argv(mode, port, path, out, **opts), err)
    if code != 0:
        raise RuntimeError(f"loadgen {mode} failed:\n{err_path.read_text()[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["loadgen_cpu_seconds"] = cpu
    return result


def rps_of(wrk_result: dict[str, Any]) -> float:
    if not wrk_result:
        return 0.0
    return float(round(wrk_result["requests"] / (wrk_result["duration_us"] / 1e6), 1))
