"""Online backup of the SQLite database with sqlite3's backup API.

The copy is taken in one step, inside one read transaction: a consistent snapshot of
every commit made before it began. In WAL mode the daemon keeps writing meanwhile. The
copy is written beside FILE under a temporary name, switched to a single self-contained
file (journal_mode DELETE), made durable, and only then given its name, so FILE is never
a half-written database.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..errors import StoreUnavailable
from .sqlite import BUSY_TIMEOUT_MS


@dataclass(frozen=True, slots=True)
class Backup:
    """What was written."""

    path: Path
    size: int
    schema_version: int
    tasks: int
    events: int
    deliveries: int


def backup_sqlite(source: Path, dest: Path, *, overwrite: bool = False) -> Backup:
    """Copy the database at ``source`` to ``dest``.

    Raises StoreUnavailable when ``source`` is not a database that can be read,
    FileExistsError when ``dest`` exists and ``overwrite`` is false, OSError or
    sqlite3.Error when the copy cannot be written.
    """
    if not overwrite and dest.exists():
        raise FileExistsError(f"{dest} exists")
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        _copy(source, partial)
        _fsync(partial)
        _put_in_place(partial, dest, overwrite)
        _fsync(dest.parent)
    finally:
        partial.unlink(missing_ok=True)
    return _describe(dest)


def _copy(source: Path, partial: Path) -> None:
    # mode=rw: never create an empty database where the daemon's should be.
    uri = "file:" + quote(str(source.resolve())) + "?mode=rw"
    try:
        src = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot open SQLite database {source}: {exc}") from exc
    try:
        src.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            src.execute("SELECT version FROM schema_version").fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{source} is not a budget-receiver database: {exc}") from exc
        out = sqlite3.connect(partial)
        try:
            src.backup(out)  # all pages in one step: one snapshot
            out.execute("PRAGMA journal_mode = DELETE")
        finally:
            out.close()
    finally:
        src.close()


def _put_in_place(partial: Path, dest: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(partial, dest)
        return
    try:
        os.link(partial, dest)  # fails if dest appeared meanwhile: never overwritten
    except FileExistsError:
        raise FileExistsError(f"{dest} exists") from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(path: Path) -> Backup:
    with contextlib.closing(sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro",
                                            uri=True)) as conn:  # fmt: skip
        version, tasks, events, outbox = conn.execute(
            "SELECT (SELECT max(version) FROM schema_version), (SELECT count(*) FROM tasks), "
            "(SELECT count(*) FROM events), (SELECT count(*) FROM outbox)"
        ).fetchone()
    return Backup(path, path.stat().st_size, int(version), tasks, events, outbox)


def without_password(url: str) -> str:
    """A PostgreSQL URL to show in a pg_dump command line: the password left out (in the
    userinfo and in the query), everything else kept."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k.lower() not in ("password", "sslpassword")]  # fmt: skip
    netloc = f"{user}@{hostport}" if at and user else hostport
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
