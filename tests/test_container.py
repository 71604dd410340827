"""The container image's command line, run from the wheel the image installs.

No Docker engine is needed. The Dockerfile is the source of truth: its final stage's
ENV, WORKDIR, HEALTHCHECK, ENTRYPOINT and CMD are read here, so the test cannot drift
from the image. The build context is what .dockerignore lets in; the wheel is built
from it as the build stage does (`pip wheel --no-deps`) and installed into a fresh
virtualenv. The container paths /opt/venv, /data and /run/secrets are mapped to
temporary directories, as the image's virtualenv and the volumes would be. Settings
come from an env file in `docker run --env-file` syntax and a docker-secrets
directory, on top of the image's ENV defaults, and nothing from this process's
environment leaks in.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from receiver.verify import sign
from tests.daemon import ADMIN_TOKEN, READ_TOKEN, SECRET, event, free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
OTHER_SECRET = "whsec_" + "V3JvbmdXcm9uZ1dyb25nV3Jvbmc="
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# -- the Dockerfile, read the way docker reads it (for what this test needs) -------------


@dataclass(frozen=True)
class Stage:
    """The final stage: ENV in order (values with $VAR still in them), WORKDIR, commands."""

    env: list[tuple[str, str]]
    workdir: str
    user: str
    expose: str
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    healthcheck_timeout: float


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments): comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def final_stage(dockerfile: Path) -> Stage:
    steps = instructions(dockerfile.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    env: list[tuple[str, str]] = []
    found: dict[str, str] = {}
    for keyword, args in steps[last_from + 1 :]:
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, sep, value = pair.partition("=")
                assert sep, f"ENV {pair!r}: use the ENV NAME=value form"
                env.append((name, value))
        else:
            found[keyword] = args
    options, sep, command = found["HEALTHCHECK"].partition(" CMD ")
    assert sep, "HEALTHCHECK needs a CMD"
    timeout = re.search(r"--timeout=(\d+)s", options)
    # JSON (exec form) or this fails: the daemon must be PID 1 and get SIGTERM, not a shell.
    exec_form = {name: json.loads(found[name]) for name in ("ENTRYPOINT", "CMD")}
    return Stage(
        env=env,
        workdir=found["WORKDIR"],
        user=found["USER"],
        expose=found["EXPOSE"],
        entrypoint=exec_form["ENTRYPOINT"],
        cmd=exec_form["CMD"],
        healthcheck=json.loads(command),
        healthcheck_timeout=float(timeout.group(1)) if timeout else 30.0,
    )


def expand(value: str, env: Mapping[str, str]) -> str:
    """$NAME and ${NAME} from the environment built so far, as ENV does."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def docker_env_file(path: Path, lookup: Callable[[str], str | None]) -> dict[str, str]:
    """`docker run --env-file` syntax (docker/cli pkg/kvfile): KEY=VALUE taken literally
    (a value that starts and ends with the same quote loses them); no inline comments,
    no expansion; a bare KEY passes that variable through from where docker runs."""
    out: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8-sig").splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert key and not re.search(r"\s", key), f"docker refuses the line {line!r}"
        if not sep:
            passed = lookup(key)
            if passed is None:
                continue
            value = passed
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def build_context(root: Path, dest: Path) -> list[str]:
    """Copy what .dockerignore lets into the build context; the last matching rule wins,
    and a rule that matches a directory matches everything under it."""
    rules = []
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((line.lstrip("!").rstrip("/"), keep))
    copied = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".git" in path.relative_to(root).parts[:1]:
            continue
        rel = path.relative_to(root).as_posix()
        prefixes = ["/".join(rel.split("/")[: n + 1]) for n in range(rel.count("/") + 1)]
        included = True
        for pattern, keep in rules:
            if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
                included = keep
        if included:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
            copied.append(rel)
    return copied


# -- the image, built without docker ---------------------------------------------------


@dataclass(frozen=True)
class Image:
    root: Path  # stands in for the container's file system
    mounts: dict[str, Path]  # container path -> where it is here
    stage: Stage
    wheel: Path
    context: list[str]

    def path(self, container_path: str) -> Path:
        for inside, here in self.mounts.items():
            if container_path == inside or container_path.startswith(inside + "/"):
                return here / container_path[len(inside) :].lstrip("/")
        raise AssertionError(f"{container_path} is not mapped")

    def map(self, value: str) -> str:
        """A value naming container paths, with each mapped here (as a volume would be)."""
        for inside, here in self.mounts.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(inside)}(?=/|:|$)", str(here), value)
        return value

    def environment(self, env_file: Path | None = None) -> dict[str, str]:
        """The container's environment: the base image's PATH and LANG, the image's ENV,
        then `--env-file` over it. Nothing else from this process's environment."""
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(self.root / "home")}
        for name, value in self.stage.env:
            env[name] = self.map(expand(value, env))
        if env_file is None:
            return env
        return env | docker_env_file(env_file, lookup=lambda _: None)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """Build context -> wheel (`pip wheel --no-deps`) -> fresh venv with the wheel and its
    dependencies, as the Dockerfile's build stage does."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    copied = build_context(REPO, context)
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, context],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("budget_receiver-*.whl")
    venv = root / "opt-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", wheel],
        check=True,
        capture_output=True,
    )
    mounts = {"/opt/venv": venv, "/data": root / "data", "/run/secrets": root / "secrets"}
    for here in (*mounts.values(), root / "home"):
        here.mkdir(exist_ok=True)
    return Image(root, mounts, final_stage(REPO / "Dockerfile"), wheel, copied)


def test_build_context_and_wheel_hold_the_package_only(image: Image) -> None:
    """No tests, configs (env files with secrets), .git or data in the context; the wheel
    has the package and its metadata, nothing else; --version names the project's."""
    assert "pyproject.toml" in image.context and "receiver/app.py" in image.context
    assert all(
        name in ("pyproject.toml", "README.md", "LICENSE") or name.startswith("receiver/")
        for name in image.context
    ), image.context
    assert not [n for n in image.context if "__pycache__" in n or n.endswith(".pyc")]
    with zipfile.ZipFile(image.wheel) as wheel:
        names = wheel.namelist()
    assert all(n.startswith(("receiver/", f"budget_receiver-{VERSION}.dist-info/")) for n in names)
    [program, *_] = image.stage.entrypoint
    found = shutil.which(program, path=image.environment()["PATH"])
    assert found == str(image.path("/opt/venv/bin") / program)
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"budget-receiver {VERSION}"


