"""Senders as they really sign: the standardwebhooks and svix libraries' own code.

Both ways: what each library signs verifies here (in process, and posted to the
real daemon), and what ``receiver.verify.sign`` makes verifies with each
library's ``verify``. Secrets padded and unpadded, as both libraries accept.
Every test runs under ``loopback_only``: neither library may reach the network.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
import svix.webhooks

from receiver.errors import SignatureError
from receiver.verify import decode_secret, sign, verify
from tests.daemon import Daemon, event, running
from tests.loopback import OffMachine, loopback_only

KEY = bytes(range(7, 39))  # 32 bytes: base64 is 43 characters and one "="
PADDED = "whsec_" + base64.b64encode(KEY).decode()
UNPADDED = PADDED.rstrip("=")
SECRETS = {"padded": PADDED, "unpadded": UNPADDED}


@pytest.fixture(autouse=True)
def no_network() -> Iterator[None]:
    with loopback_only() as refused:
        yield
    assert refused == []


def test_the_guard_refuses_what_leaves_the_machine() -> None:
    """The guard above is real: a lookup or connect off the machine fails before any packet."""
    with loopback_only() as refused, socket.socket() as sock:
        with pytest.raises(OffMachine):
            socket.getaddrinfo("api.svix.com", 443)
        with pytest.raises(OffMachine):
            sock.connect(("192.0.2.1", 443))  # TEST-NET-1: nothing is there anyway
        assert socket.getaddrinfo("127.0.0.1", 80)
    assert refused == ["lookup 'api.svix.com'", "connect ('192.0.2.1', 443)"]


def test_the_secret_forms_differ_only_in_padding() -> None:
    assert UNPADDED != PADDED and UNPADDED + "=" == PADDED
    assert decode_secret(UNPADDED) == decode_secret(PADDED) == KEY


def body_of(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def standard_headers(secret: str, msg_id: str, body: bytes, now: float) -> dict[str, str]:
    """Headers as a sender using the standardwebhooks library sets them."""
    moment = datetime.fromtimestamp(now, UTC)
    signed = standardwebhooks.Webhook(secret).sign(msg_id, moment, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signed,
    }


def svix_headers(secret: str, msg_id: str, body: bytes, now: float) -> dict[str, str]:
    """Headers as Svix sends them: the svix library's names, its own signature."""
    moment = datetime.fromtimestamp(now, UTC)
    signed = svix.webhooks.Webhook(secret).sign(msg_id, moment, body.decode())
    return {"svix-id": msg_id, "svix-timestamp": str(int(now)), "svix-signature": signed}


SIGNERS = {"standardwebhooks": standard_headers, "svix": svix_headers}


# --- in process: both directions -----------------------------------------------------------


@pytest.mark.parametrize("secret", list(SECRETS.values()), ids=list(SECRETS))
@pytest.mark.parametrize("signer", list(SIGNERS.values()), ids=list(SIGNERS))
def test_what_each_library_signs_verifies_here(secret: str, signer: Any) -> None:
    now = time.time()
    body = body_of(event("task.spend", "t-\u00fcn\u00efcode", amount="0.01"))
    headers = signer(secret, "msg_lib_1", body, now)
    assert verify(body, headers, [decode_secret(PADDED)], now) == "msg_lib_1"
    assert verify(body, headers, [decode_secret(UNPADDED)], now) == "msg_lib_1"
    with pytest.raises(SignatureError):
        verify(body + b" ", headers, [KEY], now)


@pytest.mark.parametrize("secret", list(SECRETS.values()), ids=list(SECRETS))
def test_what_we_sign_verifies_with_each_library(secret: str) -> None:
    body = body_of(event("task.spend", "t-1", spent="80.00"))
    headers = sign(secret, "msg_ours_1", int(time.time()), body)
    assert standardwebhooks.Webhook(secret).verify(body, headers) == json.loads(body)
    svix.webhooks.Webhook(secret).verify(body, headers)  # raises if it does not verify
    renamed = {name.replace("webhook-", "svix-"): value for name, value in headers.items()}
    svix.webhooks.Webhook(secret).verify(body, renamed)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(secret).verify(body + b" ", renamed)


def test_the_libraries_agree_on_the_reference_vector() -> None:
    """The Standard Webhooks reference vector, signed by each library and by us."""
    secret, msg_id, ts = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
    )
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    moment = datetime.fromtimestamp(ts, UTC)
    assert standardwebhooks.Webhook(secret).sign(msg_id, moment, body) == expected
    assert svix.webhooks.Webhook(secret).sign(msg_id, moment, body.decode()) == expected
    assert sign(secret, msg_id, ts, body)["webhook-signature"] == expected


# --- through the real daemon ----------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Configured with the unpadded secret only (it used to stop the daemon at start)."""
    with running(tmp_path_factory.mktemp("libs"), {"RECEIVER_WEBHOOK_SECRETS": UNPADDED}) as d:
        yield d


