"""Other senders, each on its own route and off until its settings are given.

/webhooks/litellm      LiteLLM proxy budget alerts      RECEIVER_LITELLM_TOKEN
/webhooks/aws-budgets  AWS Budgets via Amazon SNS       RECEIVER_SNS_TOPIC_ARNS
/webhooks/gcp-billing  Cloud Billing via Pub/Sub push   RECEIVER_GCP_AUDIENCE +
                                                        RECEIVER_GCP_SERVICE_ACCOUNT,
                                                        or RECEIVER_GCP_TOKEN
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import ConfigError
from ..record import Recorder
from .gcp import GcpSource
from .litellm import Entity, LiteLLMSource
from .oidc import Expected, JwksCache
from .sns import SnsSource

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """What the other senders need; a source is off while its settings are missing."""

    max_body_bytes: int
    litellm_token: SecretStr | None
    litellm_entity: Entity
    sns_topic_arns: Sequence[str]
    sns_cert_host_pattern: str
    gcp_audience: str | None
    gcp_service_account: str | None
    gcp_jwks_url: str
    gcp_token: SecretStr | None


def source_routes(
    config: SourceConfig,
    recorder: Recorder,
    http: httpx.AsyncClient,
    clock: Callable[[], float],
    counted: Callable[[str, Handler], Handler] = lambda source, handler: handler,
) -> list[Route]:
    """Routes of the configured sources only: the others answer 404. ``counted`` wraps each
    handler with the source's name (metrics)."""
    routes = []
    limit = config.max_body_bytes
    if config.litellm_token is not None:
        litellm = LiteLLMSource(
            recorder=recorder,
            clock=clock,
            token=config.litellm_token,
            entity=config.litellm_entity,
            max_body_bytes=limit,
        )
        routes.append(
            Route("/webhooks/litellm", counted("litellm", litellm.handle), methods=["POST"])
        )
    if config.sns_topic_arns:
        sns = SnsSource(
            recorder=recorder,
            http=http,
            clock=clock,
            topics=config.sns_topic_arns,
            cert_host_pattern=config.sns_cert_host_pattern,
            max_body_bytes=limit,
        )
        routes.append(Route("/webhooks/aws-budgets", counted("aws", sns.handle), methods=["POST"]))
    expected = _gcp_expected(config)
    if expected is not None or config.gcp_token is not None:
        gcp = GcpSource(
            recorder=recorder,
            clock=clock,
            jwks=None if expected is None else JwksCache(http, config.gcp_jwks_url),
            expected=expected,
            token=config.gcp_token,
            max_body_bytes=limit,
        )
        routes.append(Route("/webhooks/gcp-billing", counted("gcp", gcp.handle), methods=["POST"]))
    return routes


def _gcp_expected(config: SourceConfig) -> Expected | None:
    audience, account = config.gcp_audience, config.gcp_service_account
    if audience is None and account is None:
        return None
    if audience is None or account is None:
        missing = "RECEIVER_GCP_AUDIENCE" if audience is None else "RECEIVER_GCP_SERVICE_ACCOUNT"
        raise ConfigError(
            [
                f"{missing}: required with the other for Pub/Sub OIDC tokens "
                "(the push subscription's audience and its service account's email)"
            ]
        )
    if not config.gcp_jwks_url.startswith("https://") and not _local(config.gcp_jwks_url):
        raise ConfigError(["RECEIVER_GCP_JWKS_URL: must be an https:// URL"])
    return Expected(audience=audience, email=account)


def _local(url: str) -> bool:
    """Plain http is allowed only to this machine (tests, a local key mirror)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
