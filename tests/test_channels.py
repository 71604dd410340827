"""Channels: real apprise plugins delivering to real local servers (SMTP, webhooks).

Apprise's Slack plugin only posts to hooks.slack.com, so it cannot be pointed at a
local server; Mattermost's incoming webhook (``mmost://``) takes the same
Slack-format JSON (``{"text": ...}``) at any host, and stands in for it here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import apprise
import pytest

from receiver.alerts import Message, render
from receiver.app import channels_of
from receiver.channels import (
    ALL_SEVERITIES,
    LOG_CHANNEL,
    Channel,
    SendResult,
    close_channels,
    notify,
    routes,
)
from receiver.errors import ConfigError
from receiver.model import Alert, AlertKind, BudgetEvent, EventType, Severity, Task, TaskState
from receiver.outbox import rows_for
from receiver.settings import Settings
from tests.servers import HttpSink, Reply, SmtpSink

NOW = 1_795_860_000.0


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apprise uses requests, which honours proxy variables: keep traffic on 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def settings(*urls: str, config: Path | None = None) -> Settings:
    """Settings from these values only (model_validate does not read the environment)."""
    return Settings.model_validate(
        {"allow_unsigned": True, "notify_urls": list(urls), "apprise_config": config}
    )


@pytest.fixture
def built() -> Iterator[list[list[Channel]]]:
    """Channels built by a test, closed after it."""
    made: list[list[Channel]] = []
    yield made
    for channels in made:
        close_channels(channels, wait=True)


def build(built: list[list[Channel]], *urls: str, config: Path | None = None) -> list[Channel]:
    channels = channels_of(settings(*urls, config=config))
    built.append(channels)
    return channels


def alert(kind: AlertKind = AlertKind.THRESHOLD, severity: Severity = Severity.WARNING) -> Message:
    task = Task(
        task_id="t-42",
        source="budget",
        state=TaskState.WARNING,
        spent=Decimal("80.00"),
        created_at=NOW,
        updated_at=NOW,
        budget=Decimal("100.00"),
        currency="USD",
        task_name="Purchase via AI Agent",
        agent_id="agent-7",
    )
    event = BudgetEvent("evt-1", "budget", EventType.SPEND, "t-42", NOW)
    effect = Alert(kind, severity, Decimal("0.8") if kind is AlertKind.THRESHOLD else None)
    (row,) = rows_for(task, [effect], event, routes([_everything()]), NOW)
    return render(row.payload)


def _everything() -> Channel:
    return Channel("any", "any://", ALL_SEVERITIES)


def deliver(aio: asyncio.Runner, channel: Channel, message: Message | None = None) -> SendResult:
    return aio.run(notify(channel, message or alert()))


def test_email_reaches_a_plain_smtp_server(
    smtp: SmtpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """mailto:// (mode=insecure, no login) delivers subject = title, body = the alert."""
    (channel,) = build(built, smtp.url(to="oncall@example.com"))
    assert channel.id.startswith("mailto-")
    assert channel.severities == ALL_SEVERITIES
    message = alert()
    assert deliver(aio, channel, message) == SendResult(ok=True)
    (mail,) = smtp.wait_for(1)
    assert mail["Subject"] == message.title
    assert "oncall@example.com" in mail["To"]
    assert smtp.envelopes == [("alerts@example.com", ["oncall@example.com"])]
    text = mail.get_body(preferencelist=("plain", "html"))
    assert text is not None
    content = text.get_content()
    for fact in ("Purchase via AI Agent", "t-42", "agent-7", "80.00 USD of 100.00 USD"):
        assert fact in content


