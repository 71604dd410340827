"""End to end through `budget-receiver serve`: each real sender drives a task to warning
and then to halted, with alerts delivered to a json:// channel and the halt call made.
LiteLLM's own alerting code (tests/fixtures/litellm_kit.py) posts its webhooks to the
daemon as LiteLLM's proxy would.

Local stand-ins: an HTTPS server with the SNS signing certificate (trusted through
SSL_CERT_FILE, as a deployment trusts its CA bundle), an HTTP server with Google's
JWKS, and an HttpSink as both the apprise json:// channel and the halt endpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.daemon import Daemon
from tests.fixtures.sources_kit import (
    AUDIENCE,
    CERT_PATH,
    SERVICE_ACCOUNT,
    TOPIC,
    StaticServer,
    TlsFiles,
    budget_data,
    budget_message,
    certificate,
    google_claims,
    jwks,
    make_jwt,
    pem,
    pubsub_push,
    rsa_key,
    sns_confirmation,
    sns_notification,
    sns_sign,
)
from tests.servers import HttpSink
from tests.waiting import poll

pytestmark = pytest.mark.slow

LITELLM_TOKEN = "litellm-shared-token-0123456789"
SNS_KEY = rsa_key("sns-signer")
GOOGLE = rsa_key("google-1")


class Rig:
    def __init__(self, daemon: Daemon, sink: HttpSink, certs: StaticServer) -> None:
        self.daemon, self.sink, self.certs = daemon, sink, certs

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.daemon.url + path, content=json.dumps(body),
                          headers={"content-type": "application/json", **(headers or {})}, timeout=30)  # fmt: skip

    def alerts(self, task_id: str, count: int) -> list[dict[str, Any]]:
        return wait_alerts(self.sink, self.daemon, task_id, count)

    def halted(self, task_id: str) -> dict[str, Any]:
        return self.daemon.wait_state(task_id, "halted")

    def check_story(
        self, task_id: str, warn: Callable[[], httpx.Response], reach: Callable[[], httpx.Response]
    ) -> None:
        """warning (one warning alert) -> halting -> halt call -> halted (critical alert)."""
        first = warn()
        assert first.status_code in (200, 202), first.text
        assert first.json()["state"] == "warning", first.text
        [warning] = self.alerts(task_id, 1)
        assert warning["type"] == "warning" and "Budget warning" in warning["title"]

        second = reach()
        assert second.status_code in (200, 202), second.text
        assert second.json()["state"] in ("halting", "halted"), second.text
        halt_path = f"/tasks/{quote(task_id, safe='')}/halt"
        [call] = self.sink.wait_for(1, halt_path, timeout=15)
        assert call.json["task_id"] == task_id
        assert call.json["reason"] in ("budget_reached", "limit_reached")
        view = self.halted(task_id)
        assert view["allowed"] is False
        alerts = self.alerts(task_id, 2)
        assert alerts[-1]["type"] == "failure" and "halted" in alerts[-1]["title"].lower()


def wait_alerts(sink: HttpSink, daemon: Daemon, task_id: str, count: int) -> list[dict[str, Any]]:
    """Wait for ``count`` alerts about ``task_id`` on the json:// channel."""
    return poll(
        lambda: [r.json for r in sink.requests_to("/alerts") if task_id in r.json["message"]],
        lambda found: len(found) >= count,
        what=f"{count} alert(s) about {task_id}",
        context=daemon.log,
    )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("sources")
    tls = TlsFiles(workdir / "tls")
    with (
        HttpSink() as sink,
        StaticServer(tls) as certs,
        StaticServer() as google,
        pytest.MonkeyPatch.context() as env,
    ):
        certs.serve(CERT_PATH, pem(certificate(SNS_KEY, "sns.amazonaws.com")))
        certs.serve("/confirm", b"<ConfirmSubscriptionResponse/>")
        google.serve("/oauth2/v3/certs", jwks((GOOGLE, "k1")))
        env.setenv("SSL_CERT_FILE", str(tls.ca_file))  # the daemon inherits it: trusts the test CA
        daemon = Daemon(workdir, {
            "RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{sink.port}/alerts",
            "RECEIVER_HALT_URL": f"{sink.url}/tasks/{{task_id}}/halt",
            "RECEIVER_LITELLM_TOKEN": LITELLM_TOKEN,
            "RECEIVER_LITELLM_ENTITY": "team",
            "RECEIVER_SNS_TOPIC_ARNS": TOPIC,
            "RECEIVER_SNS_CERT_HOST_PATTERN": r"^(127\.0\.0\.1|localhost)$",
            "RECEIVER_GCP_AUDIENCE": AUDIENCE,
            "RECEIVER_GCP_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
            "RECEIVER_GCP_JWKS_URL": google.url + "/oauth2/v3/certs",
        }).start()  # fmt: skip
        try:
            yield Rig(daemon, sink, certs)
        finally:
            daemon.stop()


