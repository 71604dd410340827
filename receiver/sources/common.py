"""What the other sources share: a shared-token check, ids from sender text, answers."""

from __future__ import annotations

import hmac
import logging

from pydantic import SecretStr
from starlette.requests import Request

from ..errors import InvalidEvent, RequestRejected, Unauthorized

log = logging.getLogger("receiver.sources")

_MAX_ID = 200


class UpstreamUnavailable(RequestRejected):
    """502: a sender's key or certificate server (or SubscribeURL) could not be reached.

    Not the sender's fault, so it is told to retry; nothing was stored.
    """

    status = 502
    code = "upstream_unavailable"


def presented_token(request: Request) -> str | None:
    """The token in ``Authorization: Bearer <token>``, else in ``?token=``."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token") or None


def token_matches(offered: str | None, expected: SecretStr) -> bool:
    if offered is None:
        return False
    return hmac.compare_digest(offered.encode(), expected.get_secret_value().encode())


def require_shared_token(request: Request, expected: SecretStr) -> None:
    offered = presented_token(request)
    if offered is None:
        raise Unauthorized("send the token as 'Authorization: Bearer <token>' or ?token=<token>")
    if not token_matches(offered, expected):
        raise Unauthorized("unknown token")


def clean_id(value: object, field: str) -> str:
    """A sender's identifier fit for a task or event id: printable text, not too long."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{field}: required, a non-empty string", code="missing_field")
    value = value.strip()
    if len(value) > _MAX_ID or not value.isprintable():
        raise InvalidEvent(f"{field}: at most {_MAX_ID} printable characters")
    return value


def optional_text(value: object) -> str | None:
    """Free text (a display name) if usable, else None: never a reason to refuse an event."""
    if isinstance(value, str) and value.strip() and value.isprintable():
        return value.strip()[:_MAX_ID]
    return None
