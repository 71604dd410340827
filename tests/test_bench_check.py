"""bench/targets.py: a run's figures checked against the regression floors and the goals.

Synthetic results in the shape bench/run.py writes (only the keys the check reads), so
these run in milliseconds; plus: bench/README.md's table is the code's, and the bench
scripts still start from the repository root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import targets
from bench.targets import POSTGRES, SQLITE

REPO = Path(__file__).resolve().parent.parent


def daemon(
    rps: float = 2847.0,
    p99: float | None = 9.25,
    halt: float | None = 6.0,
    alert: float | None = 10.9,
    rss: float = 86.8,
    refused: int = 0,
    missing: int = 0,
) -> dict[str, Any]:
    """One daemon's results; by default the SQLite figures of bench/README.md's first run."""
    return {
        "saturated": {
            "ok_rps": rps,
            "requests": 50_000,
            "ok": 50_000 - refused,
            "errors": {"connect": 0, "read": 0, "write": 0, "status": refused, "timeout": 0},
        },
        "constant": {"requests": 20_000, "statuses": {"202": 20_000}, "latency_ms": {"p99": p99}},
        "time_to_halt_ms": {"p99": halt, "missing": missing},
        "time_to_alert_ms": {"p99": alert, "missing": 0},
        "rss_mb": {"under_load_peak": rss},
    }


def results(**servers: dict[str, Any]) -> dict[str, Any]:
    """A run of the baseline and Alertmanager (bench/README.md's rates) and ``servers``."""
    return {
        "targets": {
            "baseline": {"saturated": {"ok_rps": 17135.0}},
            "alertmanager": {"saturated": {"ok_rps": 25047.0}},
            **{name.replace("_", "-"): doc for name, doc in servers.items()},
        }
    }


def limit_of(server: str, label: str, kind: str) -> float:
    (found,) = [
        t
        for t in targets.targets()
        if t.server == server and t.figure.label == label and t.kind == kind
    ]
    return found.limit


def status_of(outcomes: list[targets.Outcome], server: str, label: str, kind: str) -> str:
    (found,) = [
        o
        for o in outcomes
        if o.target.server == server and o.target.figure.label == label and o.target.kind == kind
    ]
    return found.status


def test_todays_figures_meet_every_floor_and_miss_some_goals() -> None:
    """The recorded SQLite run passes --check, and fails --check goals on the rps ratios."""
    outcomes = targets.evaluate(results(daemon_sqlite=daemon()))
    assert targets.verdict(outcomes, "floors")[0] == 0
    code, message = targets.verdict(outcomes, "goals")
    assert code == 1
    assert "MISSED daemon-sqlite: rps / baseline >= 0.45 (goal): got 0.166" in message
    assert "MISSED daemon-sqlite: rps / Alertmanager >= 1.0 (goal): got 0.114" in message
    assert "p99 ms at 1000/s" not in message  # 9.25 ms meets the 10 ms goal


def test_a_missed_floor_fails_and_says_which_figure_and_target() -> None:
    floor = limit_of(SQLITE, "p99 ms at 1000/s", "floor")
    outcomes = targets.evaluate(results(daemon_sqlite=daemon(p99=floor + 0.5)))
    code, message = targets.verdict(outcomes, "floors")
    assert code == 1
    assert "FAILED, 1 of" in message
    assert (
        f"MISSED daemon-sqlite: p99 ms at 1000/s <= {floor} (regression floor): got {floor + 0.5:g}"
    ) in message
    assert status_of(outcomes, SQLITE, "p99 ms at 1000/s", "goal") == "missed"


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({"rps": 1000.0}, "rps / baseline"),  # 0.058 x baseline
        ({"halt": 1000.0}, "time-to-halt p99 ms"),
        ({"alert": 1000.0}, "time-to-alert p99 ms"),
        ({"rss": 200.0}, "RSS under load MB"),
        ({"refused": 1}, "non-202 answers + socket errors"),
        ({"missing": 1}, "deliveries missing"),
    ],
)
def test_each_kind_of_regression_fails_the_check(change: dict[str, Any], label: str) -> None:
    outcomes = targets.evaluate(results(daemon_sqlite=daemon(**change)))
    assert status_of(outcomes, SQLITE, label, "floor") == "missed"
    assert targets.verdict(outcomes, "floors")[0] == 1


def test_a_figure_on_its_limit_meets_it() -> None:
    p99 = limit_of(SQLITE, "p99 ms at 1000/s", "floor")
    rss = limit_of(SQLITE, "RSS under load MB", "floor")
    outcomes = targets.evaluate(results(daemon_sqlite=daemon(p99=p99, rss=rss)))
    assert status_of(outcomes, SQLITE, "p99 ms at 1000/s", "floor") == "met"
    assert status_of(outcomes, SQLITE, "RSS under load MB", "floor") == "met"


