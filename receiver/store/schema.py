"""Versioned schema, shared by both backends. Each entry migrates one version up."""

from __future__ import annotations

# {serial} is the dialect's auto-increment primary key; {real} its double type.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
)

SCHEMA_VERSION = len(MIGRATIONS)


def statements(version: int, *, serial: str, real: str) -> list[str]:
    """The DDL that takes a schema from ``version - 1`` to ``version``."""
    return [s.format(serial=serial, real=real) for s in MIGRATIONS[version - 1]]