def test_json_webhook_gets_title_body_and_type(
    sink: HttpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """json:// posts {title, message, type} with the Markdown body as is."""
    (channel,) = build(built, f"json://127.0.0.1:{sink.port}/hooks/ops")
    message = alert(AlertKind.HALTED, Severity.CRITICAL)
    assert deliver(aio, channel, message).ok
    (request,) = sink.requests
    assert (request.method, request.path) == ("POST", "/hooks/ops")
    assert request.json["title"] == message.title
    assert request.json["message"] == message.body
    assert request.json["type"] == "failure"


def test_slack_format_webhook(
    sink: HttpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """A Slack-format incoming webhook (Mattermost's) gets {"text": title + body}."""
    (channel,) = build(built, f"mmost://127.0.0.1:{sink.port}/hooktoken123")
    assert "hooktoken123" not in channel.redacted
    message = alert()
    assert deliver(aio, channel, message).ok
    (request,) = sink.requests
    assert request.path == "/hooks/hooktoken123"
    assert request.json["text"].startswith(message.title)
    assert "80.00 USD of 100.00 USD" in request.json["text"]


def test_a_failure_is_reported_once_not_retried_by_apprise(
    sink: HttpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """apprise's own retry=3 and optional=yes are overridden: one try, the failure shows."""
    (channel,) = build(built, f"json://127.0.0.1:{sink.port}/down?retry=3&wait=0&optional=yes")
    sink.script("/down", 500, 500, 500, 500)
    result = deliver(aio, channel)
    assert not result.ok
    assert result.error is not None and "500" in result.error
    assert len(sink.requests) == 1


def test_connection_refused_is_a_failure_not_an_exception(
    sink: HttpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """Nobody listening: send returns ok=False with apprise's reason."""
    (channel,) = build(built, f"json://127.0.0.1:{sink.port}/hook")
    sink.refuse()
    result = deliver(aio, channel)
    assert not result.ok and result.error


def test_a_hanging_channel_does_not_delay_another(
    sink: HttpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """Each channel sends on its own thread: a fast one finishes while a slow one hangs."""
    slow, fast = build(
        built, f"json://127.0.0.1:{sink.port}/slow", f"json://127.0.0.1:{sink.port}/fast"
    )
    sink.script("/slow", Reply.hanging(1.0))

    async def both() -> tuple[SendResult, SendResult, bool]:
        slow_send = asyncio.create_task(notify(slow, alert()))
        await asyncio.to_thread(sink.wait_for, 1, "/slow")  # the slow request is in flight
        fast_result = await notify(fast, alert())
        slow_pending = not slow_send.done()
        return await slow_send, fast_result, slow_pending

    slow_result, fast_result, slow_pending_when_fast_done = aio.run(both())
    assert fast_result.ok and slow_result.ok
    assert slow_pending_when_fast_done
    assert [r.path for r in sink.requests] == ["/slow", "/fast"]


def test_tags_in_an_apprise_config_route_severities(
    tmp_path: Path, sink: HttpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """YAML config: tagged URLs take those severities only, untagged take all."""
    base = f"json://127.0.0.1:{sink.port}"
    config = tmp_path / "apprise.yml"
    config.write_text(
        "urls:\n"
        f"  - {base}/pager:\n"
        "      tag: critical\n"
        f"  - {base}/chat:\n"
        "      tag: info, warning, team-a\n"
        f"  - {base}/archive\n"
        f"  - {base}/team:\n"
        "      tag: team-b\n"
    )
    channels = build(built, config=config)
    by_path = {c.redacted.split("?")[0].rsplit("/", 1)[1]: c for c in channels}
    assert by_path["pager"].severities == {Severity.CRITICAL}
    assert by_path["chat"].severities == {Severity.INFO, Severity.WARNING}
    assert by_path["archive"].severities == ALL_SEVERITIES
    assert by_path["team"].severities == ALL_SEVERITIES  # no severity tag: everything

    task = Task("t-1", "budget", TaskState.HALTED, Decimal(100), NOW, NOW, Decimal(100), "USD")
    event = BudgetEvent("evt-9", "budget", EventType.SPEND, "t-1", NOW)
    halted = Alert(AlertKind.HALTED, Severity.CRITICAL)
    owed = {row.channel for row in rows_for(task, [halted], event, routes(channels), NOW)}
    assert owed == {by_path[p].id for p in ("pager", "archive", "team")}


def test_env_urls_and_config_together(
    tmp_path: Path, sink: HttpSink, built: list[list[Channel]]
) -> None:
    """RECEIVER_NOTIFY_URLS and the config file add up; a URL listed twice is one channel."""
    config = tmp_path / "apprise.txt"
    config.write_text(f"critical=json://127.0.0.1:{sink.port}/pager\n")
    url = f"json://127.0.0.1:{sink.port}/all"
    channels = build(built, url, url, config=config)
    assert sorted(len(c.severities) for c in channels) == [1, 3]


def test_channel_ids_are_stable_and_distinct(sink: HttpSink, built: list[list[Channel]]) -> None:
    """The same URL gets the same id on every start; different URLs get different ids."""
    urls = [f"json://127.0.0.1:{sink.port}/a", f"json://127.0.0.1:{sink.port}/b"]
    first = [c.id for c in build(built, *urls)]
    again = [c.id for c in build(built, *urls)]
    assert first == again
    assert len(set(first)) == 2
    assert all(i.startswith("json-") for i in first)


def test_no_url_configured_alerts_go_to_the_log(
    aio: asyncio.Runner, caplog: pytest.LogCaptureFixture
) -> None:
    """Without channels, one "log" channel writes alerts to receiver.alerts."""
    (channel,) = channels_of(settings())
    assert channel.id == LOG_CHANNEL
    assert routes([channel])[0].severities == ALL_SEVERITIES
    with caplog.at_level(logging.INFO, logger="receiver.alerts"):
        assert deliver(aio, channel, alert()).ok
        assert deliver(aio, channel, alert(AlertKind.HALTED, Severity.CRITICAL)).ok
    warning, error = [r for r in caplog.records if r.name == "receiver.alerts"]
    assert warning.levelno == logging.WARNING and "80% of its budget" in warning.getMessage()
    assert error.levelno == logging.ERROR and "Task halted" in error.getMessage()


def test_a_bad_url_stops_start_up_without_its_secret() -> None:
    """Every URL apprise cannot load is named by position and scheme; its secret is not shown."""
    with pytest.raises(ConfigError) as caught:
        channels_of(
            settings(
                "json://127.0.0.1:9/fine",
                "slack://T1JJ3T3L2/A1BRTD4JD",  # the third token is missing
                "nosuchscheme://admin:hunter2-secret@example.com/x",
                "xoxb-bare-token-secret",
                "mailto://user:smtp-pw-secret@example.com?mode=bogus",
            )
        )
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "RECEIVER_NOTIFY_URLS entry 2 (scheme 'slack')",
        "RECEIVER_NOTIFY_URLS entry 3 (scheme 'nosuchscheme')",
        "RECEIVER_NOTIFY_URLS entry 4 (no scheme",
        "RECEIVER_NOTIFY_URLS entry 5 (scheme 'mailto')",
    ]
    assert all("apprise cannot load it" in p for p in problems)
    text = str(caught.value)
    for secret in ("A1BRTD4JD", "hunter2-secret", "xoxb-bare-token-secret", "smtp-pw-secret"):
        assert secret not in text


def test_a_bad_config_entry_stops_start_up(tmp_path: Path) -> None:
    """An entry apprise drops from a config file is an error too, shown without its URL."""
    config = tmp_path / "apprise.yml"
    config.write_text(
        "urls:\n  - json://127.0.0.1:9/ok\n  - slack://T1JJ3T3L2/A1BRTD4JD:\n      tag: critical\n"
    )
    with pytest.raises(ConfigError) as caught:
        channels_of(settings(config=config))
    (problem,) = caught.value.problems
    assert problem.startswith(f"RECEIVER_APPRISE_CONFIG ({config}): apprise cannot load it")
    assert "A1BRTD4JD" not in problem


def test_an_empty_config_file_stops_start_up(tmp_path: Path) -> None:
    """A config file without URLs is a mistake, not "send nothing"."""
    config = tmp_path / "apprise.yml"
    config.write_text("urls: []\n")
    with pytest.raises(ConfigError, match="no notification URLs"):
        channels_of(settings(config=config))


def test_secrets_stay_out_of_redacted_form_errors_and_logs(
    smtp: SmtpSink,
    aio: asyncio.Runner,
    built: list[list[Channel]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A login that fails (this server has no AUTH): the password is in no output."""
    password = "smtp-pw-7Qx9secret"
    url = f"mailto://alerts:{password}@127.0.0.1:{smtp.port}?mode=insecure&from=alerts@example.com&to=ops@example.com"
    (channel,) = build(built, url)
    with caplog.at_level(logging.DEBUG):
        result = deliver(aio, channel)
    assert not result.ok
    assert result.error
    seen: list[Any] = [channel.id, channel.redacted, result.error, repr(channel)]
    seen += [r.getMessage() for r in caplog.records]
    assert all(password not in str(s) for s in seen)
    assert smtp.messages == []


def test_a_closed_channel_refuses_to_send(
    sink: HttpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """After close_channels, send reports a failure instead of raising."""
    channels = build(built, f"json://127.0.0.1:{sink.port}/hook")
    close_channels(channels)
    result = deliver(aio, channels[0])
    assert not result.ok and result.error and "closed" in result.error
    assert sink.requests == []


EVIL_NAME = "[Click here](https://evil.example) <img src=x onerror=alert(1)>"


def evil_alert() -> Message:
    task = Task(
        task_id="t-evil", source="budget", state=TaskState.HALTED, spent=Decimal("10"),
        created_at=NOW, updated_at=NOW, budget=Decimal("10"), currency="USD",
        task_name=EVIL_NAME,
    )  # fmt: skip
    event = BudgetEvent("evt-9", "budget", EventType.SPEND, "t-evil", NOW)
    effect = Alert(AlertKind.HALTED, Severity.CRITICAL)
    (row,) = rows_for(task, [effect], event, routes([_everything()]), NOW)
    return render(row.payload)


def test_a_title_blended_into_the_body_is_escaped_like_the_body(
    sink: HttpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """Services that put the title into the message text render it as Markdown (or apprise
    converts it to HTML): a task name cannot become a link or an HTML tag there."""
    (channel,) = build(built, f"mmost://127.0.0.1:{sink.port}/hooktoken123")
    assert deliver(aio, channel, evil_alert()).ok
    text = sink.requests[0].json["text"]
    escaped = r"\[Click here\](https://evil.example) \<img src=x onerror=alert(1)\>"
    assert text.split("\n", 1)[0].startswith(f"Task halted: {escaped}")
    assert EVIL_NAME not in text


def test_a_separate_title_stays_plain_text(
    smtp: SmtpSink, aio: asyncio.Runner, built: list[list[Channel]]
) -> None:
    """An email subject is plain text: the name as it is, no stray backslashes; the HTML
    part still holds no tag from the name."""
    (channel,) = build(built, smtp.url())
    assert deliver(aio, channel, evil_alert()).ok
    (mail,) = smtp.wait_for(1)
    assert mail["Subject"].startswith(f"Task halted: {EVIL_NAME}")
    html = mail.get_body(preferencelist=("html",))
    assert html is not None and "<img" not in html.get_content()


def test_titles_apprise_turns_into_html_hold_no_markup(built: list[list[Channel]]) -> None:
    """Telegram blends the title into an HTML message, converting it from Markdown as apprise
    does (checked here with apprise's own converter, no message sent)."""
    from apprise import NotifyFormat
    from apprise.conversion.format import convert_between

    (channel,) = build(built, "tgram://123456789:abcdefghijklmnopqrstuvwxyzABCDEFGHI/-100123")
    title = channel.title_for(evil_alert())
    html = convert_between(NotifyFormat.MARKDOWN, NotifyFormat.HTML, title)
    assert "<img" not in html and "<a " not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_apprise_log_redaction_lives_as_long_as_its_channels() -> None:
    """The filter that masks channel secrets in apprise's own log lines is attached when
    channels are built and detached when they are closed: nothing global, nothing left."""
    apprise_log = logging.getLogger(apprise.LOGGER_NAME)
    before = list(apprise_log.filters)
    channels = channels_of(settings("json://user:pw-secret-123@127.0.0.1:9/hook"))
    added = [f for f in apprise_log.filters if f not in before]
    assert len(added) == 1
    line = "cannot reach json://user:pw-secret-123@127.0.0.1:9/hook"
    record = logging.LogRecord("apprise", logging.WARNING, __file__, 1, line, None, None)
    assert added[0].filter(record)
    assert "pw-secret-123" not in record.getMessage() and "***" in record.getMessage()
    close_channels(channels, wait=True)
    assert apprise_log.filters == before
