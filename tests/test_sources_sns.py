"""AWS Budgets over Amazon SNS: signatures, certificates, message parsing, and the route.

The route tests run the real app in process against a local HTTPS server that serves
the signing certificate; the app's HTTP client trusts the test CA through
SSL_CERT_FILE, exactly as a deployment would trust its own CA bundle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from receiver.errors import SignatureError
from receiver.model import EventType
from receiver.settings import Settings
from receiver.sources.aws_budgets import budget_event, parse_alert
from receiver.sources.sns_signature import (
    check_certificate_url,
    check_https_url,
    public_key_at,
    string_to_sign,
    verify_signature,
)
from tests.fixtures.sources_kit import (
    CERT_PATH,
    TOPIC,
    StaticServer,
    TlsFiles,
    app_client,
    budget_message,
    certificate,
    fixture_text,
    pem,
    rsa_key,
    snapshot,
    sns_confirmation,
    sns_notification,
    sns_sign,
    task_of,
)

LOCAL_HOSTS = r"^(127\.0\.0\.1|localhost)$"
DEFAULT_HOSTS = re.compile(Settings.model_fields["sns_cert_host_pattern"].default)
SIGNER = rsa_key("sns-signer")


# --- signatures and certificates (pure) --------------------------------------------------


def test_string_to_sign_follows_the_documented_field_order() -> None:
    doc = {"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "hi\nthere",
           "Timestamp": "ts", "Subject": "s", "SigningCertURL": "u", "Signature": "x"}  # fmt: skip
    assert string_to_sign(doc) == (
        b"Message\nhi\nthere\nMessageId\nm\nSubject\ns\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    )
    del doc["Subject"]
    assert b"Subject" not in string_to_sign(doc)
    confirmation = {"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "k", "TopicArn": "t",
                    "Message": "hi", "SubscribeURL": "https://x", "Timestamp": "ts"}  # fmt: skip
    assert string_to_sign(confirmation) == (
        b"Message\nhi\nMessageId\nm\nSubscribeURL\nhttps://x\nTimestamp\nts\nToken\nk\n"
        b"TopicArn\nt\nType\nSubscriptionConfirmation\n"
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions_verify(version: str) -> None:
    doc = sns_sign(sns_notification("hello", "https://x/c.pem", subject="s"), SIGNER, version)
    verify_signature(doc, SIGNER.public_key())


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"Message": "Budget Name: other"}, "invalid_signature"),
        ({"Subject": "changed"}, "invalid_signature"),
        ({"TopicArn": "arn:aws:sns:us-east-1:999999999999:other"}, "invalid_signature"),
        ({"SignatureVersion": "3"}, "invalid_signature"),
        ({"SignatureVersion": "2"}, "invalid_signature"),  # signed as v1
        ({"Signature": "not base64!"}, "invalid_signature"),
        ({"Signature": None}, "missing_signature"),
        ({"Timestamp": None}, "invalid_signature"),
    ],
)
def test_tampered_messages_fail(change: dict[str, Any], code: str) -> None:
    doc = sns_sign(sns_notification("hello", "https://x/c.pem", subject="s"), SIGNER, "1")
    doc.update(change)
    with pytest.raises(SignatureError) as caught:
        verify_signature(doc, SIGNER.public_key())
    assert caught.value.code == code


def test_another_key_fails() -> None:
    doc = sns_sign(sns_notification("hello", "https://x/c.pem"), rsa_key("intruder"), "2")
    with pytest.raises(SignatureError):
        verify_signature(doc, SIGNER.public_key())


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
        ("http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService.pem", False),
        ("https://evil.example/sns.us-east-1.amazonaws.com.pem", False),
        ("https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
        ("https://sns.us-east-1.amazonaws.com/somewhere-else", False),
        ("https://[::1/x.pem", False),
        (None, False),
        ("https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.s3.amazonaws.com/SimpleNotificationService-abc.pem", False),  # S3
        ("https://sns.s3.amazonaws.com.cn/SimpleNotificationService-abc.pem", False),
        ("https://sns.ab.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ],
)
def test_certificate_urls(url: Any, ok: bool) -> None:
    """With the default RECEIVER_SNS_CERT_HOST_PATTERN: https, an SNS host, a .pem file."""
    if ok:
        assert check_certificate_url(url, DEFAULT_HOSTS) == url
    else:
        with pytest.raises(SignatureError):
            check_certificate_url(url, DEFAULT_HOSTS)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t", True),
        ("https://sns.s3.amazonaws.com/?Action=ConfirmSubscription&Token=t", False),
        ("https://sns.s3.amazonaws.com.cn/?Action=ConfirmSubscription&Token=t", False),
    ],
)
def test_subscribe_urls(url: str, ok: bool) -> None:
    """The SubscribeURL is held to the same default host pattern: an S3 bucket host is not SNS."""
    if ok:
        assert check_https_url(url, DEFAULT_HOSTS, "SubscribeURL") == url
    else:
        with pytest.raises(SignatureError) as caught:
            check_https_url(url, DEFAULT_HOSTS, "SubscribeURL")
        assert caught.value.code == "untrusted_certificate"


def test_certificate_must_be_valid_now() -> None:
    cert = certificate(SIGNER, "sns.amazonaws.com", valid_days=30)
    start = cert.not_valid_before_utc.timestamp()
    public_key_at(cert, start + 86400)
    for moment in (start - 1, start + 31 * 86400):
        with pytest.raises(SignatureError):
            public_key_at(cert, moment)


# --- AWS Budgets messages (pure) ----------------------------------------------------------


def event_of(message: str, subject: str | None = None) -> Any:
    alert = parse_alert(message, subject)
    assert alert is not None
    return budget_event(alert, event_id="sns:1", occurred_at=5.0, payload={"Message": message})


def test_documented_message() -> None:
    """AWS's own example: $1.70 actual on a $5.00 budget, alert threshold > $0.75."""
    event = event_of(fixture_text("aws_budgets_actual.txt"))
    assert (event.task_id, event.task_name, event.type) == (
        "aws:killswitch",
        "killswitch",
        EventType.THRESHOLD,
    )
    assert (event.spent, event.budget, event.threshold, event.currency) == (
        Decimal("1.70"), Decimal("5.00"), Decimal("0.15"), "USD",
    )  # fmt: skip
    assert event.payload["Message"].startswith("AWS Budget Notification")