def test_litellm_team_budget(rig: Rig) -> None:
    def alert(event: str, spend: float) -> dict[str, Any]:
        return {"spend": spend, "max_budget": 50.0, "soft_budget": None, "token": None,
                "customer_id": None, "user_id": None, "team_id": "team-7f3a", "team_alias": "growth",
                "user_email": None, "key_alias": None, "projected_exceeded_date": None,
                "projected_spend": None, "event": event, "event_group": "team",
                "event_message": "Team Budget: " + event}  # fmt: skip

    path = f"/webhooks/litellm?token={LITELLM_TOKEN}"
    rig.check_story(
        "litellm:team:growth",
        lambda: rig.post(path, alert("threshold_crossed", 43.1)),
        lambda: rig.post(path, alert("budget_crossed", 50.02)),
    )
    wrong = rig.post(
        "/webhooks/litellm?token=not-the-token-0123456789", alert("budget_crossed", 99)
    )
    assert wrong.status_code == 401


def test_aws_budgets_over_sns(rig: Rig) -> None:
    cert_url = rig.certs.url + CERT_PATH
    confirm = sns_confirmation(
        "SubscriptionConfirmation", cert_url, rig.certs.url + "/confirm?Token=t"
    )
    assert rig.post("/webhooks/aws-budgets", sns_sign(confirm, SNS_KEY)).status_code == 200
    assert rig.certs.requested("/confirm") == ["/confirm?Token=t"]

    def notify(threshold: str, amount: str) -> httpx.Response:
        message = budget_message("agents-prod", threshold=threshold, amount=amount)
        return rig.post(
            "/webhooks/aws-budgets", sns_sign(sns_notification(message, cert_url), SNS_KEY, "2")
        )

    rig.check_story(
        "aws:agents-prod",
        lambda: notify("> $80.00", "$81.37"),
        lambda: notify("> $100.00", "$100.40"),
    )
    foreign = sns_sign(
        sns_notification(budget_message("agents-prod"), "https://evil.example" + CERT_PATH), SNS_KEY
    )
    assert rig.post("/webhooks/aws-budgets", foreign).status_code == 401


def test_gcp_billing_over_pubsub(rig: Rig) -> None:
    def push(cost: float, threshold: float) -> httpx.Response:
        jwt = make_jwt(GOOGLE, "k1", google_claims())
        body = pubsub_push(budget_data(cost, 200.0, threshold=threshold), budget_id="9f1c-77")
        return rig.post("/webhooks/gcp-billing", body, {"authorization": f"Bearer {jwt}"})

    rig.check_story("gcp:9f1c-77:2026-11-01", lambda: push(161.0, 0.8), lambda: push(200.5, 1.0))
    expired = make_jwt(GOOGLE, "k1", google_claims(time.time() - 7200))
    body = pubsub_push(budget_data(999, 200.0, threshold=1.0), budget_id="other")
    assert (
        rig.post("/webhooks/gcp-billing", body, {"authorization": f"Bearer {expired}"}).status_code
        == 401
    )


# --- LiteLLM's own alerting code against the daemon ----------------------------------------


class LiteLLMRig:
    """Two daemons, one tracking LiteLLM keys and one its customers; LiteLLM posts to them."""

    def __init__(self, kit: ModuleType, keys: Daemon, customers: Daemon, sink: HttpSink) -> None:
        self.kit, self.keys, self.customers, self.sink = kit, keys, customers, sink

    def litellm(self, daemon: Daemon) -> Any:
        """A LiteLLM proxy's alerting (its own de-duplication cache) aimed at ``daemon``."""
        return self.kit.LiteLLM(f"{daemon.url}/webhooks/litellm?token={LITELLM_TOKEN}")

    def alerts(self, task_id: str, count: int) -> list[dict[str, Any]]:
        return wait_alerts(self.sink, self.keys, task_id, count)

    def halt_calls(self, task_id: str) -> list[Any]:
        return self.sink.requests_to(f"/tasks/{quote(task_id, safe='')}/halt")


