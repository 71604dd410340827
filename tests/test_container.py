"""The real image, built from the Dockerfile with podman and run as containers.

The README's "Run it in a container" commands are run as written (docker -> podman; only
names, the env file's path and the published port differ: containers here share the
host's network, so each listens on 127.0.0.1 on a port of its own). The rest uses the
same image: uid, health check, signed events in with a halt call and alerts out, SIGTERM
during a burst, restarts on the named volume, the CLI in the image, two replicas on one
PostgreSQL database.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_postgres_database
from tests.container import Container, Image, build, podman, readme_commands, running, volume
from tests.daemon import ADMIN_TOKEN, READ_TOKEN, SECRET, Burst, event, free_port
from tests.servers import HttpSink

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
DOCKER_STOP_TIMEOUT = 10  # `docker stop` sends SIGKILL after this by default
PLATFORM_TOKEN = "platform-token-0123456789"
README = readme_commands()


@pytest.fixture(scope="module")
def image() -> Image:
    """The image, built once with the README's build command."""
    built = build(readme("docker", "build"))
    size = built.inspect()["Size"]
    print(f"\nimage {built.ref} on {built.base}: {size / 1e6:.0f} MB, built in "
          f"{built.build_seconds:.1f} s")  # fmt: skip
    return built


@pytest.fixture
def data() -> Iterator[str]:
    with volume() as name:
        yield name


def settings(**more: str) -> dict[str, str]:
    return {"RECEIVER_WEBHOOK_SECRETS": SECRET, "RECEIVER_ADMIN_TOKEN": ADMIN_TOKEN,
            "RECEIVER_READ_TOKEN": READ_TOKEN, **more}  # fmt: skip


def records(container: Container) -> list[dict[str, object]]:
    """The daemon's log: JSON lines (the image's RECEIVER_LOG_FORMAT)."""
    return [json.loads(line) for line in container.log().splitlines() if line.startswith("{")]


def edit_env(text: str, values: dict[str, str], delete: set[str]) -> str:
    """An env file with each KEY= line of ``values`` set and the ``delete`` lines gone."""
    values, out = dict(values), []
    for line in text.splitlines():
        key = line.partition("=")[0]
        if key in delete:
            continue
        out.append(f"{key}={values.pop(key)}" if key in values else line)
    return "\n".join(out + [f"{k}={v}" for k, v in values.items()]) + "\n"


RUN: list[list[str]] = []  # README commands the tests have run


def readme(*words: str) -> list[str]:
    """The README command that starts with these words."""
    [found] = [c for c in README if c[: len(words)] == list(words)]
    RUN.append(found)
    return found


