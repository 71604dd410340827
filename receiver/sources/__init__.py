"""Other senders, each on its own route and off until its settings are given.

/webhooks/litellm      LiteLLM proxy budget alerts      RECEIVER_LITELLM_TOKEN
/webhooks/aws-budgets  AWS Budgets via Amazon SNS       RECEIVER_SNS_TOPIC_ARNS
/webhooks/gcp-billing  Cloud Billing via Pub/Sub push   RECEIVER_GCP_AUDIENCE +
                                                        RECEIVER_GCP_SERVICE_ACCOUNT,
                                                        or RECEIVER_GCP_TOKEN
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from starlette.routing import Route

from ..errors import ConfigError
from ..record import Recorder
from ..settings import Settings
from .gcp import GcpSource
from .litellm import LiteLLMSource
from .oidc import Expected, JwksCache
from .sns import SnsSource


def source_routes(
    settings: Settings, recorder: Recorder, http: httpx.AsyncClient, clock: Callable[[], float]
) -> list[Route]:
    """Routes of the configured sources only: the others answer 404."""
    routes = []
    limit = settings.max_body_bytes
    counted = recorder.metrics.webhook
    if settings.litellm_token is not None:
        litellm = LiteLLMSource(
            recorder=recorder,
            clock=clock,
            token=settings.litellm_token,
            entity=settings.litellm_entity,
            max_body_bytes=limit,
        )
        routes.append(
            Route("/webhooks/litellm", counted("litellm", litellm.handle), methods=["POST"])
        )
    if settings.sns_topic_arns:
        sns = SnsSource(
            recorder=recorder,
            http=http,
            clock=clock,
            topics=settings.sns_topic_arns,
            cert_host_pattern=settings.sns_cert_host_pattern,
            max_body_bytes=limit,
        )
        routes.append(Route("/webhooks/aws-budgets", counted("aws", sns.handle), methods=["POST"]))
    expected = _gcp_expected(settings)
    if expected is not None or settings.gcp_token is not None:
        gcp = GcpSource(
            recorder=recorder,
            clock=clock,
            jwks=None if expected is None else JwksCache(http, settings.gcp_jwks_url),
            expected=expected,
            token=settings.gcp_token,
            max_body_bytes=limit,
        )
        routes.append(Route("/webhooks/gcp-billing", counted("gcp", gcp.handle), methods=["POST"]))
    return routes


def _gcp_expected(settings: Settings) -> Expected | None:
    audience, account = settings.gcp_audience, settings.gcp_service_account
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
    if not settings.gcp_jwks_url.startswith("https://") and not _local(settings.gcp_jwks_url):
        raise ConfigError(["RECEIVER_GCP_JWKS_URL: must be an https:// URL"])
    return Expected(audience=audience, email=account)


def _local(url: str) -> bool:
    """Plain http is allowed only to this machine (tests, a local key mirror)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
