"""Standard Webhooks signatures: sign and verify share one code path.

``verify`` is a pure function of (body, headers, secrets, now, tolerance) and
raises only SignatureError, so a malformed header is a 401, never a 500.

Senders using the svix library name the headers ``svix-id``, ``svix-timestamp``
and ``svix-signature``: the same scheme, accepted too. A request is read in one
spelling only, so the id it is stored under is always the id that was signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from .errors import SignatureError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme prefix, not a secret
DEFAULT_TOLERANCE_SECONDS = 300
SPELLINGS = (
    ("webhook-id", "webhook-timestamp", "webhook-signature"),
    ("svix-id", "svix-timestamp", "svix-signature"),
)
MAX_ID_CHARS = 255


def decode_secret(secret: str) -> bytes:
    """The HMAC key behind a ``whsec_<base64>`` secret; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        # Unpadded is fine: the standardwebhooks and svix libraries accept it too.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("the part after 'whsec_' is not valid base64") from exc
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes of key (22 base64 characters)")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers that make ``body`` verifiable with ``secret``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(decode_secret(secret), msg_id, timestamp, body),
    }


def is_signed(headers: Mapping[str, str]) -> bool:
    """Whether the request carries a signature header, in either spelling."""
    names = {k.lower() for k in headers}
    return any(spelling[2] in names for spelling in SPELLINGS)


def message_id(headers: Mapping[str, str]) -> str | None:
    """The sender's message id (webhook-id or svix-id), checked; None if there is none."""
    msg_id = _one_spelling(headers)[0]
    return _checked_id(msg_id) if msg_id else None


def _one_spelling(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """(id, timestamp, signatures) from the one spelling the request uses.

    Both spellings at once must say the same: otherwise one set could verify while the
    other's id is the one used.
    """
    lowered = {k.lower(): v.strip() for k, v in headers.items()}
    given = {
        (lowered.get(i, ""), lowered.get(t, ""), lowered.get(s, ""))
        for i, t, s in SPELLINGS
        if {i, t, s} & lowered.keys()
    }
    if len(given) > 1:
        raise SignatureError(
            "webhook-* and svix-* headers differ: sign with one spelling",
            code="mixed_signature_headers",
        )
    return next(iter(given), ("", "", ""))


def _checked_id(msg_id: str) -> str:
    if len(msg_id) > MAX_ID_CHARS or not msg_id.isprintable():
        raise SignatureError(
            f"webhook-id is not a printable id of at most {MAX_ID_CHARS} characters"
        )
    return msg_id


def verify(
    body: bytes,
    headers: Mapping[str, str],
    keys: Sequence[bytes],
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> str:
    """Check the signature headers against every key; return the (signed) webhook-id."""
    msg_id, raw_ts, raw_sigs = _one_spelling(headers)
    if not msg_id or not raw_ts or not raw_sigs:
        raise SignatureError(
            "missing webhook-id, webhook-timestamp or webhook-signature header "
            "(or svix-id, svix-timestamp, svix-signature)",
            code="missing_signature",
        )
    _checked_id(msg_id)
    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
        raise SignatureError("webhook-timestamp is not unix seconds")
    timestamp = int(raw_ts)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(
            f"webhook-timestamp is more than {tolerance} s from now", code="stale_timestamp"
        )
    offered = [s.partition(",")[2] for s in raw_sigs.split() if s.startswith("v1,")]
    if not offered:
        raise SignatureError("webhook-signature holds no v1 signature")
    for key in keys:
        expected = signature(key, msg_id, timestamp, body).partition(",")[2]
        for candidate in offered:
            if hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace")):
                return msg_id
    raise SignatureError("no signature matches any configured secret")
