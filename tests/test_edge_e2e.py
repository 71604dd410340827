"""The HTTP edge through `budget-receiver serve`: every body is read under a limit, and a
slow or greedy client is bounded in time, in memory and in connections."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from receiver.verify import sign
from tests.daemon import ADMIN_TOKEN, READ_TOKEN, SECRET, Daemon, event, running
from tests.waiting import poll

pytestmark = pytest.mark.slow
MB = 1024 * 1024
STALLED_HEAD = b"POST /webhooks/budget HTTP/1.1\r\nHost: receiver\r\nContent-Type: appl"


def memory_mb(daemon: Daemon) -> dict[str, int]:
    """The daemon's resident memory now (VmRSS) and at its peak so far (VmHWM), in MiB."""
    assert daemon.proc is not None
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) // 1024 for key in ("VmRSS", "VmHWM")}


def huge_json(megabytes: int) -> Iterator[bytes]:
    """A JSON object of about ``megabytes`` MiB, sent chunked: no Content-Length to refuse."""
    yield b'{"amount": "1", "budget": "50", "reason": "r", "pad": "'
    for _ in range(megabytes):
        yield b"x" * MB
    yield b'"}'


def test_a_huge_chunked_body_to_the_task_api_is_refused_without_being_held(
    tmp_path: Path,
) -> None:
    """authorize and resume answer 413 to a 128 MiB chunked body, and the daemon's memory,
    now and at its peak, grows by nothing like the body's size; the task is unchanged."""
    with running(tmp_path) as d:
        d.post_event(event("task.created", "big-1", budget="10", currency="USD"))
        d.post_event(event("task.spend", "big-1", spent="10"))
        calls = [("authorize", READ_TOKEN), ("resume", ADMIN_TOKEN)]
        for path, token in calls:  # warm up: the first call of each route imports and caches
            d.api("POST", f"/v1/tasks/big-1/{path}", token=token, json={"amount": "1"})
        before, task = memory_mb(d), d.task("big-1")
        for path, token in calls:
            r = httpx.post(
                f"{d.url}/v1/tasks/big-1/{path}",
                content=huge_json(128),
                headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
                timeout=120,
            )
            assert (r.status_code, r.json()["error"]) == (413, "payload_too_large"), path
            assert r.json()["detail"]
        after = memory_mb(d)
        assert after["VmRSS"] - before["VmRSS"] < 32, (before, after)
        assert after["VmHWM"] - before["VmHWM"] < 32, (before, after)
        assert d.task("big-1") == task
        assert [e["type"] for e in d.events("big-1")] == ["task.created", "task.spend"]


# -- slow and greedy clients ---------------------------------------------------------


