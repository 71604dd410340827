"""Command line: serve, check-config, send-event, tasks, notify-test, new-secret, backup."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import __version__
from .errors import ConfigError, StoreUnavailable
from .settings import Settings, load_settings

EXIT_CONFIG = 2
EXIT_STORE = 3


def _fail_config(exc: ConfigError) -> int:
    """One line per bad setting, each whole: a log pipeline shows them one by one."""
    for problem in exc.problems:
        print(f"budget-receiver: cannot start: {problem}", file=sys.stderr)
    return EXIT_CONFIG


def _base_url(settings: Settings | None, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    if settings is None:
        return "http://127.0.0.1:8080"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


# -- serve / check-config -------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from .app import create_app
    from .connections import Limits, protocol
    from .logs import setup_logging

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    try:
        settings = load_settings(args.env_file, **overrides)
        setup_logging(settings.log_level, settings.log_format)
        app = create_app(settings)
    except ConfigError as exc:
        return _fail_config(exc)
    try:
        asyncio.run(_check_store(settings))
    except StoreUnavailable as exc:
        print(f"budget-receiver: {exc}", file=sys.stderr)
        return EXIT_STORE
    if settings.workers > 1:
        # Each worker process builds its own app from the same settings, found through
        # the environment: the env file's path and the command line's overrides.
        if args.env_file:
            os.environ["RECEIVER_ENV_FILE"] = str(Path(args.env_file).resolve())
        os.environ.update({f"RECEIVER_{k.upper()}": str(v) for k, v in overrides.items()})
    config = uvicorn.Config(
        "receiver.app:create_app_from_env" if settings.workers > 1 else app,
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        # Bounds on slow and greedy clients, in every worker process (receiver/connections.py).
        http=protocol(Limits(settings.header_timeout_seconds, settings.max_connections)),
        log_config=None,
        access_log=False,
        server_header=False,
        # With the dispatcher's 4 s grace this fits docker stop's default 10 s.
        timeout_graceful_shutdown=5,
    )
    if settings.workers > 1:
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return 0
    server = uvicorn.Server(config)
    # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # it found at start. With the default ones a clean stop would end as a death by signal
    # (-15, or a KeyboardInterrupt traceback), yet as exit 0 when PID 1 in a container.
    # A stop that was asked for and done cleanly is exit 0 everywhere.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: None)
    server.run()
    return 0 if server.started else 1


async def _check_store(settings: Settings) -> None:
    """Open (and migrate) the store once before listening: a store that cannot open is one
    clear line and exit 3, not a traceback from inside the server."""
    from .app import store_of

    store = store_of(settings)
    await store.open()
    await store.close()


def cmd_check_config(args: argparse.Namespace) -> int:
    from .app import channels_of
    from .logs import redact_url

    try:
        settings = load_settings(args.env_file)
        channels = channels_of(settings)
    except ConfigError as exc:
        return _fail_config(exc)
    print("settings are valid")
    print(f"  listen:     http://{settings.host}:{settings.port}")
    database = settings.database_url
    print(f"  database:   {database if settings.sqlite_path else redact_url(database)}")
    print(f"  secrets:    {len(settings.webhook_secrets)} webhook secret(s)")
    print("  channels:")
    for channel in channels:
        severities = ",".join(sorted(channel.severities))
        print(f"    - {channel.redacted}  [{severities}]")
    halt = settings.halt_url
    print(
        "  halting:    " + ("local only" if halt is None else redact_url(halt.get_secret_value()))
    )
    thresholds = ", ".join(str(t) for t in settings.thresholds)
    print(f"  thresholds: {thresholds}; halt at {settings.halt_at}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    import shlex
    import sqlite3

    from .store.backup import backup_sqlite, without_password

    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        return _fail_config(exc)
    source = settings.sqlite_path
    if source is None:
        url = without_password(settings.database_url)
        print(
            "budget-receiver: the database is PostgreSQL; back it up with pg_dump, e.g.\n"
            f"  pg_dump --format=custom --file {shlex.quote(args.file)} {shlex.quote(url)}\n"
            "(password from PGPASSWORD or ~/.pgpass; restore with pg_restore)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    dest = Path(args.file)
    try:
        done = backup_sqlite(source, dest, overwrite=args.force)
    except FileExistsError:
        print(f"budget-receiver: {dest} exists; nothing written (--force overwrites it)",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    except StoreUnavailable as exc:
        print(f"budget-receiver: {exc}", file=sys.stderr)
        return EXIT_STORE
    except (OSError, sqlite3.Error) as exc:
        print(f"budget-receiver: cannot write {dest}: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {done.path}: {done.size} bytes, a consistent copy of {source} "
        f"(schema version {done.schema_version}) with {done.tasks} tasks, {done.events} "
        f"events and {done.deliveries} deliveries"
    )
    return 0


def cmd_new_secret(args: argparse.Namespace) -> int:
    print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    return 0


# -- HTTP clients of the daemon --------------------------------------------------------


def _settings_or_none(env_file: str | None) -> Settings | None:
    try:
        return load_settings(env_file)
    except ConfigError:
        if env_file:
            raise
        return None


def _print_response(response: Any) -> int:
    try:
        body = json.dumps(response.json(), indent=2)
    except ValueError:
        body = response.text
    print(f"HTTP {response.status_code}")
    print(body)
    return 0 if response.is_success else 1


def cmd_send_event(args: argparse.Namespace) -> int:
    import httpx

    from .verify import sign

    try:
        settings = _settings_or_none(args.env_file)
    except ConfigError as exc:
        return _fail_config(exc)
    secret = args.secret or os.environ.get("RECEIVER_WEBHOOK_SECRET")
    if secret is None and settings is not None and settings.webhook_secrets:
        secret = settings.webhook_secrets[0].get_secret_value()
    try:
        data = json.loads(args.data) if args.data else {}
    except ValueError as exc:
        print(f"budget-receiver: --data is not JSON: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not isinstance(data, dict):
        print("budget-receiver: --data must be a JSON object", file=sys.stderr)
        return EXIT_CONFIG
    data["task_id"] = args.task_id
    for name in ("task_name", "agent_id", "budget", "spent", "amount", "currency", "threshold"):
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    body = json.dumps({"type": args.type, "timestamp": _now_iso(), "data": data}).encode()
    headers = {"content-type": "application/json"}
    if secret:
        try:
            headers |= sign(secret, args.id or f"msg_{uuid.uuid4().hex}", int(time.time()), body)
        except ValueError as exc:
            print(f"budget-receiver: bad secret: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    url = _base_url(settings, args.url) + "/webhooks/budget"
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(
            f"budget-receiver: cannot reach {url}: {exc}. Is the daemon running?", file=sys.stderr
        )
        return 1
    return _print_response(response)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _call_api(args: argparse.Namespace, method: str, path: str, **kw: Any) -> int:
    """One request to the daemon's API with the token from the flags, env or settings."""
    import httpx

    try:
        settings = _settings_or_none(args.env_file)
    except ConfigError as exc:
        return _fail_config(exc)
    token = args.token or os.environ.get("RECEIVER_TOKEN")
    if token is None and settings is not None:
        chosen = settings.admin_token or settings.read_token
        token = None if chosen is None else chosen.get_secret_value()
    if not token:
        print(
            "budget-receiver: give --token, RECEIVER_TOKEN, "
            "or an --env-file with RECEIVER_ADMIN_TOKEN",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    base = _base_url(settings, args.url)
    headers = {"authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            response = client.request(method, path, **kw)
    except httpx.HTTPError as exc:
        print(
            f"budget-receiver: cannot reach {base}: {exc}. Is the daemon running?", file=sys.stderr
        )
        return 1
    return _print_response(response)


def cmd_tasks(args: argparse.Namespace) -> int:
    if args.action == "list":
        params = {"limit": str(args.limit)} | ({"state": args.state} if args.state else {})
        return _call_api(args, "GET", "/v1/tasks", params=params)
    task_path = "/v1/tasks/" + quote(args.task_id, safe="")
    if args.action == "show":
        return _call_api(args, "GET", task_path)
    doc = {"budget": args.budget, "reason": args.reason, "actor": args.actor}
    return _call_api(args, "POST", task_path + "/resume", json=doc)


def cmd_deliveries(args: argparse.Namespace) -> int:
    if args.action == "list":
        params = {"limit": str(args.limit)} | ({"status": args.status} if args.status else {})
        return _call_api(args, "GET", "/v1/deliveries", params=params)
    return _call_api(args, "POST", f"/v1/deliveries/{args.delivery_id}/retry")


def cmd_notify_test(args: argparse.Namespace) -> int:
    import asyncio

    from .alerts import render
    from .app import channels_of
    from .channels import close_channels, notify
    from .logs import setup_logging
    from .model import AlertKind, Severity

    try:
        settings = load_settings(args.env_file)
        setup_logging(settings.log_level, settings.log_format)
        channels = channels_of(settings)
    except ConfigError as exc:
        return _fail_config(exc)
    payload = {
        "alert": AlertKind.TEST.value,
        "severity": Severity.INFO.value,
        "threshold": None,
        "event_id": "notify-test",
        "event_type": "notify-test",
        "actor": None,
        "reason": None,
        "at": time.time(),
        "task": {
            "task_id": "notify-test",
            "task_name": "budget-receiver test alert",
            "agent_id": None,
            "source": "cli",
            "state": "active",
            "spent": "0",
            "budget": None,
            "currency": None,
            "used_fraction": None,
        },
    }

    async def run() -> list[tuple[str, bool, str | None]]:
        results = await asyncio.gather(*(notify(c, render(payload)) for c in channels))
        return [(c.redacted, r.ok, r.error) for c, r in zip(channels, results, strict=True)]

    try:
        outcome = asyncio.run(run())
    finally:
        close_channels(channels)
    for redacted, ok, err in outcome:
        print(f"{'ok    ' if ok else 'FAILED'} {redacted}" + ("" if ok else f": {err}"))
    return 0 if all(ok for _, ok, _ in outcome) else 1


# -- the parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budget-receiver",
        description="Receives signed budget webhooks, alerts people and halts tasks "
        "at their limit.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def env_file(p: argparse.ArgumentParser) -> None:
        p.add_argument("--env-file", help="settings file (RECEIVER_* lines); or RECEIVER_ENV_FILE")

    serve = sub.add_parser("serve", help="run the daemon")
    env_file(serve)
    serve.add_argument("--host", help="override RECEIVER_HOST")
    serve.add_argument("--port", type=int, help="override RECEIVER_PORT")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate the settings and show them, redacted")
    env_file(check)
    check.set_defaults(func=cmd_check_config)

    backup = sub.add_parser(
        "backup",
        help="copy the SQLite database, safe while the daemon runs",
        description="Write an online, consistent copy of the SQLite database (sqlite3's "
        "backup API) to FILE, while the daemon runs and writes. An existing FILE is left "
        "alone unless --force. For PostgreSQL, use pg_dump (exit 2).",
    )
    env_file(backup)
    backup.add_argument("file", metavar="FILE", help="where to write the copy")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.set_defaults(func=cmd_backup)

    new = sub.add_parser("new-secret", help="print a fresh whsec_ webhook secret")
    new.set_defaults(func=cmd_new_secret)

    send = sub.add_parser(
        "send-event",
        help="sign and send one event to the daemon",
        description="Sign one canonical event with the first RECEIVER_WEBHOOK_SECRETS entry "
        "(or --secret) and POST it to /webhooks/budget.",
    )
    env_file(send)
    send.add_argument(
        "type",
        help="task.created, task.spend, task.budget_threshold, "
        "task.budget_reached or task.completed",
    )
    send.add_argument("task_id")
    send.add_argument("--budget")
    send.add_argument("--spent", help="cumulative spend so far")
    send.add_argument("--amount", help="spend since the last event")
    send.add_argument("--currency", help="ISO 4217 code, e.g. USD")
    send.add_argument("--threshold", help="fraction of budget, for task.budget_threshold")
    send.add_argument("--task-name")
    send.add_argument("--agent-id")
    send.add_argument("--data", help="extra data fields as a JSON object")
    send.add_argument("--id", help="webhook-id (default: a new one); resend one to see dedupe")
    send.add_argument("--secret", help="whsec_ secret (default: from the settings)")
    send.add_argument("--url", help="daemon base URL (default: from the settings)")
    send.set_defaults(func=cmd_send_event)

    tasks = sub.add_parser("tasks", help="list, show or resume tasks over the API")
    tasks_sub = tasks.add_subparsers(dest="action", required=True, metavar="ACTION")

    def client_opts(p: argparse.ArgumentParser) -> None:
        env_file(p)
        p.add_argument("--url", help="daemon base URL (default: from the settings)")
        p.add_argument("--token", help="API token (default: RECEIVER_TOKEN or from the settings)")

    t_list = tasks_sub.add_parser("list", help="list tasks")
    client_opts(t_list)
    t_list.add_argument("--state", choices=["active", "warning", "halting", "halted", "completed"])
    t_list.add_argument("--limit", type=int, default=100)
    t_show = tasks_sub.add_parser("show", help="show one task")
    client_opts(t_show)
    t_show.add_argument("task_id")
    t_resume = tasks_sub.add_parser("resume", help="resume a halted task with a new budget")
    client_opts(t_resume)
    t_resume.add_argument("task_id")
    t_resume.add_argument("--budget", required=True, help="new budget, above the spend so far")
    t_resume.add_argument("--reason", required=True, help="why it may go on (audit trail)")
    t_resume.add_argument("--actor", default=os.environ.get("USER", "cli"), help="who resumes it")
    tasks.set_defaults(func=cmd_tasks)

    deliveries = sub.add_parser("deliveries", help="list deliveries or replay a dead one")
    deliveries_sub = deliveries.add_subparsers(dest="action", required=True, metavar="ACTION")
    d_list = deliveries_sub.add_parser("list", help="list alerts and halt calls owed or made")
    client_opts(d_list)
    d_list.add_argument("--status", choices=["pending", "delivered", "dead"])
    d_list.add_argument("--limit", type=int, default=100)
    d_retry = deliveries_sub.add_parser("retry", help="replay a dead delivery (admin)")
    client_opts(d_retry)
    d_retry.add_argument("delivery_id", type=int)
    deliveries.set_defaults(func=cmd_deliveries)

    notify = sub.add_parser("notify-test", help="send one test alert to every channel")
    env_file(notify)
    notify.set_defaults(func=cmd_notify_test)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
