"""Fresh PostgreSQL databases for the daemon, on a given server or on a throw-away one
started with scripts/scratch-postgres."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.plan import ROOT, log


def pg_create(url: str, name: str) -> str:
    import asyncpg

    async def go() -> str:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    version = asyncio.run(go())
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, "")) + "#" + version


def pg_drop(url: str, name: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    with contextlib.suppress(Exception):
        asyncio.run(go())


class Databases:
    """Fresh databases on one server for one run, each dropped at the end."""

    def __init__(self, url: str, stamp: str) -> None:
        self.url = url
        self.stamp = stamp
        self.made: list[str] = []
        self.version: str | None = None

    def fresh(self, tag: str) -> str | None:
        """The URL of a new database, or None (logged) when the server is not usable."""
        name = f"bench_{self.stamp.lower()}_{tag}"
        try:
            url_v = pg_create(self.url, name)
        except Exception as exc:
            log(f"  PostgreSQL not usable at {self.url.split('@')[-1]}: {exc}")
            return None
        self.made.append(name)
        url, _, self.version = url_v.partition("#")
        return url

    def drop_all(self) -> None:
        for name in self.made:
            pg_drop(self.url, name)


def start_scratch(directory: Path, port: int) -> str:
    """A throw-away server in ``directory`` (scripts/scratch-postgres); its URL."""
    return subprocess.run(
        [str(ROOT / "scripts" / "scratch-postgres"), str(directory), str(port)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=600,
    ).stdout.strip()


def stop_scratch(directory: Path) -> None:
    """Stops the server in ``directory``, if any, and removes the directory."""
    subprocess.run([str(ROOT / "scripts" / "scratch-postgres"), "--stop", str(directory)],
                   check=False)  # fmt: skip
