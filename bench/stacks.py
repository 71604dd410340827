"""Where the time goes, from py-spy's collapsed stacks: shares by thread, function, source
line and stage (HTTP stack, store, delivery, ...)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.plan import ROOT

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
