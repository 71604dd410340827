"""Odd input from outside, through `budget-receiver serve`: a clear 4xx, never a 5xx.

Each value here once reached an int(), a json.loads or a datetime that raised
something other than the receiver's own errors, and the daemon answered 500
with a traceback in its log. One daemon serves every case: the canonical
route, the task API, the status page, /webhooks/gcp-billing configured for
OIDC with a local stand-in for Google's key server, and /webhooks/aws-budgets
(refused before any certificate is fetched, so nothing leaves the machine).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from receiver.page import COOKIE
from tests.daemon import READ_TOKEN, Daemon, event, running
from tests.fixtures.sources_kit import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    TOPIC,
    StaticServer,
    budget_data,
    google_claims,
    jwks,
    make_jwt,
    pubsub_push,
    rsa_key,
)

pytestmark = pytest.mark.slow

GOOGLE = rsa_key("google-1")


@pytest.fixture(scope="module")
def daemon_(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with StaticServer() as keys:
        keys.serve("/certs", jwks((GOOGLE, "k1")))
        settings = {
            "RECEIVER_GCP_AUDIENCE": AUDIENCE,
            "RECEIVER_GCP_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
            "RECEIVER_GCP_JWKS_URL": keys.url + "/certs",
            "RECEIVER_SNS_TOPIC_ARNS": TOPIC,
        }
        with running(tmp_path_factory.mktemp("hostile"), settings) as d:
            yield d


@pytest.fixture
def daemon(daemon_: Daemon) -> Iterator[Daemon]:
    """The shared daemon; its log must gain no traceback during the test."""
    seen = len(daemon_.log())
    yield daemon_
    added = daemon_.log()[seen:]
    assert "Traceback" not in added, added[-3000:]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def tasks(d: Daemon) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = d.api("GET", "/v1/tasks?limit=500").json()["tasks"]
    return listed


# --- the status page's session cookie -------------------------------------------------------

ODD_COOKIES = {
    "5,000-digit issued time": "read." + "1" * 5000 + "." + "0" * 64,
    "4,000-digit issued time": "admin." + "9" * 4000 + "." + "0" * 64,
    "13-digit issued time": "read." + "1" * 13 + "." + "0" * 64,
    "superscript digit": "read.\u00b2." + "0" * 64,
    "non-ASCII role": "r\u00e9ad.1764000000." + "0" * 64,
    "dots only": "..",
    "a huge value": "x" * 3000,
}


@pytest.mark.parametrize("value", list(ODD_COOKIES.values()), ids=list(ODD_COOKIES))
def test_an_odd_session_cookie_is_simply_not_signed_in(daemon: Daemon, value: str) -> None:
    """The status page sends the visitor to sign in; the cookie is never a 500."""
    response = httpx.get(
        daemon.url + "/",
        headers={"cookie": f"{COOKIE}={value}".encode()},  # raw UTF-8, as browsers send it
        follow_redirects=False,
    )
    assert (response.status_code, response.headers.get("location")) == (303, "/login")


def test_a_real_session_still_opens_the_page(daemon: Daemon) -> None:
    """The bound on the cookie keeps today's sessions working (the test above could pass by
    refusing everything)."""
    with httpx.Client(base_url=daemon.url) as client:
        signed_in = client.post("/login", data={"token": READ_TOKEN})
        assert signed_in.status_code == 303
        assert client.get("/").status_code == 200


# --- the OIDC token of a Pub/Sub push -----------------------------------------------------


def _signed(**claims: Any) -> str:
    return make_jwt(GOOGLE, "k1", google_claims(**claims))


ODD_TOKENS = {
    "header of 2,000 '['": f"{b64url(b'[' * 2000)}.e30.AA",
    "claims of 2,000 '['": f"{b64url(b'{}')}.{b64url(b'[' * 2000)}.AA",
    "header of 2,000 nested objects": b64url(b'{"a":' * 2000) + ".e30.AA",
    "header of 5,000 digits": f"{b64url(b'1' * 5000)}.e30.AA",
    "header not UTF-8": f"{b64url(bytes(range(128, 256)))}.e30.AA",
    "signed, exp of 400 digits": _signed(exp=10**400),
    "signed, iat of 400 digits": _signed(iat=10**400),
    "signed, iss a list": _signed(iss=["https://accounts.google.com"]),
}


@pytest.mark.parametrize("jwt", list(ODD_TOKENS.values()), ids=list(ODD_TOKENS))
def test_an_odd_oidc_token_is_401_and_stores_nothing(daemon: Daemon, jwt: str) -> None:
    """A token that is not a usable JWT (or whose claims are odd) is 401 invalid_signature."""
    before = tasks(daemon)
    push = pubsub_push(budget_data(500, threshold=1.0), budget_id="odd")
    response = httpx.post(daemon.url + "/webhooks/gcp-billing", json=push,
                          headers={"authorization": f"Bearer {jwt}"}, timeout=30)  # fmt: skip
    assert response.status_code == 401, response.text
    assert response.json()["error"] in {"invalid_signature", "wrong_audience"}
    assert response.json()["detail"]
    assert tasks(daemon) == before


def test_a_good_token_still_works(daemon: Daemon) -> None:
    push = pubsub_push(budget_data(5), budget_id="good")
    response = httpx.post(daemon.url + "/webhooks/gcp-billing", json=push,
                          headers={"authorization": f"Bearer {_signed()}"}, timeout=30)  # fmt: skip
    assert response.status_code == 202, response.text


# --- query parameters of the task API -------------------------------------------------------

ODD_QUERIES = [
    "/v1/tasks?limit=" + "1" * 5000,
    "/v1/tasks?limit=%C2%B2",  # "²": a digit to str.isdigit(), not to int()
    "/v1/tasks?limit=%EF%BC%95",  # fullwidth 5
    "/v1/deliveries?limit=" + "9" * 5000,
    "/v1/deliveries?after=%C2%B2",
    "/v1/deliveries?after=" + "1" * 5000,
    "/v1/tasks/t-odd/events?after=%C2%B3",
    "/v1/tasks/t-odd/events?limit=%C2%B9",
]


@pytest.mark.parametrize("path", ODD_QUERIES, ids=[p[:40] for p in ODD_QUERIES])
def test_an_odd_page_query_is_400(daemon: Daemon, path: str) -> None:
    daemon.post_event(event("task.created", "t-odd", budget="10", currency="USD"))
    response = daemon.api("GET", path)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_query")
    assert response.json()["detail"]


# --- times a zone pushes out of range ------------------------------------------------------


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_time_no_view_can_show_is_422_and_stores_nothing(daemon: Daemon, timestamp: str) -> None:
    """Accepted, such an event made its task's timeline a 500 for ever after."""
    tid = f"t-time-{timestamp[:4]}"
    doc = event("task.created", tid, budget="10", currency="USD") | {"timestamp": timestamp}
    response = daemon.post_event(doc)
    assert (response.status_code, response.json()["error"]) == (422, "invalid_event")
    assert daemon.api("GET", f"/v1/tasks/{tid}").status_code == 404


