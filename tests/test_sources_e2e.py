"""End to end through `budget-receiver serve`: each real sender drives a task to warning
and then to halted, with alerts delivered to a json:// channel and the halt call made.

Local stand-ins: an HTTPS server with the SNS signing certificate (trusted through
SSL_CERT_FILE, as a deployment trusts its CA bundle), an HTTP server with Google's
JWKS, and an HttpSink as both the apprise json:// channel and the halt endpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
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
        """Wait for ``count`` alerts about ``task_id`` on the json:// channel."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = [
                r.json for r in self.sink.requests_to("/alerts") if task_id in r.json["message"]
            ]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"{count} alert(s) about {task_id} not delivered:\n{self.daemon.log()}"
        )

    def halted(self, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            view = self.daemon.task(task_id)
            if view["state"] == "halted":
                return view
            time.sleep(0.05)
        raise AssertionError(f"{task_id} never halted: {self.daemon.task(task_id)}")

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
