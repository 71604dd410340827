"""Pre-built HTTP requests on disk, shared by run.py (writes), loadgen.py and wrk's Lua (read).

One record per request: an ASCII header line ``<byte length> <tag>\\n`` followed by
exactly that many bytes of raw HTTP/1.1 request. ``tag`` is ``-`` for an ordinary
request, or a probe's name (``halt:<task_id>`` / ``alert:<task_id>``) whose 2xx
arrival time the load generator records.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

NO_TAG = "-"


def raw_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def write_records(out: BinaryIO, records: Iterable[tuple[bytes, str]]) -> int:
    n = 0
    for raw, tag in records:
        if not tag or " " in tag or "\n" in tag:
            raise ValueError(f"bad tag {tag!r}")
        out.write(b"%d %s\n" % (len(raw), tag.encode()))
        out.write(raw)
        n += 1
    return n


def read_records(path: Path) -> Iterator[tuple[bytes, str]]:
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        length, _, tag = data[pos:nl].partition(b" ")
        start = nl + 1
        end = start + int(length)
        yield data[start:end], tag.decode()
        pos = end


# -- bodies ------------------------------------------------------------------------------


def budget_event(type_: str, task_id: str, **data: Any) -> bytes:
    """A canonical (source ``budget``) event, as a platform would send it."""
    doc = {"type": type_, "data": {"task_id": task_id, **data}}
    return json.dumps(doc, separators=(",", ":")).encode()


def alertmanager_alert(run: str, n: int) -> bytes:
    """One alert with labels no other request of the run has (POST /api/v2/alerts takes a list)."""
    alert = {
        "labels": {
            "alertname": "BudgetThreshold",
            "severity": "warning",
            "task_id": f"t-{n % 1000:04d}",
            "uid": f"{run}-{n}",
        },
        "annotations": {"summary": "task spent 50% of its budget", "spent": "50.00"},
        "generatorURL": "http://127.0.0.1/bench",
    }
    return json.dumps([alert], separators=(",", ":")).encode()


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]
