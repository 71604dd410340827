"""Storage behind one narrow interface, with SQLite and PostgreSQL behind it."""

from __future__ import annotations

from ..settings import Settings
from .base import Decide, Delivery, DeliveryStatus, Store


def open_store(settings: Settings) -> Store:
    """The store RECEIVER_DATABASE_URL names (not yet opened)."""
    path = settings.sqlite_path
    if path is not None:
        from .sqlite import SQLiteStore

        return SQLiteStore(path)
    from .postgres import PostgresStore

    return PostgresStore(settings.database_url, max_size=settings.database_pool_size)


__all__ = ["Decide", "Delivery", "DeliveryStatus", "Store", "open_store"]
