"""Bearer tokens for the task API: an admin token, and a read-only one."""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from .errors import Forbidden, Unauthorized

SESSION_SECONDS = 12 * 3600
CLOCK_SKEW_SECONDS = 300
_MAX_ISSUED_DIGITS = 12  # unix seconds; int() refuses a string of over 4300 digits (a 500)


class Role(StrEnum):
    READ = "read"
    ADMIN = "admin"


class Tokens:
    def __init__(self, admin: SecretStr | None, read: SecretStr | None) -> None:
        self._admin = None if admin is None else admin.get_secret_value().encode()
        self._read = None if read is None else read.get_secret_value().encode()

    @property
    def configured(self) -> bool:
        """Whether any token is set: without one the read API and the status page are off."""
        return self._admin is not None or self._read is not None

    def role_of(self, token: str) -> Role | None:
        offered = token.encode()
        # Compare against both, always, so timing says nothing about which exists.
        is_admin = self._admin is not None and hmac.compare_digest(offered, self._admin)
        is_read = self._read is not None and hmac.compare_digest(offered, self._read)
        if is_admin:
            return Role.ADMIN
        return Role.READ if is_read else None

    def session_for(self, token: str, now: float) -> str | None:
        """A status-page session for a valid token (None if unknown): ``role.issued.mac``.

        Not the token itself, so a leaked cookie opens the page only, never the API, and
        only until it expires; changing a token ends the sessions made with it.
        """
        role = self.role_of(token)
        issued = str(int(now))
        mac = None if role is None else self._session_mac(role, issued)
        return None if role is None or mac is None else f"{role.value}.{issued}.{mac}"

    def session_role(self, value: str, now: float) -> Role | None:
        """The role a ``session_for`` value grants at ``now``; None if forged or expired."""
        name, _, rest = value.partition(".")
        issued, _, mac = rest.partition(".")
        digits = issued.isascii() and issued.isdigit() and len(issued) <= _MAX_ISSUED_DIGITS
        if name not in {r.value for r in Role} or not digits:
            return None
        role = Role(name)
        expected = self._session_mac(role, issued)
        # Replicas' clocks may differ a little: a session from slightly ahead is fine.
        if expected is None or not -CLOCK_SKEW_SECONDS <= now - int(issued) < SESSION_SECONDS:
            return None
        return role if hmac.compare_digest(mac.encode(), expected.encode()) else None

    def _session_mac(self, role: Role, issued: str) -> str | None:
        key = self._admin if role is Role.ADMIN else self._read
        if key is None:
            return None
        message = f"budget-receiver page session {role.value} {issued}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def require(self, conn: HTTPConnection, role: Role) -> Role:
        """The caller's role, if it is at least ``role``; else 401 or 403."""
        if self._admin is None and (role is Role.ADMIN or self._read is None):
            names = "RECEIVER_ADMIN_TOKEN" if role is Role.ADMIN else "RECEIVER_READ_TOKEN"
            raise Forbidden(f"this API is off: set {names} to use it", code="api_disabled")
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <token>'")
        found = self.role_of(token.strip())
        if found is None:
            raise Unauthorized("unknown token")
        if role is Role.ADMIN and found is not Role.ADMIN:
            raise Forbidden("this needs the admin token")
        return found