@pytest.mark.parametrize(
    ("message", "spent", "budget", "threshold", "currency"),
    [
        (budget_message("b", threshold="> 80%"), "85.00", "100.00", "0.8", "USD"),
        (budget_message("b", threshold="> 80.00%"), "85.00", "100.00", "0.8", "USD"),
        (budget_message("b", budgeted="$1,200.00", threshold="> $1,200.00", amount="$1,250.10"),
         "1250.10", "1200.00", "1", "USD"),
        (budget_message("b", budgeted="100.00 EUR", threshold="> 90.00 EUR", amount="91.5 EUR"),
         "91.5", "100.00", "0.9", "EUR"),
        (budget_message("b", threshold="> $33.33"), "85.00", "100.00", "0.3333", "USD"),
        (budget_message("b", threshold="somewhere"), "85.00", "100.00", None, "USD"),
    ],
)  # fmt: skip
def test_amount_and_threshold_forms(
    message: str, spent: str, budget: str, threshold: str | None, currency: str
) -> None:
    event = event_of(message)
    assert (event.spent, event.budget, event.currency) == (
        Decimal(spent),
        Decimal(budget),
        currency,
    )
    assert event.threshold == (None if threshold is None else Decimal(threshold))
    assert event.type is (EventType.SPEND if threshold is None else EventType.THRESHOLD)


def test_forecast_is_recorded_but_moves_nothing() -> None:
    event = event_of(
        budget_message("b", alert_type="FORECASTED", threshold="> $100.00", amount="$140.00")
    )
    assert (event.type, event.spent, event.threshold, event.budget) == (
        EventType.SPEND, None, None, Decimal("100.00"),
    )  # fmt: skip
    assert event.payload["alert_type"] == "FORECASTED" and event.payload["amount"] == "140.00"


def test_name_from_the_subject_or_prose_when_the_lines_are_missing() -> None:
    prose = "You requested that we alert you when the ACTUAL Cost associated with your ops budget is greater than $1.00 for the current month. The ACTUAL Cost associated with this budget is $2.00."
    assert event_of(prose).task_id == "aws:ops"
    assert event_of(prose).spent == Decimal("2.00")
    subject = "AWS Budgets: team-x has exceeded your alert threshold"
    assert event_of("ACTUAL Amount: $3", subject).task_id == "aws:team-x"


