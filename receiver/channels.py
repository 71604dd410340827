"""Notification channels: one apprise URL each, validated at start, sent off the event loop.

A channel is one apprise URL with its own ``Apprise`` object and its own
single-thread executor. So a slow or throttled channel (apprise's email plugin
sleeps about 5.5 s between sends on one object) only ever delays itself, and no
``Apprise`` object is used from two threads at once.

Apprise is told not to retry (``retry=0`` on every plugin, whatever the URL
says) and not to report a failure as success (``optional=no``): the outbox
owns retries, and it must see every failure. Apprise's own per-service
timeout is off too (``service_timeout=0``) so a send runs in the channel's
thread rather than being abandoned in apprise's shared pool; the plugins' socket
timeouts (``cto=``/``rto=``) still bound each request.

Secrets: a channel is shown by apprise's privacy form of its URL. Every part of
a URL that apprise masks there is also masked in error texts and in apprise's
own log records, so neither the daemon's log nor the outbox ever holds one.
With no URL configured, the single "log" channel writes alerts to the
``receiver.alerts`` logger (ERROR for critical alerts, WARNING for the rest), so
a new user still sees them.

Severity routing: a URL from RECEIVER_NOTIFY_URLS takes every severity. An entry
of RECEIVER_APPRISE_CONFIG tagged info, warning and/or critical takes only those;
one without any of these tags takes every severity (other tags are ignored).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import apprise
from pydantic import SecretStr

from .alerts import Message, render
from .delivery import FollowUps, Result
from .errors import ConfigError
from .logs import RedactingFilter, Redactor, url_secrets
from .model import Delivery, Severity
from .outbox import Route

LOG_CHANNEL = "log"
ALL_SEVERITIES = frozenset(Severity)
_MAX_ERROR = 500
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
_ANY_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{0,31})://\S+")
alert_log = logging.getLogger("receiver.alerts")
log = logging.getLogger("receiver.dispatch")
_apprise_log = logging.getLogger(apprise.LOGGER_NAME)


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Channel:
    """One delivery target. ``id`` is stable across restarts and replicas."""

    id: str
    redacted: str
    severities: frozenset[Severity]
    # Its service puts the title into the message text, where it is read (or converted by
    # apprise) as Markdown like the body, so it must be escaped like the body.
    blends_title: bool = False
    _apprise: apprise.Apprise | None = field(default=None, repr=False)
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _redact: Redactor = field(default_factory=lambda: Redactor(()), repr=False)
    # Masks this set's secrets in apprise's own log records while the channel is open.
    _log_filter: RedactingFilter | None = field(default=None, repr=False)

    serial = True  # one message at a time: apprise objects are not shared between threads
    follow_ups = FollowUps()

    @property
    def shown(self) -> str:
        return self.redacted

    def title_for(self, message: Message) -> str:
        return message.markdown_title if self.blends_title else message.title

    async def send(self, row: Delivery) -> Result:
        """One alert row as one message: a failed send is tried again later."""
        sent = await notify(self, render(row.payload))
        if not sent.ok:
            return Result.retry(sent.error or "failed")
        log.info("alert %s for task %s delivered to %s", row.id, row.task_id, self.redacted)
        return Result.done()


def build_channels(
    notify_urls: Sequence[SecretStr] = (), apprise_config: Path | None = None
) -> list[Channel]:
    """Channels from RECEIVER_NOTIFY_URLS and RECEIVER_APPRISE_CONFIG, or the log channel.

    Raises ConfigError naming every entry apprise cannot load (never its secret).
    """
    asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
    problems: list[str] = []
    found: list[tuple[str, apprise.NotifyBase, frozenset[Severity]]] = []
    with _apprise_logs() as records:
        for n, secret in enumerate(notify_urls, start=1):
            raw = secret.get_secret_value()
            records.clear()
            plugin = apprise.Apprise.instantiate(raw, asset=asset)
            if plugin is None:
                why = Redactor(url_secrets(raw, path=True)).text(_reasons(records))[:_MAX_ERROR]
                problems.append(
                    f"RECEIVER_NOTIFY_URLS entry {n} ({_scheme_of(raw)}): apprise cannot load it"
                    + (f": {why}" if why else "")
                )
                continue
            found.append((raw, plugin, ALL_SEVERITIES))
        if apprise_config is not None:
            found.extend(_from_config(apprise_config, asset, problems, records))
    if problems:
        raise ConfigError(problems)
    if not found:
        return [Channel(LOG_CHANNEL, "log://receiver.alerts", ALL_SEVERITIES)]
    return _assemble(found)


def routes(channels: Iterable[Channel]) -> list[Route]:
    """What the outbox needs to know of each channel."""
    return [Route(channel=c.id, severities=c.severities) for c in channels]


async def notify(channel: Channel, message: Message) -> SendResult:
    """Deliver one message on one channel. Never raises for delivery trouble."""
    if channel._apprise is None or channel._executor is None:
        level = logging.ERROR if message.severity is Severity.CRITICAL else logging.WARNING
        alert_log.log(level, "%s\n%s", message.title, message.body)
        return SendResult(ok=True)
    loop = asyncio.get_running_loop()
    title = channel.title_for(message)
    work = functools.partial(_notify, channel._apprise, channel._redact, message, title)
    try:
        return await loop.run_in_executor(channel._executor, work)
    except RuntimeError as exc:  # the executor was shut down
        return SendResult(ok=False, error=f"channel closed: {exc}")


def close_channels(channels: Iterable[Channel], *, wait: bool = False) -> None:
    """Stop each channel's thread; queued sends are cancelled, a running one finishes."""
    for channel in channels:
        if channel._executor is not None:
            channel._executor.shutdown(wait=wait, cancel_futures=True)
        if channel._log_filter is not None:
            _apprise_log.removeFilter(channel._log_filter)


