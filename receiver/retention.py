"""What is old enough to prune: pure rules over plain values, time passed in.

A task is finished when it is completed, or halted and untouched (no event, no resume)
for the whole retention period. A finished task's events and settled deliveries older
than the cutoff may go; its task row never does, so its state (halted stays halted, and
resumable) and its totals outlive its history. Nothing of an active, warning or halting
task is ever pruned, nor any delivery still owed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import TaskState

DAY_SECONDS = 86_400.0
FINISHED = frozenset({TaskState.COMPLETED, TaskState.HALTED})
SETTLED = frozenset({"delivered", "dead"})


def cutoff(now: float, days: int) -> float | None:
    """Rows older than this may be pruned; None when retention is off (``days`` 0)."""
    if days <= 0:
        return None
    return now - days * DAY_SECONDS


def task_finished(state: str, updated_at: float, before: float) -> bool:
    """The task ended, and nothing has happened to it since ``before``."""
    return state in FINISHED and updated_at < before


def event_prunable(received_at: float, task_state: str, task_updated_at: float,
                   before: float) -> bool:  # fmt: skip
    return received_at < before and task_finished(task_state, task_updated_at, before)


def delivery_prunable(status: str, last_change: float, task_state: str,
                      task_updated_at: float, before: float) -> bool:  # fmt: skip
    """``last_change``: when the row was settled (delivered or given up on)."""
    return (
        status in SETTLED
        and last_change < before
        and task_finished(task_state, task_updated_at, before)
    )


@dataclass(frozen=True, slots=True)
class Pruned:
    """One batch: how many rows went, and the key to continue after (None: done)."""

    deleted: int
    next: int | None
