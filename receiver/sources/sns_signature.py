"""Amazon SNS message signatures (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA).

The signed text is ``Name\\nvalue\\n`` for each field, in AWS's fixed order:
Notification: Message, MessageId, Subject (only if present), Timestamp, TopicArn, Type.
SubscriptionConfirmation / UnsubscribeConfirmation: Message, MessageId, SubscribeURL,
Timestamp, Token, TopicArn, Type.
The key comes from the X.509 certificate at SigningCertURL, fetched only over https
from a host that matches the configured pattern (TLS vouches for the host), and
kept in memory per URL.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import SignatureError
from .common import UpstreamUnavailable

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_MAX_CERTIFICATES = 32


def string_to_sign(doc: Mapping[str, Any]) -> bytes:
    fields = NOTIFICATION_FIELDS if doc.get("Type") == "Notification" else CONFIRMATION_FIELDS
    parts = []
    for name in fields:
        value = doc.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise SignatureError(f"{name}: missing from the signed fields")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode()


def check_https_url(url: object, host_pattern: re.Pattern[str], what: str) -> str:
    """``url`` if it is https on a host matching the pattern; else SignatureError."""
    if not isinstance(url, str):
        raise SignatureError(f"{what}: missing")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise SignatureError(f"{what}: not a URL") from None
    if parts.scheme != "https":
        raise SignatureError(f"{what}: only https is trusted", code="untrusted_certificate")
    if parts.username or parts.password or not host_pattern.fullmatch(host):
        raise SignatureError(
            f"{what}: host {host!r} is not an SNS host", code="untrusted_certificate"
        )
    return url


def check_certificate_url(url: object, host_pattern: re.Pattern[str]) -> str:
    checked = check_https_url(url, host_pattern, "SigningCertURL")
    if not urlsplit(checked).path.endswith(".pem"):
        raise SignatureError("SigningCertURL: not a .pem file", code="untrusted_certificate")
    return checked


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SignatureError("the signing certificate is not a PEM X.509 certificate") from None


def public_key_at(cert: x509.Certificate, now: float) -> rsa.RSAPublicKey:
    """The certificate's RSA key, if the certificate is valid at ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise SignatureError("the signing certificate is not valid now")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("the signing certificate has no RSA key")
    return key


def verify_signature(doc: Mapping[str, Any], key: rsa.RSAPublicKey) -> None:
    """Raise SignatureError unless ``doc`` carries a valid signature by ``key``."""
    algorithm = HASHES.get(str(doc.get("SignatureVersion")))
    if algorithm is None:
        raise SignatureError("SignatureVersion: 1 or 2 is supported")
    encoded = doc.get("Signature")
    if not isinstance(encoded, str):
        raise SignatureError("Signature: missing", code="missing_signature")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Signature: not base64") from None
    try:
        key.verify(signature, string_to_sign(doc), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SignatureError("the SNS signature does not match the message") from None


class CertificateCache:
    """Signing certificates by URL, fetched once with the app's HTTP client."""

    def __init__(self, http: httpx.AsyncClient, host_pattern: re.Pattern[str]) -> None:
        self.http = http
        self.host_pattern = host_pattern
        self._certs: dict[str, x509.Certificate] = {}

    async def public_key(self, url: object, now: float) -> rsa.RSAPublicKey:
        checked = check_certificate_url(url, self.host_pattern)
        cert = self._certs.get(checked)
        if cert is None:
            cert = load_certificate(await self._fetch(checked))
            if len(self._certs) >= _MAX_CERTIFICATES:
                self._certs.pop(next(iter(self._certs)))
            self._certs[checked] = cert
        return public_key_at(cert, now)

    async def _fetch(self, url: str) -> bytes:
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(
                f"could not fetch the SNS signing certificate: {exc}"
            ) from exc
        if response.status_code >= 500:
            raise UpstreamUnavailable(
                f"the SNS signing certificate server answered {response.status_code}"
            )
        if response.status_code != 200:
            raise SignatureError(
                f"no signing certificate at SigningCertURL ({response.status_code})",
                code="untrusted_certificate",
            )
        return response.content