def test_the_image_runs_unprivileged_on_the_port_it_exposes(image: Image) -> None:
    """USER is a fixed non-root uid (numeric, so runAsNonRoot can check it); the port the
    daemon listens on by default is the one EXPOSEd; the database is on the volume."""
    uid = image.stage.user.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0
    env = image.environment()
    assert env["RECEIVER_PORT"] == image.stage.expose == "8080"
    assert env["RECEIVER_HOST"] == "0.0.0.0"  # noqa: S104 - a container listens on all
    assert env["RECEIVER_DATABASE_URL"] == f"sqlite:///{image.path('/data/receiver.db')}"


@contextlib.contextmanager
def container(image: Image, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """ENTRYPOINT + CMD, in WORKDIR, with exactly ``env``; SIGTERM on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*image.stage.entrypoint, *image.stage.cmd],
            env=env,
            cwd=image.path(image.stage.workdir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_the_image_command_serves_with_env_file_and_docker_secrets(image: Image) -> None:
    """The image's command line with its ENV defaults, an env file and docker secrets:
    /healthz answers, the HEALTHCHECK command passes (and fails once the daemon is gone),
    a signed event is accepted, the admin token from the secrets directory works, the
    database lands on /data, logs are JSON lines without secrets, SIGTERM exits 0."""
    port = free_port()
    env_file = image.root / "receiver.env"
    env_file.write_text(
        "# budget-receiver, for `docker run --env-file` (no quotes, no inline comments)\n"
        f"RECEIVER_PORT={port}\n"
        f"RECEIVER_READ_TOKEN={READ_TOKEN}\n"
        "\n"
        "RECEIVER_LOG_LEVEL=info\n"
    )
    # `docker secret create` / compose `secrets:` put one file per secret in /run/secrets.
    secrets = image.path("/run/secrets")
    (secrets / "RECEIVER_ADMIN_TOKEN").write_text(ADMIN_TOKEN + "\n")
    (secrets / "receiver_webhook_secrets").write_text(SECRET)  # file names ignore case
    env = image.environment(env_file)
    assert {"RECEIVER_ADMIN_TOKEN", "RECEIVER_WEBHOOK_SECRETS"}.isdisjoint(env)  # files only
    url = f"http://127.0.0.1:{port}"
    log = image.root / "container.log"

    started = time.monotonic()
    with container(image, env, log) as proc:
        while True:
            assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() - started < 30, f"not up after 30 s:\n{log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(url + "/healthz", timeout=1)
                break
            time.sleep(0.05)
        assert health.status_code == 200 and health.json()["version"] == VERSION

        check = subprocess.run(
            image.stage.healthcheck,
            env=env,
            cwd=image.path(image.stage.workdir),
            capture_output=True,
            timeout=image.stage.healthcheck_timeout,
        )
        assert check.returncode == 0, check.stderr

        body = json.dumps(event("task.created", "c-1", budget="100", currency="USD")).encode()
        headers = sign(SECRET, "msg_container_1", int(time.time()), body)
        accepted = httpx.post(
            url + "/webhooks/budget",
            content=body,
            headers=headers | {"content-type": "application/json"},
            timeout=5,
        )
        assert accepted.status_code == 202, accepted.text
        other = sign(OTHER_SECRET, "msg_container_2", int(time.time()), body)
        refused = httpx.post(
            url + "/webhooks/budget",
            content=body,
            headers=other | {"content-type": "application/json"},
            timeout=5,
        )
        assert refused.status_code == 401  # only the secret from the secrets file signs

        auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        tasks = httpx.get(url + "/v1/tasks", headers=auth, timeout=5)
        assert tasks.status_code == 200, tasks.text
        assert [t["task_id"] for t in tasks.json()["tasks"]] == ["c-1"]
        wrong = httpx.get(
            url + "/v1/tasks", headers={"authorization": "Bearer " + "x" * 24}, timeout=5
        )
        assert wrong.status_code == 401
        read = httpx.get(url + "/v1/tasks/c-1", headers={"authorization": f"Bearer {READ_TOKEN}"})
        assert read.status_code == 200 and read.json()["state"] == "active"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()

    gone = subprocess.run(image.stage.healthcheck, env=env, capture_output=True, timeout=10)
    assert gone.returncode != 0
    assert image.path("/data/receiver.db").is_file()
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # RECEIVER_LOG_FORMAT=json from the image
    assert any(r["msg"] == "stopped" for r in records)
    text = "\n".join(lines)
    assert ADMIN_TOKEN not in text and SECRET.removeprefix("whsec_") not in text
