"""Standard Webhooks signatures: sign and verify share one code path.

``verify`` is a pure function of (body, headers, secrets, now, tolerance) and
raises only SignatureError, so a malformed header is a 401, never a 500.
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


def decode_secret(secret: str) -> bytes:
    """The HMAC key behind a ``whsec_<base64>`` secret; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("the part after 'whsec_' is not valid base64") from exc
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes of key (24 base64 chars)")
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


def verify(
    body: bytes,
    headers: Mapping[str, str],
    keys: Sequence[bytes],
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> str:
    """Check the signature headers against every key; return the webhook-id."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "").strip()
    raw_ts = lowered.get("webhook-timestamp", "").strip()
    raw_sigs = lowered.get("webhook-signature", "").strip()
    if not msg_id or not raw_ts or not raw_sigs:
        raise SignatureError(
            "missing webhook-id, webhook-timestamp or webhook-signature header",
            code="missing_signature",
        )
    if len(msg_id) > 255 or not msg_id.isprintable():
        raise SignatureError("webhook-id is not a printable id of at most 255 characters")
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
