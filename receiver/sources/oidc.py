"""Google-signed OIDC tokens (RS256 JWTs), as Pub/Sub push sends them. No PyJWT.

``verify_jwt`` is a pure function of (token, key, expectations, now). ``JwksCache``
holds Google's public keys by key id: refreshed after ``ttl`` seconds, and at once
for a key id it does not know (at most every ``min_refetch`` seconds, so forged
key ids cannot make it hammer the key server).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import SignatureError
from .common import UpstreamUnavailable

GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
LEEWAY_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Token:
    header: dict[str, Any]
    claims: dict[str, Any]
    signed: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Expected:
    audience: str
    email: str
    issuers: frozenset[str] = GOOGLE_ISSUERS
    leeway: float = LEEWAY_SECONDS


def b64url(data: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError("the token is not base64url") from None


def split_jwt(jwt: str) -> Token:
    parts = jwt.split(".")
    if len(parts) != 3:
        raise SignatureError("the bearer token is not a JWT")
    try:
        header, claims = json.loads(b64url(parts[0])), json.loads(b64url(parts[1]))
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
        raise SignatureError("the JWT header or claims are not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise SignatureError("the JWT header and claims must be JSON objects")
    return Token(header, claims, f"{parts[0]}.{parts[1]}".encode(), b64url(parts[2]))


def check_signature(token: Token, key: rsa.RSAPublicKey) -> None:
    if token.header.get("alg") != "RS256":
        raise SignatureError("the JWT must be signed with RS256")
    try:
        key.verify(token.signature, token.signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("the JWT signature does not match") from None


def check_claims(claims: dict[str, Any], expected: Expected, now: float) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if expected.audience not in audiences:
        raise SignatureError("the JWT is for another audience", code="wrong_audience")
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss not in expected.issuers:  # a list is unhashable
        raise SignatureError("the JWT is not issued by Google")
    if claims.get("email") != expected.email or claims.get("email_verified") is not True:
        raise SignatureError("the JWT is not from the configured service account")
    exp, iat = _seconds(claims.get("exp")), _seconds(claims.get("iat"))
    if exp is None or iat is None:
        raise SignatureError("the JWT needs exp and iat")
    if now > exp + expected.leeway:
        raise SignatureError("the JWT has expired", code="expired_token")
    if iat > now + expected.leeway:
        raise SignatureError("the JWT is issued in the future")


def verify_jwt(token: Token, key: rsa.RSAPublicKey, expected: Expected, now: float) -> None:
    """Raise SignatureError unless ``token`` is signed by ``key`` and meets ``expected``."""
    check_signature(token, key)
    check_claims(token.claims, expected, now)


def rsa_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    n, e = jwk.get("n"), jwk.get("e")
    if jwk.get("kty") != "RSA" or not isinstance(n, str) or not isinstance(e, str):
        raise ValueError("not an RSA key")
    numbers = rsa.RSAPublicNumbers(int.from_bytes(b64url(e)), int.from_bytes(b64url(n)))
    return numbers.public_key()


def parse_jwks(doc: Any) -> dict[str, rsa.RSAPublicKey]:
    """The RSA keys of a JWKS document by key id; keys it cannot read are skipped."""
    keys: dict[str, rsa.RSAPublicKey] = {}
    for jwk in doc.get("keys", []) if isinstance(doc, dict) else []:
        if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
            try:
                keys[jwk["kid"]] = rsa_key(jwk)
            except (ValueError, SignatureError):
                continue
    return keys


class JwksCache:
    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        ttl: float = 3600.0,
        min_refetch: float = 30.0,
    ) -> None:
        self.http = http
        self.url = url
        self.ttl = ttl
        self.min_refetch = min_refetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched_at: float | None = None

    async def key(self, kid: object, now: float) -> rsa.RSAPublicKey:
        if not isinstance(kid, str):
            raise SignatureError("the JWT header has no key id (kid)")
        age = None if self._fetched_at is None else now - self._fetched_at
        if age is None or age >= self.ttl or (kid not in self._keys and age >= self.min_refetch):
            await self._refresh(now)
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError("the JWT is signed with an unknown key")
        return key

    async def _refresh(self, now: float) -> None:
        try:
            response = await self.http.get(self.url)
            response.raise_for_status()
            doc = response.json()
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            if self._keys and self._fetched_at is not None:
                # Keep the keys we have and try again after min_refetch, not on every request.
                self._fetched_at = now - self.ttl + self.min_refetch
                return
            raise UpstreamUnavailable(f"could not fetch the signing keys: {exc}") from exc
        self._keys = parse_jwks(doc)
        self._fetched_at = now


def _seconds(value: object) -> float | None:
    """A finite number of seconds; None otherwise (float() of a 400-digit int overflows)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            return None
        return seconds if math.isfinite(seconds) else None
    return None
