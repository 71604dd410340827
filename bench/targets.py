"""Regression floors and goals, and a run's figures checked against them (``--check``).

Two kinds of target for each daemon, both listed in bench/README.md ("Targets"), whose
table is ``markdown_table()`` (tests/test_bench_check.py keeps the two the same):

- a **regression floor** is what the daemon holds today on the 2-core machine, with a
  margin for run-to-run noise: ``--check`` fails when one is missed;
- a **goal** is issue 16's target: reported as met or missed; it fails the check only
  with ``--check goals`` (which checks the floors too).

A target whose server was not part of the run (``--only``), or whose figure is a ratio to
a server that was not, is "not run": neither met nor missed. A server that was part of the
run but gave no figure (skipped, nothing measured) misses the targets that need it.

    python -m bench.targets                    # the README's table
    python -m bench.targets RESULTS.json [goals]   # check a finished run's file
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Results = dict[str, Any]
Kind = Literal["floor", "goal"]
Status = Literal["met", "missed", "no figure", "not run"]
Against = Literal["floors", "goals"]

SQLITE, POSTGRES = "daemon-sqlite", "daemon-postgres"
DAEMONS = (SQLITE, POSTGRES)
OK_STATUS = "202"


@dataclass(frozen=True)
class Figure:
    """One number read from a run's results for one daemon."""

    label: str  # as printed: "<label> >= <limit>"
    about: str  # what it is, for the README's table
    higher_is_better: bool
    read: Callable[[Results, str], float | None]
    relative_to: str | None = None  # the other server this figure is a ratio to


def _sign(figure: Figure) -> str:
    return ">=" if figure.higher_is_better else "<="


@dataclass(frozen=True)
class Row:
    """One figure's targets: its floor on each store (None: no floor), and the goal."""

    figure: Figure
    sqlite_floor: float | None
    postgres_floor: float | None
    goal: float | None


@dataclass(frozen=True)
class Target:
    server: str
    figure: Figure
    kind: Kind
    limit: float  # printed as written in ROWS: the goals as in the results files before floors

    @property
    def check(self) -> str:
        return f"{self.figure.label} {_sign(self.figure)} {self.limit}"


@dataclass(frozen=True)
class Outcome:
    target: Target
    value: float | None
    status: Status
    why: str = ""  # for "no figure" and "not run"

    def as_json(self) -> dict[str, Any]:
        """The ``checks`` entries of the results file: met is None when there is no figure."""
        met = None if self.status in ("no figure", "not run") else self.status == "met"
        return {"target": self.target.server, "check": self.target.check,
                "value": self.value, "met": met}  # fmt: skip


# -- the figures ---------------------------------------------------------------------------


def _server(results: Results, name: str) -> dict[str, Any]:
    found: dict[str, Any] = results.get("targets", {}).get(name, {})
    return found


def saturated_rps(results: Results, name: str) -> float | None:
    rps = _server(results, name).get("saturated", {}).get("ok_rps")
    return None if rps is None else float(rps)


def ratio(results: Results, name: str, reference: str) -> float | None:
    """Saturated accepted answers per second of ``name`` over those of ``reference``."""
    rps, ref = saturated_rps(results, name), saturated_rps(results, reference)
    return round(rps / ref, 3) if rps is not None and ref else None


def ratios(results: Results) -> dict[str, Any]:
    """The results file's ``ratios``: each measured daemon to the baseline and Alertmanager."""
    return {
        name: {
            "vs_baseline": ratio(results, name, "baseline"),
            "vs_alertmanager": ratio(results, name, "alertmanager"),
        }
        for name in DAEMONS
        if saturated_rps(results, name) is not None
    }


def _p99(*path: str) -> Callable[[Results, str], float | None]:
    """Reads the ``p99`` under ``path`` in a server's results."""

    def read(results: Results, name: str) -> float | None:
        found = _server(results, name)
        for key in path:
            found = found.get(key) or {}
        p99 = found.get("p99")
        return None if p99 is None else float(p99)

    return read


def _rss_under_load(results: Results, name: str) -> float | None:
    peak = _server(results, name).get("rss_mb", {}).get("under_load_peak")
    return None if peak is None else float(peak)


