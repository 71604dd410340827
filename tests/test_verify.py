"""Standard Webhooks signatures: receiver.verify.sign and verify share one code path."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from receiver.errors import SignatureError
from receiver.verify import (
    DEFAULT_TOLERANCE_SECONDS,
    decode_secret,
    is_signed,
    message_id,
    sign,
    verify,
)

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 24).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()
NOW = 1_764_324_000
BODY = b'{"type":"task.spend","data":{"task_id":"t-42","spent":"80.00"}}'
MSG_ID = "msg_2x1"


def keys(*secrets: str) -> list[bytes]:
    return [decode_secret(s) for s in secrets]


def signed(secret: str = SECRET, ts: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return sign(secret, MSG_ID, ts, body)


def test_valid_signature_returns_the_webhook_id() -> None:
    """A correctly signed message verifies and yields its webhook-id (the dedupe key)."""
    assert verify(BODY, signed(), keys(SECRET), now=NOW) == MSG_ID


def test_rotated_secret_second_key_matches() -> None:
    """During rotation any configured secret may match, not only the first."""
    headers = signed(secret=SECRET)
    assert verify(BODY, headers, keys(OLD_SECRET, SECRET), now=NOW) == MSG_ID


def test_signed_with_old_secret_still_verifies_during_rotation() -> None:
    """A sender still on the old secret is accepted while both are configured."""
    headers = signed(secret=OLD_SECRET)
    assert verify(BODY, headers, keys(SECRET, OLD_SECRET), now=NOW) == MSG_ID


@pytest.mark.parametrize("position", [0, 1, 2])
def test_several_v1_signatures_one_right(position: int) -> None:
    """A header with several space-separated signatures verifies if any one is right."""
    good = signed()["webhook-signature"]
    wrong = sign(OTHER_SECRET, MSG_ID, NOW, BODY)["webhook-signature"]
    sigs = [wrong, "v1,AAAA", wrong]
    sigs[position] = good
    headers = signed() | {"webhook-signature": " ".join(sigs)}
    assert verify(BODY, headers, keys(SECRET), now=NOW) == MSG_ID


def test_non_v1_signatures_next_to_a_good_v1_are_ignored() -> None:
    """Signatures of other schemes (v1a, v2) are skipped, the v1 one still counts."""
    good = signed()["webhook-signature"]
    headers = signed() | {"webhook-signature": f"v1a,abcd v2,efgh {good}"}
    assert verify(BODY, headers, keys(SECRET), now=NOW) == MSG_ID


@pytest.mark.parametrize(
    ("skew", "ok"),
    [
        (0, True),
        (DEFAULT_TOLERANCE_SECONDS - 1, True),
        (DEFAULT_TOLERANCE_SECONDS, True),
        (-DEFAULT_TOLERANCE_SECONDS, True),
        (DEFAULT_TOLERANCE_SECONDS + 1, False),
        (-(DEFAULT_TOLERANCE_SECONDS + 1), False),
        (86_400, False),
        (-86_400, False),
    ],
)
def test_timestamp_tolerance(skew: int, ok: bool) -> None:
    """Timestamps within +-300 s of now verify; stale or future ones beyond it are refused."""
    headers = signed(ts=NOW + skew)
    if ok:
        assert verify(BODY, headers, keys(SECRET), now=NOW) == MSG_ID
    else:
        with pytest.raises(SignatureError) as info:
            verify(BODY, headers, keys(SECRET), now=NOW)
        assert info.value.code == "stale_timestamp"
        assert info.value.status == 401


def test_custom_tolerance_is_honoured() -> None:
    """A tighter tolerance refuses what the default would accept."""
    headers = signed(ts=NOW - 60)
    assert verify(BODY, headers, keys(SECRET), now=NOW, tolerance=60) == MSG_ID
    with pytest.raises(SignatureError):
        verify(BODY, headers, keys(SECRET), now=NOW, tolerance=59)


def test_fractional_now_is_fine() -> None:
    """The clock passed in may be a float, as time.time() returns."""
    assert verify(BODY, signed(), keys(SECRET), now=NOW + 0.75) == MSG_ID


@pytest.mark.parametrize(
    "body",
    [
        BODY.replace(b"80.00", b"10.00"),
        BODY + b" ",
        BODY[:-1],
        b"",
    ],
)
def test_tampered_body_is_refused(body: bytes) -> None:
    """Any change to the body after signing makes the signature fail."""
    with pytest.raises(SignatureError):
        verify(body, signed(), keys(SECRET), now=NOW)


def test_tampered_id_is_refused() -> None:
    """The webhook-id is signed: replaying a body under another id fails."""
    headers = signed() | {"webhook-id": "msg_other"}
    with pytest.raises(SignatureError):
        verify(BODY, headers, keys(SECRET), now=NOW)


def test_tampered_timestamp_is_refused() -> None:
    """The timestamp is signed: moving it (even inside the window) fails."""
    headers = signed() | {"webhook-timestamp": str(NOW + 1)}
    with pytest.raises(SignatureError):
        verify(BODY, headers, keys(SECRET), now=NOW)


def test_wrong_secret_is_refused() -> None:
    """A message signed with an unknown secret is refused."""
    with pytest.raises(SignatureError):
        verify(BODY, signed(secret=OTHER_SECRET), keys(SECRET), now=NOW)


def test_no_keys_configured_refuses_everything() -> None:
    """With no keys nothing verifies (and it is still a SignatureError)."""
    with pytest.raises(SignatureError):
        verify(BODY, signed(), [], now=NOW)


def _without(name: str) -> dict[str, str]:
    headers = signed()
    del headers[name]
    return headers


GOOD = signed()
FULLWIDTH_NOW = "".join(chr(0xFF10 + int(d)) for d in str(NOW))  # digits U+FF10..U+FF19
MALFORMED: list[tuple[str, dict[str, str]]] = [
    ("no headers", {}),
    ("missing id", _without("webhook-id")),
    ("missing timestamp", _without("webhook-timestamp")),
    ("missing signature", _without("webhook-signature")),
    ("empty id", GOOD | {"webhook-id": ""}),
    ("blank id", GOOD | {"webhook-id": "   "}),
    ("empty timestamp", GOOD | {"webhook-timestamp": ""}),
    ("empty signature", GOOD | {"webhook-signature": ""}),
    ("blank signature", GOOD | {"webhook-signature": "   "}),
    ("non-digit timestamp", GOOD | {"webhook-timestamp": "17643240OO"}),
    ("negative timestamp", GOOD | {"webhook-timestamp": f"-{NOW}"}),
    ("float timestamp", GOOD | {"webhook-timestamp": f"{NOW}.5"}),
    ("iso timestamp", GOOD | {"webhook-timestamp": "2025-11-28T10:00:00Z"}),
    ("fullwidth digits", GOOD | {"webhook-timestamp": FULLWIDTH_NOW}),
    ("huge timestamp", GOOD | {"webhook-timestamp": "9" * 400}),
    ("13 digit timestamp", GOOD | {"webhook-timestamp": "1" * 13}),
    ("millisecond timestamp", GOOD | {"webhook-timestamp": str(NOW * 1000)}),
    ("garbage signature", GOOD | {"webhook-signature": "v1,!!!not base64!!!"}),
    ("empty v1 signature", GOOD | {"webhook-signature": "v1,"}),
    ("non-ascii signature", GOOD | {"webhook-signature": "v1,ümlaut€"}),
    ("no prefix", GOOD | {"webhook-signature": GOOD["webhook-signature"][3:]}),
    ("v2 prefix", GOOD | {"webhook-signature": "v2," + GOOD["webhook-signature"][3:]}),
    ("v1a prefix", GOOD | {"webhook-signature": "v1a," + GOOD["webhook-signature"][3:]}),
    ("uppercase V1", GOOD | {"webhook-signature": "V1," + GOOD["webhook-signature"][3:]}),
    ("truncated signature", GOOD | {"webhook-signature": GOOD["webhook-signature"][:-4]}),
    ("id too long", GOOD | {"webhook-id": "m" * 256}),
    ("id with control char", GOOD | {"webhook-id": "msg\x00id"}),
    ("id with newline", GOOD | {"webhook-id": "msg\nid"}),
]


@pytest.mark.parametrize("headers", [h for _, h in MALFORMED], ids=[name for name, _ in MALFORMED])
def test_malformed_headers_raise_only_signature_error(headers: dict[str, str]) -> None:
    """Any malformed signature header is a 401 SignatureError, never another exception."""
    with pytest.raises(SignatureError) as info:
        verify(BODY, headers, keys(SECRET), now=NOW)
    assert type(info.value) is SignatureError
    assert info.value.status == 401


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_code_is_missing_signature(name: str) -> None:
    """A missing header is reported with the machine code missing_signature."""
    with pytest.raises(SignatureError) as info:
        verify(BODY, _without(name), keys(SECRET), now=NOW)
    assert info.value.code == "missing_signature"


@pytest.mark.parametrize(
    "transform",
    [str.upper, str.title, lambda name: name.replace("webhook", "WebHook")],
    ids=["upper", "title", "mixed"],
)
def test_header_names_are_case_insensitive(transform: Callable[[str], str]) -> None:
    """Header names match whatever their case, as HTTP requires."""
    headers = {transform(k): v for k, v in signed().items()}
    assert verify(BODY, headers, keys(SECRET), now=NOW) == MSG_ID


def test_surrounding_whitespace_in_header_values_is_tolerated() -> None:
    """Stray spaces around header values (some proxies add them) do not break verification."""
    headers = {k: f"  {v} " for k, v in signed().items()}
    assert verify(BODY, headers, keys(SECRET), now=NOW) == MSG_ID


def test_unicode_id_and_binary_body_round_trip() -> None:
    """sign and verify agree on non-ASCII ids and arbitrary body bytes."""
    body = bytes(range(256))
    headers = sign(SECRET, "msg_ünï", NOW, body)
    assert verify(body, headers, keys(SECRET), now=NOW) == "msg_ünï"


def test_sign_produces_the_three_headers() -> None:
    """sign returns exactly the Standard Webhooks headers, signature prefixed v1,."""
    headers = signed()
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-timestamp"] == str(NOW)
    assert headers["webhook-signature"].startswith("v1,")
    assert len(base64.b64decode(headers["webhook-signature"][3:])) == 32


def test_known_standard_webhooks_vector() -> None:
    """The signature matches the Standard Webhooks reference test vector."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "sk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_",
        "whsec_not base64 at all!!",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA",  # 33 characters: no padding can fix that
        "whsec_" + base64.b64encode(b"k" * 16).decode().rstrip("=")[:-1],  # 15 bytes, unpadded
        "whsec_" + base64.b64encode(b"k" * 15).decode(),  # too short
        "whsec_" + base64.b64encode(b"k" * 8).decode(),
    ],
)
def test_decode_secret_rejects_bad_secrets(secret: str) -> None:
    """decode_secret refuses non-whsec_, non-base64 and too-short secrets with ValueError."""
    with pytest.raises(ValueError, match=r"\S"):
        decode_secret(secret)