@pytest.fixture(scope="module")
def litellm_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMRig]:
    from tests.fixtures import litellm_kit as kit  # imports LiteLLM: only for these tests

    with HttpSink() as sink:
        daemons = []
        for entity in ("key", "customer"):
            settings = {
                "RECEIVER_NOTIFY_URLS": f"json://127.0.0.1:{sink.port}/alerts",
                "RECEIVER_HALT_URL": f"{sink.url}/tasks/{{task_id}}/halt",
                "RECEIVER_LITELLM_TOKEN": LITELLM_TOKEN,
                "RECEIVER_LITELLM_ENTITY": entity,
            }
            daemons.append(Daemon(tmp_path_factory.mktemp(entity), settings).start())
        try:
            yield LiteLLMRig(kit, daemons[0], daemons[1], sink)
        finally:
            for daemon in daemons:
                daemon.stop()
        # Importing and driving LiteLLM reached nothing but this machine.
        assert kit.outside() == []


def test_litellm_customer_requests_add_up_and_halt(litellm_rig: LiteLLMRig) -> None:
    """Four requests of 0.02-0.03 against a customer budget of 0.04: each one's cost counts,
    so the second one halts the customer's task (one halt call), and later ones are counted."""
    litellm = litellm_rig.litellm(litellm_rig.customers)
    for cost in (0.02, 0.03, 0.025, 0.02):
        litellm.customer_request(cost, customer="acme", token="5f1c6b3f2a0e9d84",
                                 key_alias="shop-bot", max_budget=0.04)  # fmt: skip
    assert [p.status for p in litellm.posts] == [200] * 4
    view = litellm_rig.customers.wait_state("litellm:customer:acme", "halted")
    assert (view["spent"], view["budget"], view["allowed"]) == ("0.095", "0.04", False)
    [call] = litellm_rig.sink.wait_for(1, "/tasks/litellm%3Acustomer%3Aacme/halt", timeout=15)
    assert call.json["reason"] == "limit_reached"


def test_litellm_two_equal_requests_count_twice(litellm_rig: LiteLLMRig) -> None:
    """Two requests that cost the same give LiteLLM two identical bodies: two events."""
    litellm = litellm_rig.litellm(litellm_rig.customers)
    for _ in range(2):
        litellm.customer_request(0.025, customer="twins", token="5f1c6b3f2a0e9d84",
                                 key_alias="shop-bot", max_budget=1.0)  # fmt: skip
    assert litellm.posts[0].body == litellm.posts[1].body
    assert [p.status for p in litellm.posts] == [200, 200]
    view = litellm_rig.customers.task("litellm:customer:twins")
    assert Decimal(view["spent"]) == Decimal("0.05") and view["state"] == "active"
    assert len(litellm_rig.customers.events("litellm:customer:twins")) == 2


def test_litellm_soft_budget_warns_as_a_soft_budget(litellm_rig: LiteLLMRig) -> None:
    litellm = litellm_rig.litellm(litellm_rig.keys)
    litellm.key_soft_budget(51.0, token="5f1c6b3f2a0e9d85", key_alias="soft-key",
                            soft_budget=50.0, max_budget=100.0)  # fmt: skip
    assert [p.status for p in litellm.posts] == [200]
    view = litellm_rig.keys.task("litellm:key:soft-key")
    assert (view["budget"], view["spent"], view["state"]) == ("100.0", "51.0", "warning")
    [warning] = litellm_rig.alerts("litellm:key:soft-key", 1)
    assert warning["type"] == "warning"
    assert "soft budget" in warning["title"].lower() and "50.0 USD" in warning["message"]


