"""Logging set-up and redaction: no secret, no credential in a URL ever reaches a log line."""

from __future__ import annotations

import logging
import sys
from urllib.parse import urlsplit, urlunsplit


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # apprise logs whole URLs at debug; httpx logs every request line.
    logging.getLogger("apprise").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def redact_url(url: str) -> str:
    """scheme://host[:port]/path with user, password, query and fragment hidden."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    netloc = ("***@" if parts.username or parts.password else "") + host + port
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
