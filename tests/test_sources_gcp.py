"""Cloud Billing budgets over Pub/Sub push: the parser, OIDC tokens, and the route.

Google's keys are played by a local HTTP server serving a JWKS the tests make.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from receiver.errors import ConfigError, InvalidEvent, SignatureError
from receiver.events import load_json
from receiver.model import EventType
from receiver.sources.gcp import parse_push
from receiver.sources.oidc import Expected, check_claims, parse_jwks, split_jwt, verify_jwt
from tests.fixtures.sources_kit import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    StaticServer,
    app_client,
    budget_data,
    fixture_json,
    google_claims,
    jwks,
    make_jwt,
    pubsub_push,
    rsa_key,
    snapshot,
    task_of,
)

GOOGLE = rsa_key("google-1")
ROTATED = rsa_key("google-2")
EXPECTED = Expected(audience=AUDIENCE, email=SERVICE_ACCOUNT)
SHARED = "gcp-shared-token-0123456789"


def push(data: dict[str, Any], budget_id: str = "b-1", **kw: Any) -> Any:
    """A push body as the route sees it: through JSON, numbers as Decimal."""
    return load_json(json.dumps(pubsub_push(data, budget_id=budget_id, **kw)).encode())


# --- the parser (pure) -----------------------------------------------------------------


def test_documented_notification() -> None:
    """Google's example data: 100.01 of 100.00, alertThresholdExceeded 1.0 -> reached."""
    event = parse_push(push(fixture_json("gcp_budget_data.json"), message_id="42"), now=7.0)
    assert (event.event_id, event.task_id, event.task_name) == (
        "gcp:42", "gcp:b-1:2019-01-01", "name-of-budget",
    )  # fmt: skip
    assert (event.type, event.spent, event.budget, event.threshold, event.currency) == (
        EventType.THRESHOLD, Decimal("100.01"), Decimal("100.00"), Decimal("1.0"), "USD",
    )  # fmt: skip
    assert event.occurred_at == pytest.approx(1795860000.123456)
    assert event.payload["attributes"]["billingAccountId"] == "01D4EE-079462-DFD6EC"


def test_periodic_update_without_threshold_is_spend() -> None:
    event = parse_push(push(budget_data(12.5)), now=7.0)
    assert (event.type, event.spent, event.threshold) == (EventType.SPEND, Decimal("12.5"), None)


def test_a_new_interval_is_a_new_task() -> None:
    november = parse_push(push(budget_data(90, start="2026-11-01T07:00:00Z")), now=0)
    december = parse_push(push(budget_data(3, start="2026-12-01T08:00:00Z")), now=0)
    assert (november.task_id, december.task_id) == ("gcp:b-1:2026-11-01", "gcp:b-1:2026-12-01")


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        ({}, "missing_field"),
        ({"message": {"data": "e30=", "messageId": "1"}}, "missing_field"),
        ({"message": {"attributes": {"budgetId": "b"}, "messageId": "1"}}, "missing_field"),
        (
            {"message": {"attributes": {"budgetId": "b"}, "data": "%%%", "messageId": "1"}},
            "invalid_event",
        ),
        (
            {"message": {"attributes": {"budgetId": "b"}, "data": "WzFd", "messageId": "1"}},
            "invalid_event",
        ),
        (pubsub_push(budget_data(1), budget_id=""), "missing_field"),
        (
            pubsub_push({**budget_data(1), "costIntervalStart": "soon"}, budget_id="b"),
            "missing_field",
        ),
        (pubsub_push(budget_data(-1), budget_id="b"), "invalid_money"),
        (pubsub_push({**budget_data(1), "currencyCode": "usd"}, budget_id="b"), "invalid_currency"),
    ],
)
def test_invalid_pushes_are_refused(doc: Any, code: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_push(load_json(json.dumps(doc).encode()), now=0)
    assert caught.value.code == code


# --- OIDC tokens (pure) --------------------------------------------------------------------


def test_a_good_token_verifies() -> None:
    token = split_jwt(make_jwt(GOOGLE, "k1", google_claims(1000)))
    verify_jwt(token, GOOGLE.public_key(), EXPECTED, 1000)
    verify_jwt(token, GOOGLE.public_key(), EXPECTED, 1000 + 3600 + 59)  # within leeway


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        (google_claims(1000, aud="https://other.example/push"), "wrong_audience"),
        (google_claims(1000, exp=900), "expired_token"),
        (google_claims(1000, iss="https://evil.example"), "invalid_signature"),
        (google_claims(1000, email="someone@else.iam.gserviceaccount.com"), "invalid_signature"),
        (google_claims(1000, email_verified=False), "invalid_signature"),
        (google_claims(1000, iat=2000), "invalid_signature"),
        (google_claims(1000, exp="tomorrow"), "invalid_signature"),
    ],
)
def test_claims_are_checked(claims: dict[str, Any], code: str) -> None:
    with pytest.raises(SignatureError) as caught:
        check_claims(claims, EXPECTED, 1000)
    assert caught.value.code == code


