"""When to try a failed delivery again. Pure: time and randomness are passed in.

Exponential backoff with full jitter: the n-th failure waits a uniformly random
time in [0, min(cap, base * 2**(n-1))). A server's Retry-After is a floor, not a
replacement: the next try is never earlier than the server asked (up to
RETRY_AFTER_LIMIT) nor earlier than our own backoff would wait.
"""

from __future__ import annotations

import math
from datetime import UTC
from email.utils import parsedate_to_datetime

RETRY_AFTER_LIMIT = 3600.0
"""A Retry-After longer than this is cut to it: an hour is the longest we defer to a server."""

_MAX_EXPONENT = 62  # 2**62 * any sane base is already past every cap


def delay(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Seconds to wait after failure number ``attempt`` (1-based), full jitter.

    ``rand`` is the caller's uniform draw in [0, 1); values outside are clamped.
    """
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    ceiling = min(cap, base * 2.0**exponent)
    return min(max(rand, 0.0), 1.0) * ceiling


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` (unix time) that a Retry-After header asks us to wait.

    Accepts delta-seconds (``"120"``) or an HTTP-date. A date in the past gives 0.
    Absent, empty, negative or unparseable values give None.
    """
    if value is None or not (text := value.strip()):
        return None
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def next_attempt(
    attempt: int,
    *,
    now: float,
    base: float,
    cap: float,
    rand: float,
    retry_after: float | None = None,
) -> float:
    """Absolute time of the next try after failure number ``attempt``.

    Without Retry-After: ``now + delay(...)``. With it: the later of the jittered
    delay and ``min(retry_after, RETRY_AFTER_LIMIT)``, so a server's request is
    honoured (up to an hour) and never makes us retry sooner than backoff would.
    """
    wait = delay(attempt, base=base, cap=cap, rand=rand)
    if retry_after is not None and math.isfinite(retry_after):
        wait = max(wait, min(max(retry_after, 0.0), RETRY_AFTER_LIMIT))
    return now + wait
