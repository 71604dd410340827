"""Logging set-up and redaction: no secret, no credential in a URL ever reaches a log line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

# Fields a log call may attach with ``extra=``; JSON lines carry them as keys.
FIELDS = ("event_id", "task_id", "source", "type", "outcome", "state", "reason", "delivery_id")


class JsonLines(logging.Formatter):
    """One JSON object per line, for a container's log pipeline."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(level: str, fmt: str = "auto") -> None:
    """``fmt``: json, text, or auto (text on a terminal, JSON lines otherwise)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json" or (fmt == "auto" and not sys.stderr.isatty()):
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # These log whole URLs or request lines (with tokens in them) below WARNING.
    for noisy in ("apprise", "httpx", "httpcore", "urllib3", "requests"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


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
