"""SQLite store: one writer thread with group commit, one reader thread, WAL, synchronous=FULL.

Every write is a job run by the single writer thread. Jobs queued while a commit
is being made durable are run together, each in its own savepoint, and made
durable by one COMMIT (one fsync): group commit. A job's caller is answered only
after the COMMIT that holds its data returns, so an acknowledgement always means
"on disk". A single writer also serialises per-task updates.

The statements and the steps of each write are shared with PostgreSQL (``sql.py``);
this module spells the dialect and runs them.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from ..errors import ReceiverError, StoreUnavailable
from .sql import Dialect, Query, Row, Script, SQLStore, Statements, migrate

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
MAX_BATCH = 256
BUSY_TIMEOUT_MS = 5000
MIN_VERSION = (3, 35, 0)  # RETURNING

SQLITE = Dialect(
    name="sqlite",
    placeholder="?{n}",
    one_of="IN (SELECT value FROM json_each({mark}))",
    array=lambda values: json.dumps(list(values)),
    # One writer thread: a write already has every row to itself.
    for_update="",
    skip_locked="",
    task_lock="SELECT 1",
    unindexed="+",
)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _execute(conn: sqlite3.Connection, query: Query) -> list[Row]:
    if query.many:
        conn.executemany(query.sql, query.args)
        return []
    return conn.execute(query.sql, query.args).fetchall()


def _run(conn: sqlite3.Connection, script: Script[T]) -> T:
    """Run ``script`` on ``conn``, inside the caller's transaction."""
    query = next(script)
    while True:
        rows = _execute(conn, query)
        try:
            query = script.send(rows)
        except StopIteration as done:
            return cast(T, done.value)


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        _run(conn, migrate(SQLITE))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SQLiteStore(SQLStore):
    sql = Statements(SQLITE)
    writer = "the SQLite writer"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"sqlite:///{path.resolve()} (WAL, synchronous=FULL)"
        self._jobs: queue.SimpleQueue[tuple[Job, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")
        self._read_conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_VERSION:
            raise StoreUnavailable(
                f"SQLite {sqlite3.sqlite_version} is too old: the store needs "
                f"{'.'.join(map(str, MIN_VERSION))} or newer"
            )
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_conn = _connect(self.path)
            try:
                _migrate(write_conn)
            except BaseException:
                write_conn.close()  # a refused or failed migration must not leak the handle
                raise
            self._read_conn = await self._loop.run_in_executor(self._reader, _connect, self.path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._writer = threading.Thread(
            target=self._write_loop, args=(write_conn,), name="sqlite-writer", daemon=True
        )
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._read_conn is not None and self._loop is not None:
            await self._loop.run_in_executor(self._reader, self._read_conn.close)
            self._read_conn = None
        self._reader.shutdown(wait=True)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- the writer thread -----------------------------------------------------

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._jobs.put(None)  # stop after this batch
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[tuple[Job, asyncio.Future[Any]]]
    ) -> None:
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, fut in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = job(conn)
                except Exception as exc:  # the job's own failure; the others go on
                    conn.execute("ROLLBACK TO job")
                    results.append((fut, None, exc))
                else:
                    results.append((fut, value, None))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"SQLite write failed: {exc}")
            results = [(fut, None, failure) for _, fut in batch]
        for fut, value, error in results:
            self._answer(fut, value, error)

    def _answer(self, fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
        if isinstance(error, sqlite3.Error):
            error = StoreUnavailable(f"SQLite write failed: {error}")
        elif error is not None and not isinstance(error, ReceiverError):
            error = StoreUnavailable(f"store job failed: {error!r}")

        def settle() -> None:
            if fut.done():  # the caller went away; its data is committed all the same
                return
            if error is None:
                fut.set_result(value)
            else:
                fut.set_exception(error)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None or self._loop is None:
            raise StoreUnavailable("the store is not open")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((job, fut))
        return await fut

    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        conn, loop = self._read_conn, self._loop
        if conn is None or loop is None:
            raise StoreUnavailable("the store is not open")
        try:
            return await loop.run_in_executor(self._reader, job, conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    async def _fetch(self, query: Query) -> list[Row]:
        return await self._read(lambda conn: _execute(conn, query))

    async def _commit(self, query: Query) -> list[Row]:
        return await self._write(lambda conn: _execute(conn, query))

    async def _transact(self, script: Script[T]) -> T:
        return await self._write(lambda conn: _run(conn, script))