@pytest.mark.parametrize(
    "jwt",
    [
        make_jwt(ROTATED, "k1", google_claims(1000)),  # signed by another key
        make_jwt(GOOGLE, "k1", google_claims(1000), alg="HS256"),
        make_jwt(GOOGLE, "k1", google_claims(1000))[:-4] + "AAAA",
    ],
)
def test_signatures_are_checked(jwt: str) -> None:
    with pytest.raises(SignatureError):
        verify_jwt(split_jwt(jwt), GOOGLE.public_key(), EXPECTED, 1000)


NESTED = base64.urlsafe_b64encode(b"[" * 2000).decode().rstrip("=")  # RecursionError once


@pytest.mark.parametrize(
    "jwt", ["", "a.b", "a.b.c.d", "!!.??.**", "e30.W10.AA", f"{NESTED}.e30.AA", f"e30.{NESTED}.AA"]
)
def test_malformed_tokens(jwt: str) -> None:
    with pytest.raises(SignatureError):
        split_jwt(jwt)


def test_jwks_skips_keys_it_cannot_use() -> None:
    doc = json.loads(jwks((GOOGLE, "k1")))
    doc["keys"] += [{"kty": "EC", "kid": "ec"}, {"kty": "RSA"}, "junk"]
    assert set(parse_jwks(doc)) == {"k1"}


# --- the route, in the real app -----------------------------------------------------------


@pytest.fixture
def keys() -> Iterator[StaticServer]:
    with StaticServer() as server:
        server.serve("/certs", jwks((GOOGLE, "k1")))
        yield server


def oidc(tmp_path: Path, keys: StaticServer, **extra: Any) -> Any:
    return app_client(tmp_path, gcp_audience=AUDIENCE, gcp_service_account=SERVICE_ACCOUNT,
                      gcp_jwks_url=keys.url + "/certs", **extra)  # fmt: skip


def bearer(jwt: str) -> dict[str, str]:
    return {"authorization": f"Bearer {jwt}"}


def test_route_is_404_when_not_configured(tmp_path: Path) -> None:
    with app_client(tmp_path) as client:
        assert client.post("/webhooks/gcp-billing", json={}).status_code == 404


def test_audience_without_service_account_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught, app_client(tmp_path, gcp_audience=AUDIENCE):
        pass
    assert "RECEIVER_GCP_SERVICE_ACCOUNT" in caught.value.problems[0]


def test_pushes_drive_the_task(tmp_path: Path, keys: StaticServer) -> None:
    """Spend update, threshold (warning), redelivery (duplicate), 100 % (halted)."""
    jwt = make_jwt(GOOGLE, "k1", google_claims())
    with oidc(tmp_path, keys) as client:
        url = "/webhooks/gcp-billing"
        first = client.post(
            url, json=pubsub_push(budget_data(20), budget_id="b-9"), headers=bearer(jwt)
        )
        assert first.status_code == 202, first.text
        assert first.json()["task_id"] == "gcp:b-9:2026-11-01" and first.json()["state"] == "active"
        warn = pubsub_push(budget_data(55.5, threshold=0.5), budget_id="b-9")
        assert client.post(url, json=warn, headers=bearer(jwt)).json()["state"] == "warning"
        again = client.post(url, json=warn, headers=bearer(jwt))
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        done = pubsub_push(budget_data(100.02, threshold=1.0), budget_id="b-9")
        assert client.post(url, json=done, headers=bearer(jwt)).json()["state"] == "halted"
        view = task_of(client, "gcp:b-9:2026-11-01")
        assert view is not None
        assert (view["spent"], view["budget"], view["task_name"]) == (
            "100.02",
            "100.0",
            "Agents: research",
        )
        assert len(keys.requested("/certs")) == 1  # cached


def test_rotated_key_is_fetched_on_an_unknown_kid(tmp_path: Path, keys: StaticServer) -> None:
    """A new kid refetches the keys, but not more often than every 30 s (forged kids)."""
    offset = [0.0]
    with oidc(tmp_path, keys, clock=lambda: time.time() + offset[0]) as client:
        url = "/webhooks/gcp-billing"

        def send(key: Any, kid: str, cost: int) -> int:
            body = pubsub_push(budget_data(cost), budget_id="r")
            jwt = make_jwt(key, kid, google_claims(time.time() + offset[0]))
            return int(client.post(url, json=body, headers=bearer(jwt)).status_code)

        assert send(GOOGLE, "k1", 1) == 202
        keys.serve("/certs", jwks((GOOGLE, "k1"), (ROTATED, "k2")))
        assert send(ROTATED, "k2", 2) == 401  # the keys were fetched moments ago
        assert len(keys.requested("/certs")) == 1
        offset[0] = 31.0
        assert send(ROTATED, "k2", 3) == 202
        assert send(GOOGLE, "k1", 4) == 202
        assert len(keys.requested("/certs")) == 2


