"""Start the real daemon (`budget-receiver serve`) in a subprocess, and talk to it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from receiver.verify import sign
from tests.waiting import free_port, poll

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a test-only key
ADMIN_TOKEN = "test-admin-token-0123456789"
READ_TOKEN = "test-read-token-0123456789"


def clean_environ() -> dict[str, str]:
    """This process's environment without RECEIVER_* variables: the env file alone
    configures the daemon (RECEIVER_TEST_POSTGRES_URL is the tests', not the daemon's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}


def cli(*args: str, env_file: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`budget-receiver ARGS --env-file ENV_FILE` run to its end, its output captured: the
    one-shot commands, and a `serve` that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args, "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environ(),
    )


def write_env(path: Path, settings: Mapping[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    return path


class Endpoint:
    """A running daemon seen from outside, at ``url``: signed webhooks and the API."""

    url: str

    def log(self) -> str:
        raise NotImplementedError

    def wait_until_ready(self, exit_code: Callable[[], int | None], timeout: float) -> None:
        """Until /readyz answers 200; fails with the log if the daemon exits (``exit_code``
        is then not None) or is not ready within ``timeout`` seconds."""

        def readyz() -> int:
            code = exit_code()
            if code is not None:
                raise RuntimeError(f"daemon exited with {code}:\n{self.log()}")
            return httpx.get(self.url + "/readyz", timeout=1).status_code

        poll(
            readyz,
            lambda status: status == 200,
            what=f"{self.url}/readyz to answer 200",
            timeout=timeout,
            ignore=(httpx.HTTPError,),
            context=self.log,
        )

    def post_event(
        self,
        doc: Any,
        *,
        msg_id: str | None = None,
        secret: str = SECRET,
        timestamp: int | None = None,
        path: str = "/webhooks/budget",
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        body = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
        headers = sign(
            secret, msg_id or f"msg_{uuid.uuid4().hex}", timestamp or int(time.time()), body
        )
        headers["content-type"] = "application/json"
        return (client or httpx).post(self.url + path, content=body, headers=headers, timeout=30)  # type: ignore[attr-defined]

    def api(self, method: str, path: str, token: str = ADMIN_TOKEN, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def events(self, task_id: str) -> list[dict[str, Any]]:
        """The task's whole timeline, every page."""
        path = f"/v1/tasks/{task_id}/events"
        page = self.api("GET", path, params={"limit": 500}).json()
        events: list[dict[str, Any]] = page["events"]
        while page["next"] is not None:
            page = self.api("GET", path, params={"limit": 500, "after": page["next"]}).json()
            events += page["events"]
        return events

    def deliveries(self, task_id: str | None = None) -> list[dict[str, Any]]:
        """The outbox (of ``task_id``, if given), every page."""
        rows: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500}
        while True:
            page = self.api("GET", "/v1/deliveries", params=params).json()
            rows += page["deliveries"]
            if page["next"] is None:
                return [r for r in rows if task_id is None or r["task_id"] == task_id]
            params["after"] = page["next"]

    def wait_settled(
        self, task_id: str | None = None, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """The outbox (of ``task_id``) once no row in it is pending: every alert and halt call
        owed so far has been made (or is dead), so nothing more goes out for it unless a new
        event owes more. What a test waits for before it counts what arrived."""
        return poll(
            lambda: self.deliveries(task_id),
            lambda rows: all(r["status"] != "pending" for r in rows),
            what=f"the outbox{f' of {task_id}' if task_id else ''} to settle",
            timeout=timeout,
            context=lambda: self.log()[-3000:],
        )

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.api("GET", "/v1/tasks/" + quote(task_id, safe=""))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_state(self, task_id: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        """The task once it is in ``state``; fails with the task and the log's tail if it
        is not within ``timeout`` seconds."""
        return poll(
            lambda: self.task(task_id),
            lambda task: task["state"] == state,
            what=f"{task_id} to be {state}",
            timeout=timeout,
            context=lambda: self.log()[-3000:],
        )


class Daemon(Endpoint):
    """One `budget-receiver serve` process with its own env file and port."""

    def __init__(self, workdir: Path, settings: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.settings = {
            "RECEIVER_HOST": "127.0.0.1",
            "RECEIVER_PORT": str(self.port),
            "RECEIVER_DATABASE_URL": f"sqlite:///{workdir / 'receiver.db'}",
            "RECEIVER_WEBHOOK_SECRETS": SECRET,
            "RECEIVER_ADMIN_TOKEN": ADMIN_TOKEN,
            "RECEIVER_READ_TOKEN": READ_TOKEN,
            **(settings or {}),
        }
        self.env_file = write_env(workdir / f"receiver-{self.port}.env", self.settings)
        self.log_path = workdir / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Daemon:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "receiver", "serve", "--env-file", str(self.env_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_environ(),
                cwd=self.workdir,
            )
        self.wait_until_ready(self.proc.poll, timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@contextlib.contextmanager
def running(workdir: Path, settings: Mapping[str, str] | None = None) -> Iterator[Daemon]:
    daemon = Daemon(workdir, settings).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def event(type_: str, task_id: str, **data: Any) -> dict[str, Any]:
    return {"type": type_, "data": {"task_id": task_id, **data}}


@dataclass(frozen=True)
class Ack:
    msg_id: str
    task_id: str
    amount: Decimal
    at: float  # time.monotonic() when the 2xx arrived


class Burst:
    """Threads sending signed increments for ``tasks`` until stopped; every 2xx is kept.

    A connection error ends a thread's sending (the daemon went away) when
    ``stop_on_error``; otherwise it keeps trying (a daemon refusing while it stops).
    """

    def __init__(self, daemon: Endpoint, tasks: list[str], threads: int = 8,
                 stop_on_error: bool = True) -> None:  # fmt: skip
        self.daemon = daemon
        self.tasks = tasks
        self.acked: list[Ack] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_on_error = stop_on_error
        self._threads = [threading.Thread(target=self._send, args=(n,)) for n in range(threads)]

    def start(self) -> Burst:
        for task_id in self.tasks:
            created = self.daemon.post_event(
                event("task.created", task_id, budget="1000000", currency="USD")
            )
            assert created.status_code == 202, created.text
        for t in self._threads:
            t.start()
        return self

    def wait_for(self, acks: int, timeout: float = 20.0) -> None:
        poll(
            lambda: len(self.acked),
            lambda n: n >= acks,
            what=f"{acks} acknowledged events",
            timeout=timeout,
            interval=0.01,
            context=lambda: self.daemon.log()[-3000:],
        )

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _send(self, n: int) -> None:
        with httpx.Client() as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                task_id = self.tasks[(n + i) % len(self.tasks)]
                amount = Decimal(n + 1) / 100 + Decimal(i % 7)
                msg_id = f"burst-{n}-{i}-{uuid.uuid4().hex[:6]}"
                doc = event("task.spend", task_id, amount=str(amount))
                try:
                    r = self.daemon.post_event(doc, msg_id=msg_id, client=client)
                except httpx.HTTPError:
                    if self._stop_on_error:
                        return
                    continue
                if r.is_success:
                    assert r.status_code == 202, r.text
                    with self._lock:
                        self.acked.append(Ack(msg_id, task_id, amount, time.monotonic()))

    def assert_reflected_in(self, daemon: Endpoint) -> None:
        """Every acknowledged event is stored, and each task's spend is exactly the sum of
        its stored increments (an event stored whose 2xx was lost counts, once)."""
        for task_id in self.tasks:
            events = daemon.events(task_id)
            mine = [a for a in self.acked if a.task_id == task_id]
            assert {a.msg_id for a in mine} <= {e["event_id"] for e in events}, (
                f"{task_id}: an acknowledged event is missing"
            )
            stored = sum(
                (Decimal(e["payload"]["data"]["amount"]) for e in events
                 if e["type"] == "task.spend"),
                Decimal(0),
            )  # fmt: skip
            assert Decimal(daemon.task(task_id)["spent"]) == stored
            assert stored >= sum((a.amount for a in mine), Decimal(0))