def test_decode_secret_error_does_not_echo_the_secret() -> None:
    """The error text for a bad secret never contains the secret itself."""
    secret = "whsec_" + base64.b64encode(b"hidden-key-9").decode()
    with pytest.raises(ValueError) as info:
        decode_secret(secret)
    assert secret[6:] not in str(info.value)


def test_decode_secret_accepts_minimum_length() -> None:
    """A 16-byte key is the shortest accepted and decodes to the raw bytes."""
    assert decode_secret("whsec_" + base64.b64encode(b"k" * 16).decode()) == b"k" * 16


@pytest.mark.parametrize("size", [16, 17, 18, 32, 33, 64])
def test_decode_secret_accepts_unpadded_base64(size: int) -> None:
    """A secret without its trailing '=' (as the standardwebhooks and svix libraries accept
    it) is the same key as the padded one."""
    key = bytes(range(size))
    padded = "whsec_" + base64.b64encode(key).decode()
    assert decode_secret(padded) == decode_secret(padded.rstrip("=")) == key


# --- the svix spelling of the headers ------------------------------------------------------


def svix(headers: dict[str, str]) -> dict[str, str]:
    return {k.replace("webhook-", "svix-"): v for k, v in headers.items()}


def test_svix_spelling_verifies_and_yields_the_svix_id() -> None:
    """svix-id, svix-timestamp, svix-signature: the same scheme under the svix names."""
    assert verify(BODY, svix(signed()), keys(SECRET), now=NOW) == MSG_ID
    headers = {k.upper(): v for k, v in svix(signed()).items()}
    assert verify(BODY, headers, keys(SECRET), now=NOW) == MSG_ID


