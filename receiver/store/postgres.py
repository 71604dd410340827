"""PostgreSQL store: an asyncpg pool shared by the replicas of the receiver.

Every write is one transaction. Per-task updates are serialised in the database
(the task row is locked with SELECT ... FOR UPDATE before ``decide`` runs), never
in process memory, so any number of replicas may apply events for one task at
once. Outbox claims use FOR UPDATE SKIP LOCKED, so replicas never lease the same
row. Schema migrations run at open() under a transaction-scoped advisory lock,
so replicas starting together migrate once.

The statements and the steps of each write are shared with SQLite (``sql.py``); this
module spells the dialect and runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..errors import StoreUnavailable
from .sql import Dialect, Query, Row, Script, SQLStore, Statements, migrate

T = TypeVar("T")

if TYPE_CHECKING:
    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:  # asyncpg's classes are generic in the stubs only
    Conn = PoolConnectionProxy

# pg_advisory_xact_lock key held while migrating ("budgetrc" in ASCII).
MIGRATION_LOCK_KEY = 0x6275_6467_6574_7263
APPLICATION_NAME = "budget-receiver"
CLOSE_TIMEOUT = 10.0
PING_TIMEOUT = 5.0

# Errors that mean "the database cannot be reached or would not do it": answered 503.
# ReceiverError raised by ``decide`` is none of these and passes through unchanged.
_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
# A malformed URL is a ValueError from asyncpg's DSN parser.
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*_DB_ERRORS, ValueError)

POSTGRES = Dialect(
    name="postgres",
    placeholder="${n}",
    one_of="= ANY({mark}::{type}[])",
    array=list,
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    # The task's advisory lock, held until commit (two task ids sharing a hash only ever
    # wait for each other): taken in the statement that inserts the event, one round trip.
    task_lock="SELECT pg_advisory_xact_lock(hashtextextended({task}, 0))",
    unindexed="",
)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the userinfo and in the query)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    netloc = f"{userinfo}@{hostport}" if at else hostport
    query = "&".join(
        f"{k}=***" if k.lower() in ("password", "sslpassword") else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


class PostgresStore(SQLStore):
    sql = Statements(POSTGRES)
    writer = "PostgreSQL"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 10.0,
        command_timeout: float | None = 30.0,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(
                f"pool sizes need 0 <= min_size <= max_size and max_size >= 1, "
                f"not {min_size} and {max_size}"
            )
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.acquire_timeout = acquire_timeout
        self.command_timeout = command_timeout
        self.description = f"{redact_url(url)} (pool {max_size})"
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        query = dict(parse_qsl(urlsplit(self.url).query))
        settings = {} if "application_name" in query else {"application_name": APPLICATION_NAME}
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                server_settings=settings,
                reset=_keep_session,
            )
        except _CONNECT_ERRORS as exc:
            raise StoreUnavailable(f"cannot connect to {self.description}: {exc}") from exc
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                await _migrate(conn)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, _DB_ERRORS):
                raise StoreUnavailable(f"cannot migrate {self.description}: {exc}") from exc
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            pool.terminate()

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        """A pooled connection; database and network failures become StoreUnavailable."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                yield conn
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL failed: {type(exc).__name__}: {exc}") from exc

    async def _fetch(self, query: Query) -> list[Row]:
        async with self._conn() as conn:
            return await _execute(conn, query)

    _commit = _fetch  # one statement is its own transaction

    async def _transact(self, script: Script[T]) -> T:
        async with self._conn() as conn, conn.transaction():
            return await _run(conn, script)


async def _execute(conn: Conn, query: Query) -> list[Row]:
    if query.many:
        await conn.executemany(query.sql, query.args)
        return []
    return [tuple(r) for r in await conn.fetch(query.sql, *query.args)]


async def _run(conn: Conn, script: Script[T]) -> T:
    """Run ``script`` on ``conn``, inside the caller's transaction."""
    query = next(script)
    while True:
        rows = await _execute(conn, query)
        try:
            query = script.send(rows)
        except StopIteration as done:
            return cast(T, done.value)


async def _migrate(conn: Conn) -> None:
    async with conn.transaction():
        # Replicas starting together wait here; the first migrates, the rest find it done.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await _run(conn, migrate(POSTGRES))


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Skip asyncpg's reset query on release (advisory unlock, CLOSE ALL, UNLISTEN, RESET
    ALL: one round trip per event). The store takes only transaction-scoped locks and sets
    no session state; an open transaction is still rolled back by the pool itself."""
