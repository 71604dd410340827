"""Bearer tokens for the task API: an admin token, and a read-only one."""

from __future__ import annotations

import hmac
from enum import StrEnum

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from .errors import Forbidden, Unauthorized


class Role(StrEnum):
    READ = "read"
    ADMIN = "admin"


class Tokens:
    def __init__(self, admin: SecretStr | None, read: SecretStr | None) -> None:
        self._admin = None if admin is None else admin.get_secret_value().encode()
        self._read = None if read is None else read.get_secret_value().encode()

    def role_of(self, token: str) -> Role | None:
        offered = token.encode()
        # Compare against both, always, so timing says nothing about which exists.
        is_admin = self._admin is not None and hmac.compare_digest(offered, self._admin)
        is_read = self._read is not None and hmac.compare_digest(offered, self._read)
        if is_admin:
            return Role.ADMIN
        return Role.READ if is_read else None

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
