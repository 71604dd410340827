"""Backoff: full-jitter schedule, Retry-After parsing and honouring. Time is passed in."""

from __future__ import annotations

import pytest

from receiver.backoff import RETRY_AFTER_LIMIT, delay, next_attempt, parse_retry_after

NOW = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.0, 0.0),
        (1, 0.5, 0.5),
        (2, 0.5, 1.0),
        (3, 0.5, 2.0),
        (4, 0.25, 2.0),
        (9, 0.5, 128.0),
        (10, 0.5, 150.0),  # 2**9 = 512 > cap 300
        (30, 0.999, 299.7),
        (10**6, 0.5, 150.0),  # no overflow for absurd attempt counts
        (0, 0.5, 0.5),  # attempts below 1 count as the first
        (1, 1.7, 1.0),  # rand outside [0, 1) is clamped
        (3, -2.0, 0.0),
    ],
)
def test_delay_is_full_jitter_under_an_exponential_ceiling(
    attempt: int, rand: float, expected: float
) -> None:
    """The n-th failure waits rand * min(cap, base * 2**(n-1))."""
    assert delay(attempt, base=1.0, cap=300.0, rand=rand) == pytest.approx(expected)


def test_schedule_without_retry_after_is_now_plus_delay() -> None:
    """next_attempt is absolute: now plus the jittered delay, attempt by attempt."""
    schedule = [next_attempt(n, now=NOW, base=2.0, cap=60.0, rand=0.5) - NOW for n in range(1, 8)]
    assert schedule == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0])


@pytest.mark.parametrize(
    ("retry_after", "rand", "expected"),
    [
        (120.0, 0.5, 120.0),  # the server asks for longer than backoff: wait for it
        (0.1, 0.5, 4.0),  # shorter than backoff: backoff still applies
        (0.0, 0.0, 0.0),
        (10 * 86_400.0, 0.5, RETRY_AFTER_LIMIT),  # a day-long ask is cut to the limit
        (float("inf"), 0.5, 4.0),  # nonsense is ignored
        (-5.0, 0.5, 4.0),
    ],
)
def test_retry_after_is_a_floor_up_to_an_hour(
    retry_after: float, rand: float, expected: float
) -> None:
    """With Retry-After, wait max(jittered delay, min(retry_after, 1 hour))."""
    at = next_attempt(4, now=NOW, base=1.0, cap=300.0, rand=rand, retry_after=retry_after)
    assert at - NOW == pytest.approx(expected)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:30:00 GMT", 120.0),  # obsolete RFC 850 form
        ("Wed Oct 21 07:30:00 2015", 120.0),  # obsolete asctime form (UTC)
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),
        ("1.5", None),  # delta-seconds are whole numbers
        ("²", None),
        ("Wed, 99 Foo 2015 07:30:00 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    """Delta-seconds or an HTTP-date become seconds from now; garbage becomes None."""
    assert parse_retry_after(header, NOW) == expected