def test_litellm_projection_warns_and_changes_nothing(litellm_rig: LiteLLMRig) -> None:
    """A key with a real budget of 100 and a soft budget of 56: LiteLLM projects past the soft
    budget and, spend being past it, labels the alert budget_crossed with max_budget 56. The
    key is not halted, its budget stays 100, and one forecast warning says "soft budget"."""
    litellm = litellm_rig.litellm(litellm_rig.keys)
    task_id = "litellm:key:forecast-key"
    litellm.key_soft_budget(57.0, token="5f1c6b3f2a0e9d86", key_alias="forecast-key",
                            soft_budget=56.0, max_budget=100.0)  # fmt: skip
    litellm_rig.alerts(task_id, 1)
    before = litellm_rig.keys.task(task_id)
    litellm.key_projection(60.0, token="5f1c6b3f2a0e9d86", key_alias="forecast-key",
                           soft_budget=56.0, projected_spend=130.5, exceeds_on="2026-11-28")  # fmt: skip
    assert json.loads(litellm.posts[-1].body)["event"] == "budget_crossed"  # LiteLLM's label
    assert [p.status for p in litellm.posts] == [200, 200]
    [forecast] = [a for a in litellm_rig.alerts(task_id, 2) if "Forecast" in a["title"]]
    assert forecast["type"] == "warning"
    assert "soft budget" in forecast["message"] and "2026-11-28" in forecast["message"]
    assert "130.5 USD" in forecast["message"]
    after = litellm_rig.keys.task(task_id)
    assert after == before | {"updated_at": after["updated_at"]}
    assert (after["budget"], after["state"], after["allowed"]) == ("100.0", "warning", True)
    assert litellm_rig.halt_calls(task_id) == []


def test_litellm_webhook_test_is_answered_and_applied_to_nothing(litellm_rig: LiteLLMRig) -> None:
    """GET /health/services?service=webhook with the master key: 200, logged, no task."""
    daemon = litellm_rig.keys
    before = daemon.api("GET", "/v1/tasks").json()["tasks"]
    litellm = litellm_rig.litellm(daemon)
    litellm.webhook_test()
    assert [p.status for p in litellm.posts] == [200]
    assert json.loads(litellm.posts[0].body)["event"] == "budget_crossed"
    assert daemon.api("GET", "/v1/tasks").json()["tasks"] == before
    hashed = hashlib.sha256(b"litellm_proxy_master_key").hexdigest()[:16]
    assert daemon.api("GET", f"/v1/tasks/litellm:key:{hashed}").status_code == 404
    poll(
        daemon.log,
        lambda text: "LiteLLM's webhook test" in text,
        what="the log line about LiteLLM's webhook test",
        context=lambda: daemon.log()[-3000:],
    )


def test_litellm_sends_one_threshold_alert_a_day(litellm_rig: LiteLLMRig) -> None:
    """As docs/sources.md says: after the 85 % alert LiteLLM's cache holds back the 95 % one
    for 24 h, so the receiver hears of 96 % only from the next alert (here: budget_crossed)."""
    litellm = litellm_rig.litellm(litellm_rig.keys)
    for spend in (86.0, 96.0, 100.5):
        litellm.key_spend(spend, token="5f1c6b3f2a0e9d87", key_alias="daily-key",
                          max_budget=100.0)  # fmt: skip
    events = [json.loads(p.body)["event"] for p in litellm.posts]
    assert events == ["threshold_crossed", "budget_crossed"]
    view = litellm_rig.keys.wait_state("litellm:key:daily-key", "halted")
    assert view["spent"] == "100.5"


def test_litellm_projection_holds_back_the_keys_real_budget_crossed(
    litellm_rig: LiteLLMRig,
) -> None:
    """As docs/sources.md warns: a projection LiteLLM relabelled budget_crossed takes the
    key's budget_crossed cache entry, so the real one at the limit is not sent for 24 h."""
    litellm = litellm_rig.litellm(litellm_rig.keys)
    litellm.key_projection(60.0, token="5f1c6b3f2a0e9d88", key_alias="held-key",
                           soft_budget=56.0, projected_spend=130.5, exceeds_on="2026-11-28")  # fmt: skip
    litellm.key_spend(100.5, token="5f1c6b3f2a0e9d88", key_alias="held-key", max_budget=100.0)
    assert [json.loads(p.body)["event"] for p in litellm.posts] == ["budget_crossed"]
    view = litellm_rig.keys.task("litellm:key:held-key")
    assert (view["state"], view["budget"]) == ("active", None)  # told only of the forecast