def test_an_out_of_range_publish_time_falls_back_to_now(daemon: Daemon) -> None:
    """Pub/Sub's publishTime is only a hint: out of range, the event is taken at arrival."""
    push = pubsub_push(budget_data(7), budget_id="late")
    push["message"]["publishTime"] = push["message"]["publish_time"] = "9999-12-31T23:59:59-23:59"
    response = httpx.post(daemon.url + "/webhooks/gcp-billing", json=push,
                          headers={"authorization": f"Bearer {_signed()}"}, timeout=30)  # fmt: skip
    assert response.status_code == 202, response.text
    events = daemon.api("GET", f"/v1/tasks/{response.json()['task_id']}/events")
    assert events.status_code == 200
    assert events.json()["events"][0]["occurred_at"].startswith("20")


# --- SNS envelopes -------------------------------------------------------------------------

ODD_ENVELOPES = {
    "Type a list": ({"Type": ["Notification"], "TopicArn": TOPIC}, 422, "missing_field"),
    "Type an object": ({"Type": {"a": 1}, "TopicArn": TOPIC}, 422, "missing_field"),
    "TopicArn a list": ({"Type": "Notification", "TopicArn": [TOPIC]}, 403, "unknown_topic"),
    "TopicArn an object": ({"Type": "Notification", "TopicArn": {}}, 403, "unknown_topic"),
}


@pytest.mark.parametrize("case", list(ODD_ENVELOPES.values()), ids=list(ODD_ENVELOPES))
def test_an_odd_sns_envelope_is_refused_before_anything(
    daemon: Daemon, case: tuple[dict[str, Any], int, str]
) -> None:
    """Unhashable values where SNS puts strings: refused, not a TypeError (a 500)."""
    doc, status, code = case
    response = httpx.post(daemon.url + "/webhooks/aws-budgets", content=json.dumps(doc),
                          headers={"content-type": "text/plain"}, timeout=30)  # fmt: skip
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
