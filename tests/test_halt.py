"""The halt call against a real local HTTP server: what is sent, and how each answer counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from receiver.app import halt_target
from receiver.errors import ConfigError
from receiver.halt import HaltCaller, HaltOutcome, HaltResult
from receiver.settings import Settings
from tests.servers import HttpSink, Reply

TOKEN = "halt-token-0123456789abcdef"
KEY = "halt:t-42:evt-1"
PAYLOAD = {
    "task_id": "t-42",
    "reason": "budget_reached",
    "spent": "100.00",
    "budget": "100.00",
    "currency": "USD",
}
PATH = "/v1/tasks/t-42/halt"


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    with HttpSink() as server:
        yield server


def make_settings(sink: HttpSink, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allow_unsigned": True,
        "halt_url": SecretStr(sink.url + "/v1/tasks/{task_id}/halt"),
        "halt_token": SecretStr(TOKEN),
        "halt_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return Settings.model_validate(values)  # from these values only, not the environment


def caller(settings: Settings, client: httpx.AsyncClient, **kw: Any) -> HaltCaller:
    """The halt target the daemon builds from these settings."""
    target = halt_target(settings, client, **kw)
    assert isinstance(target, HaltCaller)
    return target


def call(
    aio: asyncio.Runner,
    settings: Settings,
    payload: dict[str, Any] = PAYLOAD,
    **kw: Any,
) -> HaltResult:
    async def go() -> HaltResult:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await caller(settings, client, **kw).call(payload, KEY)

    return aio.run(go())


def test_2xx_is_done_and_the_request_carries_body_key_and_token(
    sink: HttpSink, aio: asyncio.Runner
) -> None:
    """200: DONE. POST to the templated URL, JSON body, Idempotency-Key, Bearer token."""
    result = call(aio, make_settings(sink))
    assert result == HaltResult(HaltOutcome.DONE, 200)
    (request,) = sink.requests
    assert request.method == "POST"
    assert request.path == PATH
    assert request.json == PAYLOAD
    assert request.headers["idempotency-key"] == KEY
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"


def test_the_idempotency_key_is_the_same_on_every_retry(
    sink: HttpSink, aio: asyncio.Runner
) -> None:
    """Two attempts of one halt send the same Idempotency-Key."""
    sink.script(PATH, 503)
    settings = make_settings(sink)
    assert call(aio, settings).outcome is HaltOutcome.RETRY
    assert call(aio, settings).outcome is HaltOutcome.DONE
    assert [r.headers["idempotency-key"] for r in sink.requests] == [KEY, KEY]


@pytest.mark.parametrize("status", [201, 202, 204])
def test_any_2xx_is_done(sink: HttpSink, aio: asyncio.Runner, status: int) -> None:
    """Every 2xx counts as halted."""
    sink.script(PATH, Reply(status=status, body=b""))
    assert call(aio, make_settings(sink)) == HaltResult(HaltOutcome.DONE, status)


@pytest.mark.parametrize("status", [404, 409, 410])
def test_already_gone_counts_as_halted(sink: HttpSink, aio: asyncio.Runner, status: int) -> None:
    """404/409/410: the task is gone or already stopped: GONE."""
    sink.script(PATH, status)
    assert call(aio, make_settings(sink)) == HaltResult(HaltOutcome.GONE, status)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_server_trouble_is_retried(sink: HttpSink, aio: asyncio.Runner, status: int) -> None:
    """408/429/5xx: RETRY, with the status in the error text."""
    sink.script(PATH, status)
    result = call(aio, make_settings(sink))
    assert result.outcome is HaltOutcome.RETRY
    assert result.status == status
    assert result.error is not None and result.error.startswith(f"HTTP {status}")
    assert result.retry_after is None


def test_429_passes_retry_after_seconds_on(sink: HttpSink, aio: asyncio.Runner) -> None:
    """429 with Retry-After: 7 -> RETRY with retry_after 7."""
    sink.script(PATH, Reply.retry_after("7"))
    result = call(aio, make_settings(sink))
    assert (result.outcome, result.status, result.retry_after) == (HaltOutcome.RETRY, 429, 7.0)


def test_503_passes_a_retry_after_date_on(sink: HttpSink, aio: asyncio.Runner) -> None:
    """503 with an HTTP-date Retry-After: seconds from the caller's clock."""
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    sink.script(PATH, Reply.retry_after("Wed, 21 Oct 2015 07:28:30 GMT", status=503))
    result = call(aio, make_settings(sink), clock=lambda: now)
    assert (result.outcome, result.retry_after) == (HaltOutcome.RETRY, 30.0)


def test_a_hang_past_the_timeout_is_retried(sink: HttpSink, aio: asyncio.Runner) -> None:
    """No answer within halt_timeout_seconds: RETRY, without waiting for the server."""
    sink.script(PATH, Reply.hanging(5.0))
    started = time.monotonic()
    result = call(aio, make_settings(sink, halt_timeout_seconds=0.3))
    assert time.monotonic() - started < 5.0
    assert result.outcome is HaltOutcome.RETRY
    assert result.status is None
    assert result.error is not None and "no answer within 0.3 s" in result.error
    assert len(sink.requests) == 1  # it did arrive; the answer did not


def test_connection_refused_is_retried_and_recovers(sink: HttpSink, aio: asyncio.Runner) -> None:
    """Nobody listening: RETRY. Once the server is back on its port: DONE."""
    settings = make_settings(sink)
    sink.refuse()
    refused = call(aio, settings)
    assert refused.outcome is HaltOutcome.RETRY
    assert refused.status is None
    assert refused.error is not None and "ConnectError" in refused.error
    sink.listen()
    assert call(aio, settings).outcome is HaltOutcome.DONE
    assert len(sink.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 405, 422])
