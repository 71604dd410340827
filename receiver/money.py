"""Money is Decimal end to end: parsed from JSON numbers or strings, never via float."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import InvalidEvent

_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_DIGITS = 30


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
    if len(amount.as_tuple().digits) > _MAX_DIGITS or amount.adjusted() > 18:
        raise InvalidEvent(f"{field}: too many digits", code="invalid_money")
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
