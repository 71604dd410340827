"""The programs a run needs (wrk, Alertmanager, py-spy), found or installed, and the facts
about the machine and the software that go at the top of the results."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from bench.plan import PY, ROOT, log


def apt_install(binary: str, package: str, allowed: bool) -> str | None:
    found = shutil.which(binary)
    if found or not allowed:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log(f"  {binary} missing and cannot apt-get install {package} (not root or no apt-get)")
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    log(f"  installing {package} (apt-get)")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log(f"  apt-get install {package} failed: {done.stderr.strip()[-300:]}")
    return shutil.which(binary)


def find_py_spy(allowed: bool) -> str | None:
    local = Path(PY).parent / "py-spy"
    found = shutil.which("py-spy") or (str(local) if local.exists() else None)
    if found or not allowed:
        return found
    log("  installing py-spy (pip)")
    subprocess.run([PY, "-m", "pip", "install", "-q", "py-spy"], capture_output=True)
    return shutil.which("py-spy") or (str(local) if local.exists() else None)


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, Any]:
    free = command_output(["free", "-g"])
    total = None
    for line in free.splitlines():
        if line.startswith("Mem:"):
            total = int(line.split()[1])
    head = command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(command_output(["git", "-C", str(ROOT), "status", "--porcelain", "receiver"]))
    from importlib.metadata import PackageNotFoundError, version

    import starlette
    import uvicorn

    try:
        loop = f"uvloop {version('uvloop')}"
    except PackageNotFoundError:
        loop = "asyncio"
    try:
        import httptools

        http = f"httptools {httptools.__version__}"
    except ImportError:
        http = "h11"
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "mem_total_gib_free_g": total,
        "loadavg_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "starlette": starlette.__version__,
        "event_loop": loop,
        "http_parser": http,
        "sqlite": sqlite3.sqlite_version,
        "git_head": head,
        "receiver_has_uncommitted_changes": dirty,
    }