def test_other_4xx_is_rejected(sink: HttpSink, aio: asyncio.Runner, status: int) -> None:
    """Other 4xx: REJECTED, retrying would not help."""
    sink.script(PATH, status)
    result = call(aio, make_settings(sink))
    assert (result.outcome, result.status) == (HaltOutcome.REJECTED, status)
    assert result.error is not None and f"HTTP {status}" in result.error


def test_401_points_at_the_token(sink: HttpSink, aio: asyncio.Runner) -> None:
    """A refused token says which setting to check."""
    sink.script(PATH, 401)
    result = call(aio, make_settings(sink))
    assert result.error is not None and "RECEIVER_HALT_TOKEN" in result.error


def test_a_redirect_is_rejected_with_a_hint(sink: HttpSink, aio: asyncio.Runner) -> None:
    """3xx is not followed (a POST must not turn into a GET): REJECTED, fix the URL."""
    sink.script(PATH, Reply(status=302, headers={"Location": "/elsewhere"}))
    result = call(aio, make_settings(sink))
    assert result.outcome is HaltOutcome.REJECTED
    assert result.error is not None and "final URL" in result.error
    assert [r.path for r in sink.requests] == [PATH]


def test_task_id_is_url_encoded_into_the_path(sink: HttpSink, aio: asyncio.Runner) -> None:
    """A task id with '/' and spaces stays one path segment."""
    payload = dict(PAYLOAD, task_id="team a/run 7")
    assert call(aio, make_settings(sink), payload).outcome is HaltOutcome.DONE
    (request,) = sink.requests
    assert request.path == "/v1/tasks/team%20a%2Frun%207/halt"
    assert request.json["task_id"] == "team a/run 7"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_the_configured_method_is_used(sink: HttpSink, aio: asyncio.Runner, method: str) -> None:
    """RECEIVER_HALT_METHOD decides the verb; the JSON body goes along."""
    assert call(aio, make_settings(sink, halt_method=method)).outcome is HaltOutcome.DONE
    (request,) = sink.requests
    assert request.method == method
    assert request.json == PAYLOAD


def test_no_token_no_authorization_header(sink: HttpSink, aio: asyncio.Runner) -> None:
    """Without RECEIVER_HALT_TOKEN no Authorization header is sent."""
    assert call(aio, make_settings(sink, halt_token=None)).outcome is HaltOutcome.DONE
    assert "authorization" not in sink.requests[0].headers


def test_errors_never_hold_the_token_or_url_credentials(
    sink: HttpSink, aio: asyncio.Runner
) -> None:
    """Even when the server echoes them back, error texts hide token, password and query."""
    url = (
        f"http://halter:pw-in-the-url@127.0.0.1:{sink.port}/v1/tasks/{{task_id}}/halt"
        "?api_key=query-secret-42"
    )
    echo = f"bad auth Bearer {TOKEN} pw-in-the-url query-secret-42".encode()
    sink.script(PATH, Reply(status=500, body=echo))
    settings = make_settings(sink, halt_url=SecretStr(url))
    result = call(aio, settings)
    assert result.outcome is HaltOutcome.RETRY
    sink.refuse()
    refused = call(aio, settings)
    for error in (result.error, refused.error):
        assert error
        for secret in (TOKEN, "pw-in-the-url", "query-secret-42"):
            assert secret not in error


def test_a_non_http_url_is_a_config_error(sink: HttpSink, aio: asyncio.Runner) -> None:
    """RECEIVER_HALT_URL must be http(s)."""
    settings = make_settings(sink, halt_url=SecretStr("ftp://127.0.0.1/{task_id}"))

    async def build() -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            halt_target(settings, client)

    with pytest.raises(ConfigError, match="RECEIVER_HALT_URL"):
        aio.run(build())


def test_a_key_stored_with_non_ascii_text_is_sent_ascii(
    sink: HttpSink, aio: asyncio.Runner
) -> None:
    """Rows stored by older versions may carry keys made of raw ids: sent percent-encoded,
    the same on every retry, never a UnicodeEncodeError."""

    async def go() -> list[HaltResult]:
        async with httpx.AsyncClient(trust_env=False) as client:
            halt = caller(make_settings(sink), client)
            return [await halt.call(PAYLOAD, "halt:ümlaut:msg-ü\n") for _ in range(2)]

    assert [r.outcome for r in aio.run(go())] == [HaltOutcome.DONE, HaltOutcome.DONE]
    keys = {r.headers["idempotency-key"] for r in sink.requests}
    assert keys == {"halt%3A%C3%BCmlaut%3Amsg-%C3%BC%0A"}


@pytest.mark.parametrize("task_id", [".", ".."])
def test_dot_segment_ids_are_never_called(
    sink: HttpSink, aio: asyncio.Runner, task_id: str
) -> None:
    """A task stored before ingest refused '.' and '..': no call to another path with the
    token; REJECTED at once, so people are told to halt it by hand."""
    result = call(aio, make_settings(sink), dict(PAYLOAD, task_id=task_id))
    assert result.outcome is HaltOutcome.REJECTED
    assert result.error is not None and "one path segment" in result.error
    assert sink.requests == []


def test_a_failure_that_is_no_http_answer_is_retried_with_its_error(
    sink: HttpSink, aio: asyncio.Runner
) -> None:
    """Anything that goes wrong building or sending the request is an attempt that failed
    (RETRY with the error), never an exception out of the caller."""
    result = call(aio, make_settings(sink), dict(PAYLOAD, spent=object()))
    assert result.outcome is HaltOutcome.RETRY
    assert result.error is not None and "TypeError" in result.error
    assert TOKEN not in result.error