def test_the_readme_container_commands_work_as_written(image: Image, tmp_path: Path) -> None:
    """new-secret, the env file made from the example as the README says, check-config,
    a volume, `run -d`, /readyz, a signed event, `stop`: each does what the README says."""
    env_file = tmp_path / "receiver.env"
    name = data = f"br-test-readme-{uuid.uuid4().hex[:8]}"  # the container and its volume
    port = free_port()

    def as_podman(argv: list[str]) -> list[str]:
        """docker -> podman; the test's names and env file; no -p (host network)."""
        assert argv[0] == "docker", argv
        out: list[str] = []
        words = iter(argv[1:])
        for word in words:
            if word == "-p":
                next(words)
            elif word == "--name":
                out += [word, name]
                next(words)
            elif word == "budget-receiver":
                out.append(name if out == ["stop"] else image.ref)
            else:
                word = word.replace("receiver-data", data)
                out.append(word.replace("config/receiver.env", str(env_file)))
        return out

    made = podman(*as_podman(readme("docker", "run", "--rm", "budget-receiver", "new-secret")))
    secret = made.stdout.strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{40,}={0,2}", secret), made.stdout

    cp = readme("cp")
    assert cp[1:] == ["config/receiver.env.example", "config/receiver.env"], cp
    # The edits the README asks for, then the test's own address on the loopback.
    edits = {"RECEIVER_WEBHOOK_SECRETS": secret, "RECEIVER_ADMIN_TOKEN": ADMIN_TOKEN,
             "RECEIVER_READ_TOKEN": READ_TOKEN}  # fmt: skip
    example = (REPO / "config" / "receiver.env.example").read_text()
    env_file.write_text(edit_env(example, edits, delete={"RECEIVER_DATABASE_URL"}))
    checked = podman(*as_podman(readme("docker", "run", "--rm", "--env-file")))
    assert checked.stdout.startswith("settings are valid"), checked.stdout
    assert "database:   sqlite:////data/receiver.db" in checked.stdout  # on the volume
    env_file.write_text(edit_env(env_file.read_text(), {"RECEIVER_HOST": "127.0.0.1",
                                 "RECEIVER_PORT": str(port)}, delete=set()))  # fmt: skip

    podman(*as_podman(readme("docker", "volume", "create")))
    podman(*as_podman(readme("docker", "run", "-d")))
    try:
        container = Container(image, tmp_path, {}, name=name, port=port).wait_ready()
        curl = [w.replace(":8080/", f":{port}/") for w in readme("curl")]
        assert subprocess.run(curl, capture_output=True, timeout=10).returncode == 0
        doc = event("task.created", "readme-1", budget="10", currency="USD")
        accepted = container.post_event(doc, secret=secret)
        assert accepted.status_code == 202, accepted.text
        assert container.task("readme-1")["state"] == "active"

        # docs/operations.md: the CLI inside finds the address and token in its settings.
        listed = podman("exec", name, "budget-receiver", "tasks", "list")
        assert "readme-1" in listed.stdout, listed

        podman(*as_podman(readme("docker", "stop")))
        assert container.exit_code() == 0, container.log()
        log = container.log()
        messages = [str(r["msg"]) for r in records(container)]
        for start in ("budget-receiver ", "store: ", "alert channels: ", "halting: "):
            assert any(m.startswith(start) for m in messages), (start, messages)
        assert secret.removeprefix("whsec_") not in log and ADMIN_TOKEN not in log
        assert "stopped" in messages
        assert all(command in RUN for command in README), "a README command was not run"
    finally:
        podman("rm", "-f", name, check=False)
        podman("volume", "rm", "-f", data, check=False)


def test_runs_as_uid_10001_and_its_health_check_follows_the_daemon(
    image: Image, tmp_path: Path, data: str
) -> None:
    """The daemon is PID 1 as uid 10001, which can write /data but not its own code; the
    image's HEALTHCHECK passes while it answers, fails while it hangs (SIGSTOP) and once
    it is gone; the image holds the package and nothing else of the repository."""
    inspected = image.inspect()
    assert inspected["Config"]["User"] == "10001:10001"
    check = inspected["Healthcheck"]["Test"]
    assert check[0] == "CMD", check  # exec form: needs no shell, no curl
    with running(image, tmp_path, settings(), volume=data) as container:
        status = container.exec("cat", "/proc/1/status").stdout
        assert re.search(r"^Uid:\s+10001\s+10001\s+10001\s+10001$", status, re.M), status
        cmdline = container.exec("cat", "/proc/1/cmdline").stdout.split("\0")
        assert cmdline[1:3] == ["/opt/venv/bin/budget-receiver", "serve"], cmdline
        writable = container.exec("sh", "-c", "test -w /data && ! test -w /opt/venv/bin")
        assert writable.returncode == 0
        site = "/opt/venv/lib/python3*/site-packages"
        leftovers = container.exec("sh", "-c", f"ls -d /src {site}/tests")
        assert leftovers.stdout == "", leftovers.stdout
        record = container.exec("sh", "-c", f"cat {site}/budget_receiver-*.dist-info/RECORD")
        installed = [line.split(",")[0] for line in record.stdout.splitlines()]
        assert "receiver/app.py" in installed
        assert all(
            path.startswith(("receiver/", "budget_receiver-", "../../../bin/"))
            for path in installed
        ), installed  # the package only: no tests, no config

        assert podman("healthcheck", "run", container.name, check=False).returncode == 0
        podman("kill", "--signal", "STOP", container.name)
        try:
            hung = podman("healthcheck", "run", container.name, check=False, timeout=30)
            assert hung.returncode == 1 and "unhealthy" in hung.stdout, hung
        finally:
            podman("kill", "--signal", "CONT", container.name)
        assert podman("healthcheck", "run", container.name, check=False).returncode == 0

        code, _ = container.stop()
        assert code == 0, container.log()
    # The same command with nothing listening on the daemon's port.
    gone = podman("run", "--rm", "-e", f"RECEIVER_PORT={container.port}", "--entrypoint",
                  check[1], image.ref, *check[2:], check=False)  # fmt: skip
    assert gone.returncode != 0 and "Connection refused" in gone.stderr, gone


