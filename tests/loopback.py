"""A guard for tests that run third-party code in process: no connection leaves 127.0.0.1.

Inside ``loopback_only()`` a name lookup or a connect to anything but the loopback
address raises ``OffMachine``, so a library that quietly phones home fails the
test instead of sending traffic.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class OffMachine(AssertionError):
    """A connection or name lookup for something other than the loopback address."""


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Refuse off-machine lookups and connects; yields the list of what was refused."""
    refused: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        if host is not None and not _is_loopback(host):
            refused.append(f"lookup {host!r}")
            raise OffMachine(f"name lookup of {host!r} in a test")
        return real_getaddrinfo(host, *args, **kw)

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            refused.append(f"connect {address!r}")
            raise OffMachine(f"connection to {address!r} in a test")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        yield refused