# --- building ---------------------------------------------------------------------


def _from_config(
    path: Path,
    asset: apprise.AppriseAsset,
    problems: list[str],
    records: list[logging.LogRecord],
) -> list[tuple[str, apprise.NotifyBase, frozenset[Severity]]]:
    """(URL, plugin, severities) per entry; severity tags route, other tags are ignored."""
    records.clear()
    config = apprise.AppriseConfig(asset=asset)
    config.add(str(path))
    services = config.services()
    errors = [r for r in records if r.levelno >= logging.ERROR]
    if errors:
        # Apprise drops entries it cannot load and says so at ERROR; the message
        # may quote the URL, so only its scheme survives.
        why = "; ".join(dict.fromkeys(_ANY_URL.sub(r"\1://***", r.getMessage()) for r in errors))
        problems.append(f"RECEIVER_APPRISE_CONFIG ({path}): apprise cannot load it: {why}")
    elif not services:
        problems.append(f"RECEIVER_APPRISE_CONFIG ({path}): no notification URLs in it")
    found = []
    for plugin in services:
        tags = {str(t).lower() for t in plugin.tags}
        chosen = frozenset(s for s in Severity if s.value in tags)
        found.append((_url_of(plugin, privacy=False), plugin, chosen or ALL_SEVERITIES))
    return found


def _assemble(
    found: Sequence[tuple[str, apprise.NotifyBase, frozenset[Severity]]],
) -> list[Channel]:
    by_id: dict[str, Channel] = {}
    log_filter = RedactingFilter(Redactor(()))
    for raw, plugin, severities in found:
        channel_id = _channel_id(raw)
        if (seen := by_id.get(channel_id)) is not None:
            # The same URL twice (say, env and config): one channel, both routes.
            by_id[channel_id] = replace(seen, severities=seen.severities | severities)
            continue
        plugin.retry = 0  # the outbox retries; apprise's own retries would multiply them
        plugin.optional = False  # an "optional" failure would read as delivered
        target = apprise.Apprise(asset=plugin.asset)
        target.add(plugin)
        redact = _secret_parts(raw, plugin)
        log_filter.redactor |= redact
        by_id[channel_id] = Channel(
            id=channel_id,
            redacted=_url_of(plugin, privacy=True),
            severities=severities,
            blends_title=plugin.title_maxlen <= 0,
            _apprise=target,
            _executor=ThreadPoolExecutor(1, thread_name_prefix=f"channel-{channel_id}"),
            _redact=redact,
            _log_filter=log_filter,
        )
    _apprise_log.addFilter(log_filter)
    return list(by_id.values())


