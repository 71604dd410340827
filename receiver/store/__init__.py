"""Storage behind one narrow interface, with SQLite and PostgreSQL behind it."""

from __future__ import annotations

from pathlib import Path

from .base import Store


def open_store(database_url: str, *, pool_size: int = 10) -> Store:
    """The store ``database_url`` names (not yet opened): ``sqlite:///PATH`` or a
    PostgreSQL URL (``pool_size`` connections per process)."""
    if database_url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(Path(database_url.removeprefix("sqlite:///")))
    from .postgres import PostgresStore

    return PostgresStore(database_url, max_size=pool_size)


__all__ = ["Store", "open_store"]
