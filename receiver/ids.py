"""What an id from outside must be before anything is stored under it. Pure.

A task id ends up in the halt call's URL path, in alerts, logs and the status page.
Percent-encoded, any printable text is one path segment, except ``.`` and ``..``:
every URL parser resolves those as "this" and "the parent" segment, so the halt call
(with the halt token) would go to another path. They are refused at ingest.
"""

from __future__ import annotations

from .errors import InvalidEvent

DOT_SEGMENTS = frozenset({".", ".."})


def fits_one_path_segment(task_id: str) -> bool:
    return bool(task_id) and task_id not in DOT_SEGMENTS


def check_task_id(task_id: str) -> str:
    """``task_id`` if the halt call can name it; InvalidEvent (422) otherwise."""
    if not fits_one_path_segment(task_id):
        raise InvalidEvent(
            f"task_id: {task_id!r} cannot be one path segment of the halt URL; "
            "send another id for this task",
            code="invalid_task_id",
        )
    return task_id