def connect(d: Daemon) -> socket.socket:
    return socket.create_connection(("127.0.0.1", d.port), timeout=30)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the daemon sends until it closes the connection; fails if it never does."""
    received = b""
    deadline = time.monotonic() + timeout
    with sock:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"the daemon kept the connection open {timeout} s: {received!r}")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


def status_and_json(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer
    return int(head.split()[1]), json.loads(body)


def assert_serves(d: Daemon, task_id: str) -> None:
    """A normal client is answered: liveness, and a signed event stored."""
    assert httpx.get(d.url + "/healthz", timeout=30).status_code == 200
    r = d.post_event(event("task.created", task_id, budget="10", currency="USD"))
    assert r.status_code == 202, r.text
    assert d.task(task_id)["state"] == "active"


def test_clients_that_never_finish_their_request_head_are_closed(tmp_path: Path) -> None:
    """300 connections that send half a request head and stop, 50 that send nothing, and one
    that stops halfway through its second request: each is closed after
    RECEIVER_HEADER_TIMEOUT_SECONDS (a half-sent head with a 408), and normal clients are
    answered meanwhile and afterwards."""
    with running(tmp_path, {"RECEIVER_HEADER_TIMEOUT_SECONDS": "2"}) as d:
        stalled = [connect(d) for _ in range(300)]
        for sock in stalled:
            sock.sendall(STALLED_HEAD)
        silent = [connect(d) for _ in range(50)]
        second = connect(d)
        second.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n")
        assert second.recv(65536).startswith(b"HTTP/1.1 200 ")
        second.sendall(STALLED_HEAD)
        assert_serves(d, "head-1")

        for sock in [*stalled, second]:
            status, body = status_and_json(read_until_closed(sock, timeout=60))
            assert (status, body["error"]) == (408, "request_timeout")
            assert "header" in body["detail"]
        for sock in silent:
            assert read_until_closed(sock, timeout=60) == b""
        assert_serves(d, "head-2")


def test_an_endless_request_head_is_cut_off(tmp_path: Path) -> None:
    """A header that never ends is answered 431 and the connection closed once the head
    passes its limit; the daemon does not hold what was sent, and keeps answering."""
    with running(tmp_path) as d:
        before = memory_mb(d)
        sock = connect(d)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nX-Pad: ")
        with contextlib.suppress(OSError):  # the daemon closes while this still sends
            for _ in range(64):
                sock.sendall(b"a" * MB)
        answer = read_until_closed(sock, timeout=60)
        if answer:  # a reset can overtake the answer; what matters is the close
            status, body = status_and_json(answer)
            assert (status, body["error"]) == (431, "headers_too_large")
        after = memory_mb(d)
        assert after["VmHWM"] - before["VmHWM"] < 16, (before, after)
        assert_serves(d, "head-3")


def test_a_body_that_trickles_in_too_slowly_gets_408_and_stores_nothing(tmp_path: Path) -> None:
    """A signed event whose body arrives a byte at a time, slower than
    RECEIVER_BODY_TIMEOUT_SECONDS allows, is answered 408 and the connection closed;
    the task is not created. A prompt client is answered as ever."""
    with running(tmp_path, {"RECEIVER_BODY_TIMEOUT_SECONDS": "1"}) as d:
        doc = event("task.created", "trickle-1", budget="10", currency="USD", pad="x" * 4000)
        body = json.dumps(doc).encode()
        headers = {**sign(SECRET, "msg_trickle", int(time.time()), body),
                   "content-type": "application/json", "content-length": str(len(body))}  # fmt: skip
        head = "POST /webhooks/budget HTTP/1.1\r\nHost: receiver\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        sock = connect(d)
        sock.sendall(head.encode() + b"\r\n" + body[:10])
        stop = threading.Event()

        def trickle() -> None:
            with contextlib.suppress(OSError):
                for byte in body[10:]:
                    if stop.wait(0.05):
                        return
                    sock.send(bytes([byte]))

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            status, answer = status_and_json(read_until_closed(sock, timeout=60))
        finally:
            stop.set()
            sender.join(30)
        assert (status, answer["error"]) == (408, "request_timeout")
        assert d.api("GET", "/v1/tasks/trickle-1").status_code == 404
        assert_serves(d, "trickle-2")


def test_past_the_connection_limit_new_clients_get_503_and_the_daemon_recovers(
    tmp_path: Path,
) -> None:
    """With RECEIVER_MAX_CONNECTIONS connections held open, a new client's request is
    answered 503 at once (and not stored); when the held ones go, it is served again."""
    limits = {"RECEIVER_MAX_CONNECTIONS": "20", "RECEIVER_HEADER_TIMEOUT_SECONDS": "120"}
    with running(tmp_path, limits) as d:
        held = [connect(d) for _ in range(20)]
        r = httpx.get(d.url + "/healthz", timeout=30)
        assert (r.status_code, r.json()["error"]) == (503, "too_many_connections"), r.text
        assert r.json()["detail"] and r.headers["retry-after"]
        r = d.post_event(event("task.created", "crowd-1", budget="10", currency="USD"))
        assert r.status_code == 503
        for sock in held:
            sock.close()
        poll(
            lambda: httpx.get(d.url + "/healthz", timeout=30),
            lambda r: r.status_code == 200,
            what="/healthz to answer 200 once the held connections went",
            timeout=30,
        )
        assert d.api("GET", "/v1/tasks/crowd-1").status_code == 404
        assert_serves(d, "crowd-2")


def test_worker_processes_close_stalled_clients_too(tmp_path: Path) -> None:
    """RECEIVER_WORKERS=2: whichever process accepted it, a stalled head is closed."""
    settings = {"RECEIVER_WORKERS": "2", "RECEIVER_HEADER_TIMEOUT_SECONDS": "1"}
    with running(tmp_path, settings) as d:
        stalled = [connect(d) for _ in range(40)]
        for sock in stalled:
            sock.sendall(STALLED_HEAD)
        for sock in stalled:
            status, _ = status_and_json(read_until_closed(sock, timeout=60))
            assert status == 408
        assert_serves(d, "workers-1")