def test_svix_spelling_is_checked_like_the_other() -> None:
    with pytest.raises(SignatureError):
        verify(BODY, svix(signed(secret=OTHER_SECRET)), keys(SECRET), now=NOW)
    with pytest.raises(SignatureError) as info:
        verify(BODY, svix(_without("webhook-signature")), keys(SECRET), now=NOW)
    assert info.value.code == "missing_signature"


OTHER_ID = sign(SECRET, "msg_other", NOW, BODY)
MIXED: list[tuple[str, dict[str, str]]] = [
    ("svix set + another webhook-id", svix(GOOD) | {"webhook-id": "msg_other"}),
    ("webhook set + another svix-id", GOOD | {"svix-id": "msg_other"}),
    ("two full sets, two ids", svix(GOOD) | OTHER_ID),
    ("webhook id, svix timestamp and signature",
     {"webhook-id": MSG_ID, "svix-timestamp": str(NOW), "svix-signature": GOOD["webhook-signature"]}),
    ("same ids, other signatures", svix(GOOD) | GOOD | {"webhook-signature": "v1,AAAA"}),
]  # fmt: skip


@pytest.mark.parametrize("headers", [h for _, h in MIXED], ids=[name for name, _ in MIXED])
def test_mixed_spellings_are_refused(headers: dict[str, str]) -> None:
    """Headers of both spellings that disagree: the id stored must be the id signed."""
    with pytest.raises(SignatureError) as info:
        verify(BODY, headers, keys(SECRET), now=NOW)
    assert info.value.code == "mixed_signature_headers"
    with pytest.raises(SignatureError):
        message_id(headers)


def test_both_spellings_saying_the_same_verify() -> None:
    """A proxy or sender that sends both spellings of one set is fine."""
    assert verify(BODY, GOOD | svix(GOOD), keys(SECRET), now=NOW) == MSG_ID


@pytest.mark.parametrize(
    ("headers", "signed_", "msg_id"),
    [
        ({}, False, None),
        ({"webhook-id": "m1"}, False, "m1"),
        ({"SVIX-ID": "m2"}, False, "m2"),
        ({"svix-id": "m3", "svix-signature": "v1,x"}, True, "m3"),
        ({"Webhook-Signature": "v1,x"}, True, None),
    ],
)
def test_is_signed_and_message_id(
    headers: dict[str, str], signed_: bool, msg_id: str | None
) -> None:
    """What ingest asks when unsigned requests are allowed: is there a signature to check,
    and which id did the sender give?"""
    assert is_signed(headers) is signed_
    assert message_id(headers) == msg_id


@pytest.mark.parametrize("bad", ["m" * 256, "msg\nid", "msg\x00id"])
def test_message_id_refuses_what_verify_refuses(bad: str) -> None:
    with pytest.raises(SignatureError):
        message_id({"svix-id": bad})
