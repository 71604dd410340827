"""Versioned schema, shared by both backends. Each entry migrates one version up.

An entry is a tuple of statements for both dialects, or a mapping from dialect to its
own statements where they differ. {serial} is the dialect's auto-increment primary key,
{real} its double type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

DialectName = Literal["sqlite", "postgres"]
Migration = tuple[str, ...] | Mapping[DialectName, tuple[str, ...]]

_TYPES: Mapping[DialectName, Mapping[str, str]] = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY", "real": "REAL"},
    "postgres": {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"},
}

# Version 2: dedupe on (source, event id), so no sender can take an id of another source
# or of the receiver's own events; and the one-row table the readiness check writes.
_EVENTS_V2 = """CREATE TABLE {table} (
            seq {serial},
            event_id TEXT NOT NULL,
            source TEXT NOT NULL,
            type TEXT NOT NULL,
            task_id TEXT NOT NULL,
            received_at {real} NOT NULL,
            occurred_at {real} NOT NULL,
            payload TEXT NOT NULL,
            UNIQUE (source, event_id)
        )"""
_READINESS = "CREATE TABLE readiness (id INTEGER PRIMARY KEY, checked_at {real} NOT NULL)"

MIGRATIONS: tuple[Migration, ...] = (
    (
        """CREATE TABLE tasks (
            task_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            state TEXT NOT NULL,
            spent TEXT NOT NULL,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            budget TEXT,
            currency TEXT,
            task_name TEXT,
            agent_id TEXT,
            thresholds_alerted TEXT NOT NULL,
            halted_at {real},
            last_after_halt_alert_at {real}
        )""",
        "CREATE INDEX tasks_by_state ON tasks (state, task_id)",
        """CREATE TABLE events (
            seq {serial},
            event_id TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            type TEXT NOT NULL,
            task_id TEXT NOT NULL,
            received_at {real} NOT NULL,
            occurred_at {real} NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX events_by_task ON events (task_id, seq)",
        """CREATE TABLE outbox (
            id {serial},
            kind TEXT NOT NULL,
            channel TEXT NOT NULL,
            task_id TEXT NOT NULL,
            payload TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            next_at {real} NOT NULL,
            created_at {real} NOT NULL,
            last_error TEXT,
            delivered_at {real},
            lease_owner TEXT,
            lease_until {real}
        )""",
        "CREATE INDEX outbox_due ON outbox (status, next_at)",
    ),
    {
        # SQLite cannot drop an inline UNIQUE: the table is rebuilt (seq values kept).
        "sqlite": (
            _EVENTS_V2.replace("{table}", "events_v2"),
            "INSERT INTO events_v2 (seq, event_id, source, type, task_id, received_at, "
            "occurred_at, payload) SELECT seq, event_id, source, type, task_id, received_at, "
            "occurred_at, payload FROM events",
            "DROP TABLE events",
            "ALTER TABLE events_v2 RENAME TO events",
            "CREATE INDEX events_by_task ON events (task_id, seq)",
            _READINESS,
        ),
        "postgres": (
            "ALTER TABLE events DROP CONSTRAINT events_event_id_key",
            "ALTER TABLE events ADD CONSTRAINT events_source_event_id_key "
            "UNIQUE (source, event_id)",
            _READINESS,
        ),
    },
)

SCHEMA_VERSION = len(MIGRATIONS)


def statements(version: int, dialect: DialectName) -> list[str]:
    """The DDL that takes a schema from ``version - 1`` to ``version`` in ``dialect``."""
    migration = MIGRATIONS[version - 1]
    chosen = migration if isinstance(migration, tuple) else migration[dialect]
    return [s.format(**_TYPES[dialect]) for s in chosen]
