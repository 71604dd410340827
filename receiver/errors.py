"""The receiver's error tree.

    ReceiverError
    ├── ConfigError          settings that cannot start the daemon
    ├── RequestRejected      400: input refused at the edge; never changes state
    │   ├── SignatureError   401: missing, malformed or wrong signature, stale timestamp
    │   ├── Unauthorized     401: missing or wrong API token
    │   ├── Forbidden        403: a token without the right, or an API that is off
    │   ├── NotFound         404
    │   ├── RequestTimeout   408: the body did not arrive in time
    │   ├── Conflict         409: the task is not in a state that allows the action
    │   ├── PayloadTooLarge  413
    │   ├── UnsupportedMediaType 415
    │   └── InvalidEvent     422: well-formed JSON that is not a valid event
    │       └── CurrencyMismatch
    └── StoreUnavailable     503: the database cannot be reached or written

Third-party errors are translated into these at the boundary (``raise ... from exc``).
"""

from __future__ import annotations


class ReceiverError(Exception):
    """Base of every error the receiver raises on purpose."""


class ConfigError(ReceiverError):
    """Settings that cannot start the daemon; ``problems`` names each bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class RequestRejected(ReceiverError):
    """Input refused at the edge. ``code`` is the machine-readable error code."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class SignatureError(RequestRejected):
    status = 401
    code = "invalid_signature"


class InvalidEvent(RequestRejected):
    status = 422
    code = "invalid_event"


class CurrencyMismatch(InvalidEvent):
    code = "currency_mismatch"


class RequestTimeout(RequestRejected):
    status = 408
    code = "request_timeout"


class Conflict(RequestRejected):
    status = 409
    code = "conflict"


class StoreUnavailable(ReceiverError):
    """The store could not be reached or could not commit."""


class PayloadTooLarge(RequestRejected):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(RequestRejected):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(RequestRejected):
    status = 401
    code = "unauthorized"


class Forbidden(RequestRejected):
    status = 403
    code = "forbidden"


class NotFound(RequestRejected):
    status = 404
    code = "not_found"