def non_ok_answers(results: Results, name: str) -> float | None:
    """Requests not answered 202, and socket errors, in the saturated and constant phases."""
    server = _server(results, name)
    sat, const = server.get("saturated"), server.get("constant")
    if sat is None or const is None:
        return None
    errors = sat["errors"]
    socket_errors = sum(errors.values()) - errors.get("status", 0)  # "status": a non-2xx
    sat_bad = sat["requests"] - sat["ok"] + socket_errors
    const_bad = const["requests"] - int(const["statuses"].get(OK_STATUS, 0))
    return float(sat_bad + const_bad)


def deliveries_missing(results: Results, name: str) -> float | None:
    """Probes accepted whose halt call or alert never reached the sink."""
    server = _server(results, name)
    halt, alert = server.get("time_to_halt_ms"), server.get("time_to_alert_ms")
    if halt is None or alert is None:
        return None
    return float(halt["missing"] + alert["missing"])


RPS_VS_ALERTMANAGER = Figure(
    "rps / Alertmanager",
    "saturated 202/s as a fraction of Alertmanager's 200/s",
    True,
    lambda results, name: ratio(results, name, "alertmanager"),
    "alertmanager",
)
RPS_VS_BASELINE = Figure(
    "rps / baseline",
    "saturated 202/s as a fraction of the baseline's",
    True,
    lambda results, name: ratio(results, name, "baseline"),
    "baseline",
)
P99_AT_RATE = Figure(
    "p99 ms at 1000/s", "latency p99 at 1,000 events/s, open loop", False,
    _p99("constant", "latency_ms"),
)  # fmt: skip
HALT_P99 = Figure(
    "time-to-halt p99 ms", "limit event's 202 -> halt call at the sink", False,
    _p99("time_to_halt_ms"),
)  # fmt: skip
ALERT_P99 = Figure(
    "time-to-alert p99 ms", "crossing event's 202 -> alert at the sink", False,
    _p99("time_to_alert_ms"),
)  # fmt: skip
RSS = Figure("RSS under load MB", "peak VmRSS, saturated and at 1,000/s", False, _rss_under_load)
NON_OK = Figure(
    "non-202 answers + socket errors", "in the saturated and 1,000/s phases", False,
    non_ok_answers,
)  # fmt: skip
MISSING = Figure(
    "deliveries missing", "halt and alert probes never delivered to the sink", False,
    deliveries_missing,
)  # fmt: skip

# The one list of targets. The floors are a margin below the figures measured on the
# shared 2-core machine (bench/README.md, "Targets"): the rates as ratios, which drift
# less than the rates; the latencies loosely, so they catch a stall rather than a
# slowdown, as a neighbour's CPU moves them tenfold (SQLite's p99 at 1,000/s: 9 to 91 ms).
# PostgreSQL with one worker has no latency or answer floor: at 1,000/s it runs at the
# edge of its capacity, and on a busy machine its p99 reaches seconds and it sheds load
# with 503s.
ROWS: tuple[Row, ...] = (
    Row(RPS_VS_ALERTMANAGER, 0.06, 0.03, 1.0),
    Row(RPS_VS_BASELINE, 0.08, 0.05, 0.45),
    Row(P99_AT_RATE, 200, None, 10.0),
    Row(HALT_P99, 200, None, 50.0),
    Row(ALERT_P99, 250, None, 250.0),
    Row(RSS, 110, 120, 100.0),
    Row(NON_OK, 0, None, None),
    Row(MISSING, 0, 0, None),
)


def targets() -> list[Target]:
    """Every target, daemon by daemon, each daemon's floors first."""
    out: list[Target] = []
    for server in DAEMONS:
        for row in ROWS:
            floor = row.sqlite_floor if server == SQLITE else row.postgres_floor
            if floor is not None:
                out.append(Target(server, row.figure, "floor", floor))
        goals = [(row.figure, row.goal) for row in ROWS if row.goal is not None]
        out += [Target(server, figure, "goal", goal) for figure, goal in goals]
    return out


# -- the check -----------------------------------------------------------------------------


