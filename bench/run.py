"""Issue 5's benchmark: the daemon against a bare Starlette baseline and Alertmanager, one run.

    .venv/bin/python bench/run.py                   # full run (about 6 min)
    .venv/bin/python bench/run.py --quick           # smoke run (about 1.5 min)
    .venv/bin/python bench/run.py --quick --check   # exit 1 if a regression floor is missed

See bench/README.md for what is measured and how. Writes bench/results/<timestamp>.json.
The parts are modules of the bench package (bench/__init__.py lists them); this one reads
the arguments and runs the phases in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: import the bench package from the repository root
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

from bench import pg, targets
from bench.measure import fsync_probe, pick_workdir
from bench.plan import FULL, QUICK, RESULTS, ROOT, Plan, log
from bench.procs import free_port, stop_all
from bench.profiling import profile
from bench.report import report
from bench.servers import Alertmanager, Baseline, Bench, Daemon, Server
from bench.tools import apt_install, command_output, find_py_spy, machine

TARGET_NAMES = ["baseline", "alertmanager", "sqlite", "postgres"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, < 2 min")
    parser.add_argument("--only", nargs="+", choices=TARGET_NAMES, help="run only these targets")
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
    parser.add_argument(
        "--check",
        nargs="?",
        const="floors",
        choices=["floors", "goals"],
        help="after the run, exit 1 if a regression floor in bench/README.md is missed "
        "(--check goals: a goal too)",
    )
    args = parser.parse_args(argv)
    if args.profile is None:
        args.profile = "sqlite" if args.quick else "both"
    args.stamp = time.strftime("%Y%m%dT%H%M%S")
    return args


def make_servers(
    bench: Bench, only: set[str], alertmanager: str | None, dbs: pg.Databases | None,
    results: dict[str, Any],
) -> list[Server]:  # fmt: skip
    """The targets asked for; one that cannot run is recorded as skipped instead."""
    servers: list[Server] = []
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
        url = dbs.fresh("pg") if dbs is not None else None
        if url is None:
            results["targets"]["daemon-postgres"] = {"skipped": "PostgreSQL not reachable"}
        else:
            servers.append(Daemon(bench, "postgres", url))
    return servers


def measure(servers: list[Server], plan: Plan, results: dict[str, Any]) -> None:
    """Every target is started first and stays up (idle when not measured), so each phase
    measures them one after the other within a few seconds, and the saturated runs take
    turns over several rounds: drifting background load hits them all alike."""
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


def profiles(
    bench: Bench, args: argparse.Namespace, only: set[str], py_spy: str | None,
    dbs: pg.Databases | None,
) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    stores = {"none": [], "sqlite": ["sqlite"], "postgres": ["postgres"],
              "both": ["sqlite", "postgres"]}[args.profile]  # fmt: skip
    for store in stores:
        if store == "postgres" and "postgres" not in only and args.profile == "both":
            continue
        if py_spy is None:
            out[store] = {"skipped": "py-spy not installed"}
            continue
        log(f"profile: py-spy and perf stat on a fresh daemon ({store})")
        url = (dbs.fresh("prof") if dbs is not None else None) if store == "postgres" else None
        if store == "postgres" and url is None:
            out[store] = {"skipped": "PostgreSQL not reachable"}
            continue
        try:
            out[store] = profile(bench, py_spy, store, url)
        except RuntimeError as exc:
            log(f"  profile failed: {exc}")
            out[store] = {"skipped": str(exc)[:500]}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    only = set(args.only or TARGET_NAMES)
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
    # Not inside the 0700 scratch dir: the server runs as the postgres user.
    scratch_pg = Path(tempfile.mkdtemp(prefix="budget-bench-pg-"))
    if args.pg_url is None and ("postgres" in only or args.profile in ("postgres", "both")):
        try:
            args.pg_url = pg.start_scratch(scratch_pg, free_port())
            log(f"started a throw-away PostgreSQL: {args.pg_url}")
        except Exception as exc:
            log(f"  could not start PostgreSQL with scripts/scratch-postgres: {exc}")
            args.pg_url = "postgresql://unavailable@127.0.0.1:1/none"
    dbs = pg.Databases(args.pg_url, args.stamp) if args.pg_url else None

    servers: list[Server] = []
    try:
        servers = make_servers(bench, only, alertmanager, dbs, results)
        measure(servers, plan, results)
        servers.clear()
        results["profiles"] = profiles(bench, args, only, py_spy, dbs)
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
        stop_all()
        if dbs is not None:
            dbs.drop_all()
            if dbs.version is not None:
                results["machine"]["postgres"] = dbs.version
        if scratch_pg.exists():
            pg.stop_scratch(scratch_pg)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    outcomes = targets.evaluate(results)
    results["ratios"] = targets.ratios(results)
    results["checks"] = targets.legacy_checks(results, outcomes)
    results["floors"] = [o.as_json() for o in outcomes if o.target.kind == "floor"]
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    out = RESULTS / f"{args.stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print()
    print(report(results, outcomes))
    print(f"\nwall time {results['wall_seconds']} s; JSON: {out.relative_to(ROOT)}")
    if args.check is None:
        return 0
    code, message = targets.verdict(outcomes, args.check, targets.others_busy(results))
    print("\n" + message)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
