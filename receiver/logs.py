"""Logging set-up and redaction: no secret, no credential in a URL ever reaches a log line."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit, urlunsplit

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


MASK = "***"


class Redactor:
    """Replaces each known secret fragment (3 characters or more), longest first, with ***."""

    def __init__(self, parts: Iterable[str | None]) -> None:
        found = {p for p in parts if p and len(p) >= 3}
        self.parts = tuple(sorted(found, key=len, reverse=True))

    def __or__(self, other: Redactor) -> Redactor:
        return Redactor((*self.parts, *other.parts))

    def text(self, text: str) -> str:
        for part in self.parts:
            text = text.replace(part, MASK)
        return text


def url_secrets(url: str, *, path: bool = False) -> set[str]:
    """The pieces of ``url`` that may hold a secret, as written and percent-decoded: what
    ``redact_url`` hides (user, password, query and each of its values, fragment) and, with
    ``path``, the whole URL, its host and every path segment too (apprise URLs carry
    tokens there)."""
    try:
        split = urlsplit(url)
        pieces = [split.username, split.password]
    except ValueError:
        return {url}
    values = [v for pair in split.query.split("&") for v in pair.split("=", 1)[1:]]
    pieces += [split.query, *values]
    pieces.append(split.fragment)
    if path:
        pieces += [url, split.netloc, *re.split(r"[@:]", split.netloc), *split.path.split("/")]
    found = {p for p in pieces if p}
    return found | {unquote(p) for p in found}


class RedactingFilter(logging.Filter):
    """Masks the secrets a redactor knows in every record that passes (a library's own log
    lines may quote a URL). Attach it to that library's logger; detach it when done."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor.parts:
            text = original = record.getMessage()
            text = self.redactor.text(text)
            if text != original:
                record.msg, record.args = text, None
        return True