def _channel_id(raw: str) -> str:
    # Slow, salted hash: the id is shown in APIs and logs and must not help
    # anyone guess a weak password inside the URL.
    digest = hashlib.pbkdf2_hmac("sha256", raw.encode(), b"budget-receiver/channel", 20_000)
    return f"{_scheme(raw)}-{digest[:5].hex()}"


def _url_of(plugin: apprise.NotifyBase, *, privacy: bool) -> str:
    return str(plugin.url(privacy=privacy))  # type: ignore[no-untyped-call]  # untyped in apprise


def _scheme(raw: str) -> str:
    head = raw.split("://", 1)[0]
    return head.lower() if "://" in raw and _SCHEME.fullmatch(head) else "url"


def _scheme_of(raw: str) -> str:
    scheme = _scheme(raw)
    return f"scheme '{scheme}'" if scheme != "url" else "no scheme://"


@contextmanager
def _apprise_logs() -> Iterator[list[logging.LogRecord]]:
    """Collect apprise's log records (instead of printing them) while loading URLs."""
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    saved = _apprise_log.level, _apprise_log.propagate
    _apprise_log.addHandler(handler)
    _apprise_log.propagate = False
    if _apprise_log.getEffectiveLevel() > logging.WARNING:
        _apprise_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # apprise's email plugin imports the deprecated imghdr module on first load.
            warnings.filterwarnings(
                "ignore", message="'imghdr' is deprecated", category=DeprecationWarning
            )
            yield records
    finally:
        _apprise_log.removeHandler(handler)
        _apprise_log.setLevel(saved[0])
        _apprise_log.propagate = saved[1]


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _reasons(records: Iterable[logging.LogRecord]) -> str:
    return "; ".join(dict.fromkeys(r.getMessage() for r in records))


# --- sending ----------------------------------------------------------------------


def _notify(target: apprise.Apprise, redact: Redactor, message: Message, title: str) -> SendResult:
    """Runs in the channel's own thread."""
    try:
        result = target.notify(
            body=message.body,
            title=title,
            notify_type=message.notify_type,
            body_format=apprise.NotifyFormat.MARKDOWN,
        )
    except Exception as exc:  # a plugin bug must not kill the dispatcher
        return SendResult(ok=False, error=redact.text(f"{type(exc).__name__}: {exc}")[:_MAX_ERROR])
    with result:
        if result:
            return SendResult(ok=True)
        lines = [
            entry.message
            for entry in result.logs()
            if entry.level in ("WARNING", "ERROR", "CRITICAL")
        ]
        why = "; ".join(dict.fromkeys(lines)) or f"apprise reported {result.status.name.lower()}"
        return SendResult(ok=False, error=redact.text(why)[:_MAX_ERROR])


# --- secrets ----------------------------------------------------------------------


def _secret_parts(raw: str, plugin: apprise.NotifyBase) -> Redactor:
    """The URL pieces apprise masks in its privacy form (plus any password)."""
    public = _url_of(plugin, privacy=True)
    shown = public + " " + unquote(public)
    secret = {raw, _url_of(plugin, privacy=False)}
    for url in (raw, _url_of(plugin, privacy=False)):
        pieces = url_secrets(url, path=True)
        secret.update(p for p in pieces if p not in shown)
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            secret.update({password, unquote(password)})
    return Redactor(secret)