def test_a_server_in_the_run_without_figures_fails_the_check() -> None:
    """Skipped (PostgreSQL unreachable), or measured without a delivery time: no figure."""
    run = results(
        daemon_sqlite=daemon(halt=None),
        daemon_postgres={"skipped": "PostgreSQL not reachable"},
    )
    outcomes = targets.evaluate(run)
    assert status_of(outcomes, SQLITE, "time-to-halt p99 ms", "floor") == "no figure"
    assert status_of(outcomes, POSTGRES, "RSS under load MB", "floor") == "no figure"
    code, message = targets.verdict(outcomes, "floors")
    assert code == 1
    rss = limit_of(POSTGRES, "RSS under load MB", "floor")
    assert (
        f"MISSED daemon-postgres: RSS under load MB <= {rss} (regression floor): "
        "no figure: daemon-postgres skipped: PostgreSQL not reachable"
    ) in message
    assert "MISSED daemon-sqlite: time-to-halt p99 ms <= " in message


def test_targets_of_servers_left_out_of_the_run_are_not_checked() -> None:
    """--only baseline sqlite: PostgreSQL's targets and the ratio to Alertmanager are n/a."""
    run = results(daemon_sqlite=daemon())
    del run["targets"]["alertmanager"]
    outcomes = targets.evaluate(run)
    assert status_of(outcomes, SQLITE, "rps / Alertmanager", "floor") == "not run"
    assert status_of(outcomes, POSTGRES, "rps / baseline", "floor") == "not run"
    assert status_of(outcomes, SQLITE, "rps / baseline", "floor") == "met"
    code, message = targets.verdict(outcomes, "floors")
    assert (code, message) == (0, "check against the regression floors: passed, all 7 met")


def test_a_failed_check_says_how_busy_the_rest_of_the_machine_was() -> None:
    doc = daemon(p99=1000.0)
    doc["saturated"]["cpu"] = {"other_cpu_seconds": 6.0, "seconds": 18.0}
    doc["constant"]["cpu"] = {"other_cpu_seconds": 30.0, "seconds": 20.0}
    run = results(daemon_sqlite=doc)
    assert targets.others_busy(run) == 0.95  # 36 s of CPU in 38 s
    code, message = targets.verdict(targets.evaluate(run), "floors", targets.others_busy(run))
    assert code == 1
    assert "other processes used 0.95 cores on average" in message


def test_a_run_with_no_daemon_has_nothing_to_check_and_fails() -> None:
    outcomes = targets.evaluate(results())
    code, message = targets.verdict(outcomes, "floors")
    assert code == 1
    assert "no target applies" in message


def test_the_results_file_keeps_its_checks_entries() -> None:
    """``checks`` in bench/results/*.json: the six goals per measured daemon, as before."""
    run = results(daemon_sqlite=daemon(), daemon_postgres={"skipped": "PostgreSQL not reachable"})
    checks = targets.legacy_checks(run, targets.evaluate(run))
    assert [c["check"] for c in checks] == [
        "rps / Alertmanager >= 1.0",
        "rps / baseline >= 0.45",
        "p99 ms at 1000/s <= 10.0",
        "time-to-halt p99 ms <= 50.0",
        "time-to-alert p99 ms <= 250.0",
        "RSS under load MB <= 100.0",
    ]
    assert checks[1] == {
        "target": "daemon-sqlite",
        "check": "rps / baseline >= 0.45",
        "value": 0.166,
        "met": False,
    }
    assert targets.ratios(run) == {SQLITE: {"vs_baseline": 0.166, "vs_alertmanager": 0.114}}


def readme_targets_table() -> list[str]:
    """The table under bench/README.md's "## Targets" heading."""
    lines = (REPO / "bench" / "README.md").read_text().splitlines()
    start = lines.index("## Targets")
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[first:end]


def test_the_readme_lists_exactly_the_targets_the_check_uses() -> None:
    """bench/README.md's table is printed by `python -m bench.targets`: paste it there."""
    assert readme_targets_table() == targets.markdown_table().splitlines()


@pytest.mark.parametrize(
    "script", ["run.py", "loadgen.py", "sink.py", "baseline_app.py", "container.py"]
)
def test_the_bench_scripts_start_from_the_repository_root(script: str) -> None:
    """`python bench/<script> --help`, as the README and run.py's child processes call them."""
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
