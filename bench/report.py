"""The printed report: the results table, the CPU table, ratios, targets and profiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.targets import Outcome


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    rows = [
        (
            "target",
            "sat rps (median)",
            "rounds",
            "non-ok",
            "CPU us/req",
            "p50 ms",
            "p99 ms",
            "lag p99",
            "halt p50/p99 ms",
            "alert p50/p99 ms",
            "RSS idle/load MB",
        )
    ]
    for name, r in results["targets"].items():
        if "saturated" not in r:
            rows.append((name, "skipped: " + r.get("skipped", "?"), *[""] * 9))
            continue
        sat, const = r["saturated"], r["constant"]
        non_ok = sat["requests"] - sat["ok"] + sum(sat["errors"].values()) - sat["errors"]["status"]
        halt, alert = r.get("time_to_halt_ms"), r.get("time_to_alert_ms")
        rows.append(
            (
                name,
                fmt(sat["ok_rps"], 0),
                "/".join(f"{v:.0f}" for v in sat["ok_rps_rounds"]),
                str(non_ok),
                fmt(sat["cpu"]["server_cpu_us_per_request"], 0),
                fmt(const["latency_ms"]["p50"], 2),
                fmt(const["latency_ms"]["p99"], 2),
                fmt(const["send_lag_ms"]["p99"], 2),
                f"{fmt(halt.get('p50'))} / {fmt(halt.get('p99'))}" if halt else "-",
                f"{fmt(alert.get('p50'))} / {fmt(alert.get('p99'))}" if alert else "-",
                f"{fmt(r['rss_mb']['idle'])} / {fmt(r['rss_mb']['under_load_peak'])}",
            )
        )
    return columns(rows)


def cpu_table(results: dict[str, Any]) -> str:
    rows = [
        (
            "target (saturated | constant)",
            "server CPU s (user+sys)",
            "PG backends CPU s",
            "load gen CPU s",
            "others CPU s",
            "machine busy %",
            "phase s",
        )
    ]
    for name, r in results["targets"].items():
        if "saturated" not in r:
            continue
        for phase in ("saturated", "constant"):
            p = r[phase]
            cpu = p["cpu"]
            rows.append(
                (
                    f"{name} {phase}",
                    f"{fmt(cpu['server_cpu_seconds'], 2)} ({fmt(cpu['server_user_seconds'], 2)}"
                    f"+{fmt(cpu['server_system_seconds'], 2)})",
                    fmt(cpu.get("postgres_backends_cpu_seconds"), 2),
                    fmt(p.get("loadgen_cpu_seconds"), 2),
                    fmt(cpu["other_cpu_seconds"], 2),
                    fmt(cpu["machine_busy_percent"], 0),
                    fmt(cpu["seconds"], 1),
                )
            )
    return columns(rows)


MARKS = {"met": "met ", "missed": "MISS", "no figure": "MISS", "not run": "n/a "}


def target_lines(outcomes: list[Outcome]) -> list[str]:
    """Each floor and goal: met, MISSed, or n/a (with why) when the run has no figure for it."""
    out = []
    for kind, title in (
        ("floor", "Regression floors (what the daemon holds today; --check fails on a miss):"),
        ("goal", "Goals (issue 16; --check fails on a miss only with --check goals):"),
    ):
        out.append(title)
        for o in outcomes:
            if o.target.kind != kind:
                continue
            got = f"got {o.value:g}" if o.value is not None else f"{o.status}: {o.why}"
            out.append(f"  [{MARKS[o.status]}] {o.target.server}: {o.target.check} ({got})")
    return out


def report(results: dict[str, Any], outcomes: list[Outcome]) -> str:
    out = [table(results), "", cpu_table(results), ""]
    for name, r in results["ratios"].items():
        out.append(
            f"{name}: {fmt(r['vs_baseline'], 2)}x baseline, "
            f"{fmt(r['vs_alertmanager'], 2)}x Alertmanager (saturated durable 202/s)"
        )
    out.append("")
    out += target_lines(outcomes)
    out += profile_lines(results)
    return "\n".join(out)


def profile_lines(results: dict[str, Any]) -> list[str]:
    """Per profiled store: busy threads, syscalls per event, GIL share by stage and line."""
    out: list[str] = []
    for store, prof in results.get("profiles", {}).items():
        if "skipped" in prof:
            out.append(f"\nprofile {store}: skipped: {prof['skipped']}")
            continue
        for mode, label in (
            ("saturated", f"saturated, {prof['saturated_rps_while_profiled']} rps while profiled"),
            ("rate", f"{results['plan']['rate']} events/s"),
        ):
            every, gil = prof[f"{mode}_all_threads"], prof[f"{mode}_gil"]
            secs = prof["seconds_each"]
            out.append(f"\nprofile {store}, {label} ({secs} s at 100 Hz per recording)")
            out.append(
                "  % of wall time each thread was busy (C code and fsync count as busy): "
                + ", ".join(f"{t['name']} {t['samples'] / secs:.0f}" for t in every["threads"])
            )
            calls = prof.get(f"{mode}_syscalls_per_event")
            if calls:
                out.append(
                    "  per event (perf stat): "
                    + ", ".join(f"{k} {v}" for k, v in calls.items() if v >= 0.01)
                )
            out.append(
                f"  GIL held {gil['samples'] / secs:.0f}% of the time; share of GIL samples "
                "by stage (threads: "
                + ", ".join(f"{t['name']} {t['percent']}%" for t in gil["threads"])
                + "):"
            )
            for row in gil["stages"][:14]:
                out.append(f"    {row['percent']:5.1f}%  {row['name']}")
            out.append("  GIL self time by source line:")
            for row in gil["self_lines"][:12]:
                out.append(f"    {row['percent']:5.1f}%  {row['name']}  {row.get('code') or ''}")
    return out