def post(d: Daemon, body: bytes, headers: dict[str, str]) -> httpx.Response:
    headers = {**headers, "content-type": "application/json"}
    return httpx.post(d.url + "/webhooks/budget", content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("secret", list(SECRETS.values()), ids=list(SECRETS))
@pytest.mark.parametrize("signer", list(SIGNERS.values()), ids=list(SIGNERS))
def test_each_library_drives_a_task_on_the_daemon(daemon: Daemon, secret: str, signer: Any) -> None:
    """Created, then 60 of 100 spent: 202 each, the signed id is the event id, and a
    redelivery (same id, the library signing again) is a duplicate."""
    tid = f"lib-{uuid.uuid4().hex[:8]}"
    created = body_of(event("task.created", tid, budget="100.00", currency="USD"))
    r = post(daemon, created, signer(secret, f"msg_{tid}_1", created, time.time()))
    assert (r.status_code, r.json()["status"]) == (202, "accepted"), r.text

    spend = body_of(event("task.spend", tid, amount="60.00"))
    r = post(daemon, spend, signer(secret, f"msg_{tid}_2", spend, time.time()))
    assert (r.status_code, r.json()["state"], r.json()["event_id"]) == (
        202, "warning", f"msg_{tid}_2",
    )  # fmt: skip
    again = post(daemon, spend, signer(secret, f"msg_{tid}_2", spend, time.time() + 1))
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")

    assert daemon.task(tid)["spent"] == "60.00"
    assert [e["event_id"] for e in daemon.events(tid)] == [f"msg_{tid}_1", f"msg_{tid}_2"]


def test_a_wrong_svix_signature_is_refused(daemon: Daemon) -> None:
    body = body_of(event("task.created", "lib-forged", budget="1", currency="USD"))
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    r = post(daemon, body, svix_headers(other, "msg_forged", body, time.time()))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_signature")
    assert daemon.api("GET", "/v1/tasks/lib-forged").status_code == 404


def test_one_spelling_cannot_lend_its_signature_to_the_other_id(daemon: Daemon) -> None:
    """A svix-signed request with another webhook-id (or the reverse) is refused: its event
    would otherwise be stored under an id nobody signed, and dodge deduplication."""
    tid = f"lib-{uuid.uuid4().hex[:8]}"
    created = body_of(event("task.created", tid, budget="100", currency="USD"))
    assert (
        post(daemon, created, svix_headers(PADDED, f"c-{tid}", created, time.time())).status_code
        == 202
    )
    spend = body_of(event("task.spend", tid, amount="10"))
    now = time.time()
    signed = svix_headers(PADDED, f"s-{tid}", spend, now)
    assert post(daemon, spend, signed).status_code == 202
    for extra in ({"webhook-id": f"replay-{tid}"},
                  standard_headers(PADDED, f"replay2-{tid}", spend, now)):  # fmt: skip
        r = post(daemon, spend, {**signed, **extra})
        assert (r.status_code, r.json()["error"]) == (401, "mixed_signature_headers")
    same = {**signed, **{k.replace("svix-", "webhook-"): v for k, v in signed.items()}}
    assert post(daemon, spend, same).json()["status"] == "duplicate"  # both spellings, one set
    assert daemon.task(tid)["spent"] == "10"


def test_unsigned_mode_still_checks_a_svix_signature(tmp_path: Path) -> None:
    """With RECEIVER_ALLOW_UNSIGNED=true and a secret, a request that carries a signature
    must still verify; a svix-signed one used to skip the check and be applied."""
    settings = {"RECEIVER_WEBHOOK_SECRETS": PADDED, "RECEIVER_ALLOW_UNSIGNED": "true"}
    with running(tmp_path, settings) as d:
        body = body_of(event("task.created", "lib-unsigned", budget="5", currency="USD"))
        wrong = "whsec_" + base64.b64encode(b"y" * 32).decode()
        forged = post(d, body, svix_headers(wrong, "msg_u1", body, time.time()))
        assert (forged.status_code, forged.json()["error"]) == (401, "invalid_signature")
        good = post(d, body, svix_headers(PADDED, "msg_u2", body, time.time()))
        assert (good.status_code, good.json()["event_id"]) == (202, "msg_u2")
        plain = body_of(event("task.spend", "lib-unsigned", amount="1"))
        unsigned = post(d, plain, {"svix-id": "msg_u3"})
        assert (unsigned.status_code, unsigned.json()["event_id"]) == (202, "msg_u3")
        odd = post(d, plain, {"webhook-id": "x" * 300})
        assert (odd.status_code, odd.json()["error"]) == (401, "invalid_signature")
        assert [e["event_id"] for e in d.events("lib-unsigned")] == ["msg_u2", "msg_u3"]
