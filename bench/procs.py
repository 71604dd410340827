"""Child processes: started with their output in a log file, stopped by their own pid.

Also the client of bench/sink.py, the process that receives the daemons' halt calls and
alerts and says when each arrived.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.plan import BENCH, PY


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
