"""The container image: size, build time, start and stop time, memory, side by side with
the same daemon run from a virtualenv on the host (the baseline) in the same run.

    .venv/bin/python bench/container.py [--runs 7] [--no-cold-build]

Needs podman (scripts/container-base prepares it and the local base image). Start time
is from the command (`podman run -d` / `budget-receiver serve`) to the first 200 from
/healthz, then /readyz; stop time is `podman stop` / SIGTERM until the process is gone;
RSS is the daemon's resident memory once ready (the container's PID 1 read from the
host). Each start uses a fresh SQLite database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TAG = "localhost/budget-receiver:bench"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # bench-only


def podman(*args: str, timeout: float = 600) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


def wait(predicate: Callable[[], bool], timeout: float = 60) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            sys.exit("gave up waiting")
        time.sleep(0.005)
    return time.monotonic()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def env_file(directory: Path, port: int, database: str) -> Path:
    path = directory / f"bench-{port}.env"
    path.write_text(f"RECEIVER_HOST=127.0.0.1\nRECEIVER_PORT={port}\n"
                    f"RECEIVER_WEBHOOK_SECRETS={SECRET}\nRECEIVER_DATABASE_URL={database}\n"
                    "RECEIVER_LOG_FORMAT=json\n")  # fmt: skip
    return path


def one_container(directory: Path) -> dict[str, float]:
    port, name = free_port(), f"br-bench-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}"
    env = env_file(directory, port, "sqlite:////data/receiver.db")
    started = time.monotonic()
    podman("volume", "create", name)
    podman("run", "-d", "--name", name, "-v", f"{name}:/data", "--env-file", str(env), TAG)
    try:
        healthy = wait(lambda: answers(url + "/healthz"))
        ready = wait(lambda: answers(url + "/readyz"))
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).strip())
        rss = rss_mb(pid)
        stopping = time.monotonic()
        podman("stop", "-t", "30", name)
        stopped = time.monotonic()
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", name).strip())
        assert code == 0, code
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "volume", "rm", "-f", name], capture_output=True)
    return {"healthz_s": healthy - started, "readyz_s": ready - started, "rss_mb": rss,
            "stop_s": stopped - stopping}  # fmt: skip


def one_host(directory: Path) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = Path(tempfile.mkdtemp(dir=directory))  # the same disk as podman's volumes
    env = env_file(directory, port, f"sqlite:///{data / 'receiver.db'}")
    program = shutil.which("budget-receiver", path=str(Path(sys.executable).parent))
    assert program, "budget-receiver is not installed beside this Python"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    started = time.monotonic()
    proc = subprocess.Popen([program, "serve", "--env-file", str(env)], env=clean,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        healthy = wait(lambda: answers(url + "/healthz"))
        ready = wait(lambda: answers(url + "/readyz"))
        rss = rss_mb(proc.pid)
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        stopped = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
    return {"healthz_s": healthy - started, "readyz_s": ready - started, "rss_mb": rss,
            "stop_s": stopped - stopping}  # fmt: skip


def summary(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: {"median": statistics.median(r[key] for r in runs),
                  "min": min(r[key] for r in runs), "max": max(r[key] for r in runs)}
            for key in runs[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="starts of each (default 7)")
    parser.add_argument("--no-cold-build", action="store_true",
                        help="skip the build without podman's layer cache")  # fmt: skip
    args = parser.parse_args()

    base = subprocess.run([REPO / "scripts" / "container-base"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    build = ["build", "--pull=never", "--format", "docker", "--build-arg",
             f"PYTHON_IMAGE={base}", "-t", TAG, "."]  # fmt: skip
    builds: dict[str, float] = {}
    for kind, extra in (("cold", ["--no-cache"]), ("warm", [])):
        if kind == "cold" and args.no_cold_build:
            continue
        started = time.monotonic()
        podman(*build[:1], *extra, *build[1:])
        builds[kind] = time.monotonic() - started
    size = {ref: int(podman("image", "inspect", "--format", "{{.Size}}", ref)) / 1e6
            for ref in (TAG, base)}  # fmt: skip
    sizes = {"image_mb": size[TAG], "base_mb": size[base]}
    venv = podman("run", "--rm", "--entrypoint", "du", TAG, "-sk", "/opt/venv").split()[0]
    sizes["venv_mb"] = int(venv) * 1024 / 1e6

    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        directory = Path(tmp)
        container, host = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine
            container.append(one_container(directory))
            host.append(one_host(directory))
    result = {"base": base, "build_s": builds, "size": sizes,
              "container": summary(container), "host_venv": summary(host)}  # fmt: skip
    print(json.dumps(result, indent=2))
    print(f"\nimage {sizes['image_mb']:.0f} MB (base {sizes['base_mb']:.0f} MB, "
          f"virtualenv {sizes['venv_mb']:.0f} MB); build "
          + ", ".join(f"{k} {v:.1f} s" for k, v in builds.items()))  # fmt: skip
    print(f"{'median of ' + str(args.runs):<16}{'container':>12}{'host venv':>12}")
    for key in ("healthz_s", "readyz_s", "stop_s", "rss_mb"):
        c, h = result["container"][key]["median"], result["host_venv"][key]["median"]
        print(f"{key:<16}{c:>12.3f}{h:>12.3f}")


if __name__ == "__main__":
    main()
