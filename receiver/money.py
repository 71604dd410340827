"""Money is Decimal end to end: parsed from JSON numbers or strings, never via float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

from .errors import InvalidEvent

_CURRENCY = re.compile(r"[A-Z]{3}")
MAX_WHOLE_DIGITS = 15
MAX_PLACES = 12
"""Decimal places kept: far below any currency's minor unit or any one request's cost.
Finer digits (a float's noise, like 0.30000000000000004, or 1E-999999) are rounded half
to even. With at most 15 digits before the point, every figure has at most 27 digits and
the sum of two at most 28: exact in Decimal's default context, and short to show."""
_QUANTUM = Decimal(1).scaleb(-MAX_PLACES)
PERCENT_PRECISION = 2 * (MAX_WHOLE_DIGITS + MAX_PLACES) + 4
"""Enough digits to show spent / budget as a percentage exactly, for any two figures."""


def parse_money(value: object, field: str) -> Decimal:
    """A non-negative, finite Decimal from a JSON number (parsed as Decimal) or string."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidEvent(f"{field}: must be a number or a decimal string", code="invalid_money")
    if isinstance(value, str) and "_" in value:  # Decimal("1_000") would pass
        raise InvalidEvent(f"{field}: digits only, like 1000.50", code="invalid_money")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise InvalidEvent(
            f"{field}: {str(value)[:40]!r} is not a decimal number", code="invalid_money"
        ) from None
    if not amount.is_finite():
        raise InvalidEvent(f"{field}: must be finite", code="invalid_money")
    if amount < 0:
        raise InvalidEvent(f"{field}: must not be negative", code="invalid_money")
    if amount.adjusted() >= MAX_WHOLE_DIGITS:
        raise InvalidEvent(
            f"{field}: at most {MAX_WHOLE_DIGITS} digits before the decimal point",
            code="invalid_money",
        )
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PLACES:
        with localcontext(prec=MAX_WHOLE_DIGITS + MAX_PLACES):
            amount = amount.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN).normalize()
    return amount + 0  # normalises -0 to 0


def parse_currency(value: object, field: str = "currency") -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise InvalidEvent(
            f"{field}: must be an ISO 4217 code of three upper-case letters, like USD",
            code="invalid_currency",
        )
    return value


def fmt(amount: Decimal | None) -> str | None:
    """Money as a decimal string for JSON, never in exponent form."""
    return None if amount is None else f"{amount:f}"