def _refusals() -> list[tuple[str, dict[str, str], int, str]]:
    now = time.time()
    return [
        ("no token", {}, 401, "unauthorized"),
        ("wrong audience", bearer(make_jwt(GOOGLE, "k1", google_claims(now, aud="https://x.example"))),
         401, "wrong_audience"),
        ("expired", bearer(make_jwt(GOOGLE, "k1", google_claims(now - 7200))), 401, "expired_token"),
        ("other service account", bearer(make_jwt(GOOGLE, "k1", google_claims(now, email="x@y.z"))),
         401, "invalid_signature"),
        ("forged signature", bearer(make_jwt(ROTATED, "k1", google_claims(now))), 401, "invalid_signature"),
        ("unknown key", bearer(make_jwt(ROTATED, "nope", google_claims(now))), 401, "invalid_signature"),
        ("not a JWT", bearer("not-a-jwt"), 401, "invalid_signature"),
        ("shared token while off", {"authorization": f"Bearer {SHARED}"}, 401, "invalid_signature"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(8))
def test_refusals_change_nothing(tmp_path: Path, keys: StaticServer, case: int) -> None:
    name, headers, status, code = _refusals()[case]
    with oidc(tmp_path, keys) as client:
        seed = client.post("/webhooks/gcp-billing", json=pubsub_push(budget_data(10), budget_id="v"),
                           headers=bearer(make_jwt(GOOGLE, "k1", google_claims())))  # fmt: skip
        assert seed.status_code == 202
        before = snapshot(client)
        attack = pubsub_push(budget_data(500, threshold=1.0), budget_id="v")
        response = client.post("/webhooks/gcp-billing", json=attack, headers=headers)
        assert (response.status_code, response.json()["error"]) == (status, code), name
        assert snapshot(client) == before, name


def test_shared_token_mode(tmp_path: Path) -> None:
    """With RECEIVER_GCP_TOKEN alone: Bearer or ?token=; anything else is 401."""
    with app_client(tmp_path, gcp_token=SHARED) as client:
        url = "/webhooks/gcp-billing"
        by_header = client.post(url, json=pubsub_push(budget_data(5), budget_id="s"),
                                headers={"authorization": f"Bearer {SHARED}"})  # fmt: skip
        assert by_header.status_code == 202
        by_query = client.post(
            f"{url}?token={SHARED}", json=pubsub_push(budget_data(6), budget_id="s")
        )
        assert by_query.status_code == 202
        wrong = client.post(f"{url}?token=nope", json=pubsub_push(budget_data(99), budget_id="s"))
        assert wrong.status_code == 401
        jwt = client.post(url, json=pubsub_push(budget_data(99), budget_id="s"),
                          headers=bearer(make_jwt(GOOGLE, "k1", google_claims())))  # fmt: skip
        assert jwt.status_code == 401
        view = task_of(client, "gcp:s:2026-11-01")
        assert view is not None and view["spent"] == "6"


def test_both_modes_together(tmp_path: Path, keys: StaticServer) -> None:
    with oidc(tmp_path, keys, gcp_token=SHARED) as client:
        url = "/webhooks/gcp-billing"
        assert (
            client.post(
                f"{url}?token={SHARED}", json=pubsub_push(budget_data(1), budget_id="m")
            ).status_code
            == 202
        )
        jwt = bearer(make_jwt(GOOGLE, "k1", google_claims()))
        assert (
            client.post(
                url, json=pubsub_push(budget_data(2), budget_id="m"), headers=jwt
            ).status_code
            == 202
        )


def test_unreachable_key_server_is_502(tmp_path: Path) -> None:
    with app_client(tmp_path, gcp_audience=AUDIENCE, gcp_service_account=SERVICE_ACCOUNT,
                    gcp_jwks_url="http://127.0.0.1:9/certs") as client:  # fmt: skip
        response = client.post("/webhooks/gcp-billing", json=pubsub_push(budget_data(1), budget_id="d"),
                               headers=bearer(make_jwt(GOOGLE, "k1", google_claims())))  # fmt: skip
        assert response.status_code == 502 and snapshot(client) == []
