"""The real image under podman: build it from the Dockerfile, run containers of it.

The image is built once per test session with the README's own build command plus
`--format docker` (podman's OCI format would drop the HEALTHCHECK) and, where no registry
is reachable, the local base from scripts/container-base. Containers share the host's
network (scripts/container-base sets that up), so each one listens on 127.0.0.1 on a
port of its own and reaches the test's servers there; nothing leaves the machine.

Without podman the container tests skip, unless RECEIVER_TEST_REQUIRE_CONTAINER=1 (CI),
where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Endpoint, free_port, write_env

REPO = Path(__file__).resolve().parent.parent
TAG = "localhost/budget-receiver:test"
REQUIRE_ENV = "RECEIVER_TEST_REQUIRE_CONTAINER"
# podman without systemd logs that it cannot schedule health checks on a timer (they
# still run on demand); those lines are podman's, not the container's.
_PODMAN_NOISE = re.compile(r'^time="[^"]*" level=\w+ msg=.*$\n?', re.MULTILINE)


def podman(*args: str | Path, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run podman; stderr without podman's own log lines. ``check``: fail on non-zero."""
    done = subprocess.run(
        ["podman", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    done.stderr = _PODMAN_NOISE.sub("", done.stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {shlex.join(map(str, args))}: exit {done.returncode}\n"
                             f"{done.stdout}{done.stderr}")  # fmt: skip
    return done


def readme_commands(section: str = "## Run it in a container") -> list[list[str]]:
    """The shell commands of the README section's first code block, each split into its
    words (continuation lines joined)."""
    text = (REPO / "README.md").read_text()
    start = text.index("\n" + section + "\n")
    lines = text[start:].splitlines()[2:]
    block: list[str] = []
    for line in lines:
        if line.startswith("    "):
            block.append(line[4:])
        elif block:
            break
    commands: list[list[str]] = []
    pending = ""
    for line in block:
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        commands.append(shlex.split(pending + line))
        pending = ""
    return commands


@dataclass(frozen=True)
class Image:
    ref: str
    base: str
    build_seconds: float

    def inspect(self) -> dict[str, Any]:
        [doc] = json.loads(podman("image", "inspect", self.ref).stdout)
        return dict(doc)


def build(build_command: Sequence[str]) -> Image:
    """``docker build -t NAME .`` from the README, run with podman on the local base."""
    if shutil.which("podman") is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but podman is not installed", pytrace=False)
        pytest.skip(f"podman is not installed: run scripts/container-base ({REQUIRE_ENV}=1 "
                    "turns this skip into a failure)")  # fmt: skip
    prepared = subprocess.run(
        [REPO / "scripts" / "container-base"], capture_output=True, text=True, timeout=600
    )
    assert prepared.returncode == 0, prepared.stderr
    base = prepared.stdout.strip()
    program, verb, *args = build_command
    assert (program, verb) == ("docker", "build"), build_command
    args = [TAG if arg == "budget-receiver" else arg for arg in args]
    started = time.monotonic()
    podman("build", "--pull=never", "--format", "docker", "--build-arg",
           f"PYTHON_IMAGE={base}", *args, timeout=600)  # fmt: skip
    return Image(TAG, base, time.monotonic() - started)


@contextlib.contextmanager
def volume() -> Iterator[str]:
    """A named volume, removed afterwards."""
    name = f"br-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "-f", name, check=False)


class Container(Endpoint):
    """One container of the image, `podman run -d` with an env file, and optionally a named
    volume on /data and a secrets directory on /run/secrets."""

    def __init__(
        self,
        image: Image,
        workdir: Path,
        settings: Mapping[str, str],
        *,
        volume: str | None = None,
        secrets: Path | None = None,
        name: str | None = None,
        port: int | None = None,
    ) -> None:
        self.image = image
        self.name = name or f"br-test-{uuid.uuid4().hex[:8]}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = {"RECEIVER_HOST": "127.0.0.1", "RECEIVER_PORT": str(self.port),
                         **settings}  # fmt: skip
        self.env_file = write_env(workdir / f"{self.name}.env", self.settings)
        self.volume = volume
        self.secrets = secrets

    def run_args(self) -> list[str]:
        args = ["--name", self.name, "--env-file", str(self.env_file), "--stop-timeout", "30"]
        if self.volume is not None:
            args += ["-v", f"{self.volume}:/data"]
        if self.secrets is not None:
            args += ["-v", f"{self.secrets}:/run/secrets:ro"]
        return args

    def start(self, timeout: float = 30.0) -> Container:
        podman("run", "-d", *self.run_args(), self.image.ref)
        return self.wait_ready(timeout)

    def restart(self, timeout: float = 30.0) -> Container:
        """`podman start` again after a stop: the same container, the same volume."""
        podman("start", self.name)
        return self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> Container:
        self.wait_until_ready(self.exit_code, timeout)
        return self

    def state(self) -> dict[str, Any]:
        [doc] = json.loads(podman("container", "inspect", self.name).stdout)
        return dict(doc["State"])

    def exit_code(self) -> int | None:
        state = self.state()
        return None if state["Running"] else int(state["ExitCode"])

    def stop(self, timeout: int = 30) -> tuple[int, float]:
        """`podman stop` (SIGTERM, then SIGKILL after ``timeout``): (exit code, seconds)."""
        started = time.monotonic()
        podman("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        took = time.monotonic() - started
        code = self.exit_code()
        assert code is not None
        return code, took

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *argv, check=False)

    def log(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


@contextlib.contextmanager
def running(image: Image, workdir: Path, settings: Mapping[str, str], **kw: Any) -> Iterator[Container]:  # fmt: skip
    container = Container(image, workdir, settings, **kw).start()
    try:
        yield container
    finally:
        container.remove()