def outcome(results: Results, target: Target) -> Outcome:
    ran = results.get("targets", {})
    figure = target.figure
    if target.server not in ran:
        return Outcome(target, None, "not run", f"{target.server} not in this run")
    if figure.relative_to is not None and figure.relative_to not in ran:
        return Outcome(target, None, "not run", f"{figure.relative_to} not in this run")
    value = figure.read(results, target.server)
    if value is None:
        skipped = [
            f"{name} skipped: {ran[name]['skipped']}"
            for name in (target.server, figure.relative_to)
            if name is not None and "skipped" in ran.get(name, {})
        ]
        return Outcome(target, None, "no figure", "; ".join(skipped) or "not measured")
    met = value >= target.limit if figure.higher_is_better else value <= target.limit
    return Outcome(target, value, "met" if met else "missed")


def evaluate(results: Results) -> list[Outcome]:
    return [outcome(results, target) for target in targets()]


def legacy_checks(results: Results, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The results file's ``checks`` (the goals), as before floors came along."""
    measured = ratios(results)
    return [
        o.as_json() for o in outcomes if o.target.kind == "goal" and o.target.server in measured
    ]


def _kinds(against: Against) -> tuple[Kind, ...]:
    return ("floor", "goal") if against == "goals" else ("floor",)


def failures(outcomes: list[Outcome], against: Against) -> list[Outcome]:
    """What fails ``--check``: a missed floor (or goal, against goals), or no figure for it."""
    kinds = _kinds(against)
    return [o for o in outcomes if o.target.kind in kinds and o.status in ("missed", "no figure")]


def describe(o: Outcome) -> str:
    kind = "regression floor" if o.target.kind == "floor" else "goal"
    got = f"got {o.value:g}" if o.value is not None else f"{o.status}: {o.why}"
    return f"{o.target.server}: {o.target.check} ({kind}): {got}"


def others_busy(results: Results) -> float | None:
    """Cores' worth of CPU the rest of the machine used during the daemons' timed phases."""
    cpu = seconds = 0.0
    for name in DAEMONS:
        for phase in ("saturated", "constant"):
            used = _server(results, name).get(phase, {}).get("cpu")
            if used:
                cpu += used["other_cpu_seconds"]
                seconds += used["seconds"]
    return round(cpu / seconds, 2) if seconds else None


def verdict(
    outcomes: list[Outcome], against: Against, busy: float | None = None
) -> tuple[int, str]:
    """The exit status of ``--check`` and what to print: each failing target, or all met.

    ``busy`` (``others_busy``) goes with a failure: a neighbour's CPU slows the daemon too.
    """
    checked = [o for o in outcomes if o.target.kind in _kinds(against) and o.status != "not run"]
    what = "regression floors and goals" if against == "goals" else "regression floors"
    failed = failures(outcomes, against)
    if not checked:
        return 1, f"check against the {what}: FAILED, no target applies to this run"
    if failed:
        lines = [f"check against the {what}: FAILED, {len(failed)} of {len(checked)} missed"]
        lines += [f"  MISSED {describe(o)}" for o in failed]
        if busy is not None:
            lines.append(
                f"  (other processes used {busy:g} cores on average during the daemons' timed "
                "phases: on a busy machine, run again before calling it a regression)"
            )
        return 1, "\n".join(lines)
    return 0, f"check against the {what}: passed, all {len(checked)} met"


# -- the README's table ----------------------------------------------------------------------


def markdown_table() -> str:
    def cell(figure: Figure, limit: float | None) -> str:
        return "-" if limit is None else f"{_sign(figure)} {limit}"

    lines = [
        "| figure | what it is | floor, SQLite | floor, PostgreSQL | goal (issue 16) |",
        "|---|---|---|---|---|",
    ]
    for row in ROWS:
        f = row.figure
        lines.append(
            f"| {f.label} | {f.about} | {cell(f, row.sqlite_floor)} | "
            f"{cell(f, row.postgres_floor)} | {cell(f, row.goal)} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(markdown_table())
        return 0
    results = json.loads(Path(argv[0]).read_text())
    against: Against = "goals" if argv[1:] == ["goals"] else "floors"
    code, message = verdict(evaluate(results), against, others_busy(results))
    print(message)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
