"""The store as an operator meets it through `budget-receiver`: readiness that means a
write, and online backups."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.daemon import Burst, Daemon, cli, event, running
from tests.faults import file_writes_refused
from tests.waiting import poll

pytestmark = pytest.mark.slow


def readyz(d: Daemon) -> httpx.Response:
    return httpx.get(d.url + "/readyz", timeout=30)


def test_readyz_is_503_while_the_store_cannot_write(tmp_path: Path) -> None:
    """While the daemon cannot write its database (its files may not grow by a byte, as on a
    full disk) reads still work, yet /readyz answers 503 storage_unavailable, as webhooks
    do; once writes succeed again it answers 200 and events are accepted."""
    with running(tmp_path) as d:
        assert readyz(d).status_code == 200
        assert d.post_event(event("task.created", "t-1", budget="10", currency="USD")).is_success
        assert d.proc is not None
        with file_writes_refused(d.proc.pid):
            for _ in range(3):  # every probe, not just one
                r = readyz(d)
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "storage_unavailable"
            refused = d.post_event(event("task.spend", "t-1", spent="5"))
            assert refused.status_code == 503, refused.text
            assert d.task("t-1")["spent"] == "0"  # reads still work
        poll(
            lambda: readyz(d),
            lambda r: r.status_code == 200,
            what="/readyz to answer 200 once writes succeed again",
        )
        assert d.post_event(event("task.spend", "t-1", spent="5")).status_code == 202
        assert d.task("t-1")["spent"] == "5"


def test_the_daemon_starts_and_stops_its_retention_job(tmp_path: Path) -> None:
    """Retention runs inside the daemon (said at start) unless RECEIVER_RETENTION_DAYS=0;
    either way SIGTERM stops it cleanly."""
    said = {
        "90": "retention: history of tasks finished more than 90 days ago is pruned hourly",
        "0": "retention: off (RECEIVER_RETENTION_DAYS=0), history is kept forever",
    }
    for days, line in said.items():
        with running(tmp_path, {"RECEIVER_RETENTION_DAYS": days}) as d:
            assert readyz(d).status_code == 200
        assert d.proc is not None and d.proc.returncode == 0, d.log()
        assert line in d.log()


def backup(env_file: Path, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("backup", str(dest), *extra, env_file=env_file, timeout=120)


def test_backup_while_the_daemon_takes_writes(tmp_path: Path) -> None:
    """`backup FILE` against a daemon under a burst of webhooks: a single file that opens,
    passes integrity_check, and holds every event acknowledged before the backup started."""
    (tmp_path / "d").mkdir()
    with running(tmp_path / "d") as d:
        burst = Burst(d, [f"t-{n}" for n in range(4)], threads=4).start()
        try:
            burst.wait_for(200)
            started = time.monotonic()
            before = [a for a in burst.acked if a.at < started]
            dest = tmp_path / "copies" / "receiver backup ü.db"  # odd characters in the name
            dest.parent.mkdir()
            out = backup(d.env_file, dest)
            acked_during = len(burst.acked) - len(before)
        finally:
            burst.stop()
        assert out.returncode == 0, out.stderr
        assert f"wrote {dest}:" in out.stdout and "schema version 2" in out.stdout
        assert len(before) >= 200 and acked_during > 0  # it ran while writes were acked
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # one file, no -wal
    with closing(sqlite3.connect(f"file:{dest}?mode=ro", uri=True)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        stored = {r[0] for r in copy.execute("SELECT event_id FROM events WHERE source = 'budget'")}
        tasks = {r[0] for r in copy.execute("SELECT task_id FROM tasks")}
    assert {a.msg_id for a in before} <= stored
    assert tasks == set(burst.tasks)


def test_backup_refuses_to_overwrite_unless_told(tmp_path: Path) -> None:
    """An existing FILE is left as it is (exit 2) unless --force; then it is replaced."""
    with running(tmp_path) as d:
        assert d.post_event(event("task.created", "t-1", budget="10", currency="USD")).is_success
        dest = tmp_path / "copy.db"
        dest.write_bytes(b"an older backup")
        refused = backup(d.env_file, dest)
        assert refused.returncode == 2 and "--force" in refused.stderr
        assert dest.read_bytes() == b"an older backup"
        forced = backup(d.env_file, dest, "--force")
        assert forced.returncode == 0, forced.stderr
        assert "1 tasks" in forced.stdout
    with closing(sqlite3.connect(dest)) as copy:
        assert copy.execute("SELECT task_id FROM tasks").fetchall() == [("t-1",)]
    assert sorted(p.name for p in tmp_path.iterdir() if "copy" in p.name) == ["copy.db"]


def test_backup_of_postgresql_or_of_nothing(tmp_path: Path) -> None:
    """PostgreSQL: exit 2 and the pg_dump command to use, without the password. No database
    at the SQLite path: exit 3, and no empty database or copy is made."""
    env = tmp_path / "pg.env"
    env.write_text("RECEIVER_ALLOW_UNSIGNED=true\n"
                   "RECEIVER_DATABASE_URL=postgresql://ann:s3cret-pw@127.0.0.1:5432/budget\n")  # fmt: skip
    out = backup(env, tmp_path / "x.dump")
    assert out.returncode == 2
    assert (
        "pg_dump --format=custom" in out.stderr
        and "postgresql://ann@127.0.0.1:5432/budget" in out.stderr
    )
    assert "s3cret-pw" not in out.stdout + out.stderr
    assert not (tmp_path / "x.dump").exists()

    env.write_text(
        f"RECEIVER_ALLOW_UNSIGNED=true\nRECEIVER_DATABASE_URL=sqlite:///{tmp_path}/none.db\n"
    )
    out = backup(env, tmp_path / "x.db")
    assert out.returncode == 3 and "none.db" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pg.env"]
