"""Shared fixtures: an event loop per test, and the stores under test (SQLite and PostgreSQL).

pytest-asyncio is not used. A test that needs a store takes ``aio`` (an
``asyncio.Runner``) and runs its coroutines with ``aio.run(...)``: the ``store``
fixture is opened and closed on that same loop, so use ``aio.run``, not
``asyncio.run``, with it.

PostgreSQL: set RECEIVER_TEST_POSTGRES_URL to a server the tests may create
databases on (the role needs CREATEDB), e.g.
``postgresql://receiver:receiver@127.0.0.1:5432/receiver``. Each test gets a
database of its own, ``test_<random>``, dropped afterwards. Without the URL the
PostgreSQL tests skip, unless RECEIVER_TEST_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from receiver.store import Store
from receiver.store.postgres import PostgresStore
from receiver.store.sqlite import SQLiteStore

PG_URL_ENV = "RECEIVER_TEST_POSTGRES_URL"
REQUIRE_PG_ENV = "RECEIVER_TEST_REQUIRE_POSTGRES"
PG_SKIP_MESSAGE = (
    f"set {PG_URL_ENV}=postgresql://... to run the PostgreSQL store tests"
    f" ({REQUIRE_PG_ENV}=1 turns this skip into a failure)"
)


def postgres_server_url() -> str:
    """The test server's URL; skips the test when unset (fails if PostgreSQL is required)."""
    url = os.environ.get(PG_URL_ENV, "").strip()
    if not url:
        if os.environ.get(REQUIRE_PG_ENV, "").strip() == "1":
            pytest.fail(f"{REQUIRE_PG_ENV}=1 but {PG_URL_ENV} is not set", pytrace=False)
        pytest.skip(PG_SKIP_MESSAGE)
    return url


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the test server, dropped (with any leftover sessions) after."""
    server = postgres_server_url()
    name = f"test_{secrets.token_hex(8)}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server, name)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def aio() -> Iterator[asyncio.Runner]:
    """One event loop for the test and its store fixtures."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (skips when no server is configured)."""
    with fresh_postgres_database() as url:
        yield url


@dataclass
class StoreTarget:
    """One database under test; ``new()`` makes another (unopened) store on it, like a
    restarted daemon or a second replica."""

    backend: str
    url: str
    make: Callable[[], Store] = field(repr=False)

    def new(self) -> Store:
        return self.make()


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    """Each store backend, on an empty database of its own."""
    if request.param == "sqlite":
        path = tmp_path / "data" / "receiver.db"
        yield StoreTarget("sqlite", f"sqlite:///{path}", lambda: SQLiteStore(path))
        return
    with fresh_postgres_database() as url:
        yield StoreTarget("postgres", url, lambda: PostgresStore(url, max_size=5))


@pytest.fixture
def store(store_target: StoreTarget, aio: asyncio.Runner) -> Iterator[Store]:
    """An opened store of each backend, closed after the test. Use it through ``aio.run``."""
    opened = store_target.new()
    aio.run(opened.open())
    try:
        yield opened
    finally:
        aio.run(opened.close())