def test_signed_events_in_halt_call_and_alerts_out_with_secrets_in_run_secrets(
    image: Image, tmp_path: Path, data: str
) -> None:
    """Secrets as files in /run/secrets (docker secrets), the rest in the env file: events
    are verified with the secret from the file, the limit makes one halt call to the
    platform and the alerts reach the channel, both on 127.0.0.1."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "RECEIVER_WEBHOOK_SECRETS").write_text(SECRET + "\n")
    (secrets / "receiver_admin_token").write_text(ADMIN_TOKEN)  # names ignore case
    (secrets / "RECEIVER_HALT_TOKEN").write_text(PLATFORM_TOKEN)
    for path in (secrets, *secrets.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o444)

    checked = podman("run", "--rm", "-v", f"{secrets}:/run/secrets:ro", image.ref, "check-config")
    assert "1 webhook secret(s)" in checked.stdout and "halting:    local only" in checked.stdout

    with HttpSink() as http:
        env = {"RECEIVER_READ_TOKEN": READ_TOKEN,
               "RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{http.port}/alerts",
               "RECEIVER_HALT_URL": f"{http.url}/tasks/{{task_id}}/halt"}  # fmt: skip
        with running(image, tmp_path, env, volume=data, secrets=secrets) as container:
            t = "c-ümlaut 1"
            created = container.post_event(event("task.created", t, budget="10.00",
                                                  currency="EUR", task_name="Agent 7"))  # fmt: skip
            assert created.status_code == 202, created.text
            unsigned = httpx.post(container.url + "/webhooks/budget", json={}, timeout=5)
            assert unsigned.status_code == 401
            assert container.post_event(event("task.spend", t, spent="5.50")).status_code == 202
            assert container.post_event(event("task.spend", t, spent="10.00")).status_code == 202

            halt = http.wait_for(1, "/tasks/c-%C3%BCmlaut%201/halt", timeout=15)[0]
            assert halt.headers["authorization"] == f"Bearer {PLATFORM_TOKEN}"
            assert halt.headers["idempotency-key"].startswith("halt-")
            assert halt.json["task_id"] == t and halt.json["spent"] == "10.00"
            container.wait_state(t, "halted")
            deadline = time.monotonic() + 15
            while not any(
                r.json["title"].startswith("Task halted") for r in http.requests_to("/alerts")
            ):
                assert time.monotonic() < deadline, http.requests
                time.sleep(0.05)
            titles = [r.json["title"] for r in http.requests_to("/alerts")]
            assert titles == ["Budget warning: Agent 7 (c-ümlaut 1) passed 50% of its budget",
                              "Task halted: Agent 7 (c-ümlaut 1) reached its budget (10.00 EUR)"]  # fmt: skip
            read = container.api("GET", "/v1/tasks", token=READ_TOKEN)
            assert read.status_code == 200
            wrong = container.api("GET", "/v1/tasks", token="x" * 24)
            assert wrong.status_code == 401
            log = container.log()
            for secret in (SECRET.removeprefix("whsec_"), ADMIN_TOKEN, PLATFORM_TOKEN):
                assert secret not in log


def test_sigterm_during_a_burst_loses_nothing_and_the_volume_keeps_the_state(
    image: Image, tmp_path: Path, data: str
) -> None:
    """`podman stop` while events pour in: exit 0 well within docker's default stop
    timeout; after `podman start`, and again in a new container on the same volume (an
    upgrade), every acknowledged event is there and each spend is the sum of its events."""
    container = Container(image, tmp_path, settings(), volume=data).start()
    try:
        burst = Burst(container, [f"burst-{n}" for n in range(10)], threads=6,
                      stop_on_error=False).start()  # fmt: skip
        burst.wait_for(300)
        code, took = container.stop()
        burst.stop()
        assert len(burst.acked) >= 100, "the burst never got going"
        assert code == 0, container.log()
        assert took < DOCKER_STOP_TIMEOUT / 2, f"took {took:.1f} s to stop"
        print(f"\npodman stop after {len(burst.acked)} acks took {took:.2f} s")
        assert "stopped" in [r["msg"] for r in records(container)]

        burst.assert_reflected_in(container.restart())
        container.stop()
    finally:
        container.remove()
    with running(image, tmp_path, settings(), volume=data) as upgraded:
        burst.assert_reflected_in(upgraded)
        listed = upgraded.api("GET", "/v1/tasks", params={"limit": 100}).json()["tasks"]
        assert len(listed) == 10


def test_the_cli_in_the_image_and_settings_that_cannot_start_it(
    image: Image, tmp_path: Path
) -> None:
    """A bad env file stops the image with exit code 2 and one line per bad setting, each
    naming it; a secrets file uid 10001 cannot read is one line naming the file."""
    bad = tmp_path / "bad.env"
    bad.write_text(f"RECEIVER_WEBHOOK_SECRETS={SECRET}\nRECEIVER_PORT=eighty\n")
    refused = podman("run", "--rm", "--env-file", bad, image.ref, check=False, timeout=60)
    assert refused.returncode == 2, refused
    assert refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert line.startswith("budget-receiver: cannot start: RECEIVER_PORT: "), line

    example = podman("run", "--rm", "--env-file", REPO / "config" / "receiver.env.example",
                     image.ref, "check-config", check=False)  # fmt: skip
    assert example.returncode == 2
    named = [line.split(": ")[2] for line in example.stderr.splitlines()]
    assert named == ["RECEIVER_WEBHOOK_SECRETS", "RECEIVER_ADMIN_TOKEN", "RECEIVER_READ_TOKEN"]

    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o755)
    (secrets / "RECEIVER_WEBHOOK_SECRETS").write_text(SECRET)
    (secrets / "RECEIVER_WEBHOOK_SECRETS").chmod(0o600)  # root's only
    unreadable = podman("run", "--rm", "-v", f"{secrets}:/run/secrets:ro", image.ref,
                        "check-config", check=False)  # fmt: skip
    assert unreadable.returncode == 2
    assert unreadable.stderr.splitlines() == [
        "budget-receiver: cannot start: RECEIVER_WEBHOOK_SECRETS: cannot read"
        " /run/secrets/RECEIVER_WEBHOOK_SECRETS: Permission denied (it must be readable by"
        " uid 10001)"
    ]
    version = podman("run", "--rm", image.ref, "--version")
    assert version.stdout.startswith("budget-receiver ")


def test_two_replicas_of_the_image_share_one_postgresql_database(
    image: Image, tmp_path: Path
) -> None:
    """Two containers on one PostgreSQL database (no volume): one event sent to each,
    both seen by both, the halt called once."""
    with fresh_postgres_database() as url, HttpSink() as http:
        env = settings(RECEIVER_DATABASE_URL=url,
                       RECEIVER_HALT_URL=f"{http.url}/tasks/{{task_id}}/halt")  # fmt: skip
        with running(image, tmp_path, env) as one, running(image, tmp_path, env) as two:
            created = event("task.created", "r-1", budget="5", currency="USD")
            assert one.post_event(created).status_code == 202
            assert two.post_event(event("task.spend", "r-1", spent="5")).status_code == 202
            for replica in (one, two):
                replica.wait_state("r-1", "halted")
                assert replica.task("r-1")["spent"] == "5"
            time.sleep(0.5)
            assert len(http.requests_to("/tasks/r-1/halt")) == 1
            for replica in (one, two):
                assert "store: postgresql://" in replica.log()