def test_json_message_with_the_same_names() -> None:
    message = json.dumps({"budgetName": "j", "budgetedAmount": "50", "alertType": "ACTUAL",
                          "alertThreshold": "> 50%", "actualAmount": "30"})  # fmt: skip
    event = event_of(message)
    assert (event.task_id, event.spent, event.threshold) == ("aws:j", Decimal(30), Decimal("0.5"))


def test_json_nested_past_the_stack_is_read_as_text() -> None:
    """A Message of 5,000 nested '[' is not JSON to us (it was a RecursionError, a 500)."""
    nested = '{"budgetName": ' + "[" * 5000
    assert parse_alert(nested) is None
    alert = parse_alert(nested + "\n" + budget_message("deep"))
    assert alert is not None and alert.budget_name == "deep"


def test_not_a_budget_alert() -> None:
    assert parse_alert("Hello from a CloudWatch alarm") is None
    usage = budget_message("u").replace("Budget Type: Cost", "Budget Type: Usage")
    alert = parse_alert(usage)
    assert alert is not None
    assert budget_event(alert, event_id="x", occurred_at=0, payload={}) is None


# --- the route, in the real app -----------------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StaticServer]:
    """An HTTPS server with the SNS signing certificate; the app trusts its test CA."""
    tls = TlsFiles(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    with StaticServer(tls) as server:
        server.serve(CERT_PATH, pem(certificate(SIGNER, "sns.amazonaws.com")))
        server.serve("/confirm", b"<ConfirmSubscriptionResponse/>")
        yield server


def configured(tmp_path: Path) -> Any:
    return app_client(tmp_path, sns_topic_arns=[TOPIC], sns_cert_host_pattern=LOCAL_HOSTS)


def post(client: Any, doc: dict[str, Any]) -> Any:
    headers = {"content-type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": doc["Type"]}
    return client.post("/webhooks/aws-budgets", content=json.dumps(doc), headers=headers)


def test_route_is_404_when_not_configured(tmp_path: Path) -> None:
    with app_client(tmp_path) as client:
        assert client.post("/webhooks/aws-budgets", content=b"{}").status_code == 404


@pytest.mark.parametrize("version", ["1", "2"])
def test_notifications_drive_the_task(tmp_path: Path, certs: StaticServer, version: str) -> None:
    """Warning at 85 %, duplicate MessageId applied once, halted at 100 %; one cert fetch."""
    cert_url = certs.url + CERT_PATH
    with configured(tmp_path) as client:
        warn = sns_sign(sns_notification(budget_message("dev-account"), cert_url,
                                         subject="AWS Budgets: dev-account has exceeded your alert threshold"),
                        SIGNER, version)  # fmt: skip
        first = post(client, warn)
        assert first.status_code == 202, first.text
        assert first.json()["state"] == "warning" and first.json()["task_id"] == "aws:dev-account"
        again = post(client, warn)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"

        over = budget_message("dev-account", threshold="> $100.00", amount="$101.20")
        halted = post(client, sns_sign(sns_notification(over, cert_url), SIGNER, version))
        assert halted.status_code == 202 and halted.json()["state"] == "halted"

        view = task_of(client, "aws:dev-account")
        assert view is not None and (view["spent"], view["budget"]) == ("101.20", "100.00")
        events = client.get("/v1/tasks/aws:dev-account/events",
                            headers={"authorization": "Bearer test-admin-token-0123456789"}).json()["events"]  # fmt: skip
        assert len(events) == 2
        assert events[0]["payload"]["Message"] == warn["Message"]
        assert events[0]["event_id"] == f"sns:{warn['MessageId']}"
        assert len(certs.requested(CERT_PATH)) == 1


def test_subscription_is_confirmed_by_get(tmp_path: Path, certs: StaticServer) -> None:
    with configured(tmp_path) as client:
        doc = sns_confirmation("SubscriptionConfirmation", certs.url + CERT_PATH,
                               certs.url + "/confirm?Action=ConfirmSubscription&Token=abc")  # fmt: skip
        response = post(client, sns_sign(doc, SIGNER))
        assert response.status_code == 200 and response.json()["status"] == "confirmed"
        assert certs.requested("/confirm") == ["/confirm?Action=ConfirmSubscription&Token=abc"]
        assert snapshot(client) == []


def test_unsubscribe_confirmation_changes_nothing(tmp_path: Path, certs: StaticServer) -> None:
    with configured(tmp_path) as client:
        doc = sns_confirmation(
            "UnsubscribeConfirmation", certs.url + CERT_PATH, certs.url + "/confirm"
        )
        response = post(client, sns_sign(doc, SIGNER, "2"))
        assert response.status_code == 200 and response.json()["status"] == "unsubscribed"
        assert certs.requested("/confirm") == [] and snapshot(client) == []


def test_non_budget_notification_is_ignored(tmp_path: Path, certs: StaticServer) -> None:
    with configured(tmp_path) as client:
        doc = sns_sign(sns_notification("an unrelated message", certs.url + CERT_PATH), SIGNER)
        response = post(client, doc)
        assert response.status_code == 200 and response.json()["status"] == "ignored"
        assert snapshot(client) == []


def _refusals(cert_url: str, local: str) -> list[tuple[str, dict[str, Any], int, str]]:
    message = budget_message("victim", threshold="> $100.00", amount="$500.00")
    good = sns_sign(sns_notification(message, cert_url), SIGNER)
    tampered = {**good, "Message": message.replace("$500.00", "$5.00")}
    return [
        ("tampered message", tampered, 401, "invalid_signature"),
        ("wrong topic", sns_sign(sns_notification(message, cert_url,
                                                  topic="arn:aws:sns:us-east-1:999999999999:x"), SIGNER),
         403, "unknown_topic"),
        ("foreign certificate host", sns_sign(sns_notification(
            message, "https://certs.evil.example" + CERT_PATH), SIGNER), 401, "untrusted_certificate"),
        ("http certificate URL", sns_sign(sns_notification(
            message, cert_url.replace("https://", "http://")), SIGNER), 401, "untrusted_certificate"),
        ("signed by another key", sns_sign(sns_notification(message, cert_url), rsa_key("intruder")),
         401, "invalid_signature"),
        ("no certificate there", sns_sign(sns_notification(message, local + "/missing.pem"), SIGNER),
         401, "untrusted_certificate"),
        ("subscribe URL on a foreign host", sns_sign(sns_confirmation(
            "SubscriptionConfirmation", cert_url, "https://evil.example/confirm"), SIGNER),
         401, "untrusted_certificate"),
        ("unknown type", {**good, "Type": "Surprise"}, 422, "missing_field"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(8))
def test_refusals_change_nothing(tmp_path: Path, certs: StaticServer, case: int) -> None:
    """Each refusal is 401/403/422 and leaves every task and timeline as it was."""
    name, doc, status, code = _refusals(certs.url + CERT_PATH, certs.url)[case]
    with configured(tmp_path) as client:
        seed = budget_message("victim", threshold="> $50.00", amount="$50.00")
        assert (
            post(
                client, sns_sign(sns_notification(seed, certs.url + CERT_PATH), SIGNER)
            ).status_code
            == 202
        )
        before = snapshot(client)
        fetched = list(certs.requests)
        response = post(client, doc)
        assert (response.status_code, response.json()["error"]) == (status, code), name
        assert snapshot(client) == before, name
        assert [r for r in certs.requests[len(fetched) :] if r != "/missing.pem"] == [], name


def test_not_json_is_400(tmp_path: Path, certs: StaticServer) -> None:
    with configured(tmp_path) as client:
        response = client.post("/webhooks/aws-budgets", content=b"Type=Notification")
        assert response.status_code == 400 and response.json()["error"] == "malformed_json"


def test_unreachable_certificate_server_is_502(tmp_path: Path, certs: StaticServer) -> None:
    """The sender is told to retry; nothing is stored."""
    with configured(tmp_path) as client:
        url = "https://127.0.0.1:9/SimpleNotificationService-down.pem"  # discard port: refused
        response = post(client, sns_sign(sns_notification(budget_message("x"), url), SIGNER))
        assert response.status_code == 502 and response.json()["error"] == "upstream_unavailable"
        assert snapshot(client) == []
