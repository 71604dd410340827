"""Settings: RECEIVER_* from the environment, an env file, or a secrets directory.

Bad settings raise ConfigError naming each bad field; the CLI turns that into
one message and exit code 2.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from .errors import ConfigError
from .verify import decode_secret

ENV_PREFIX = "RECEIVER_"
PLACEHOLDERS = ("changeme", "change-me", "replace-me", "replace_me")


def is_placeholder(raw: str) -> bool:
    """A value copied from the example file, or a <fill me in> marker."""
    lowered = raw.strip().lower()
    return any(p in lowered for p in PLACEHOLDERS) or lowered[:1] == "<" or len(set(lowered)) == 1


def _split(value: Any, *, lines: bool = False) -> Any:
    if isinstance(value, str):
        parts = value.split() if lines else value.split(",")
        return [p.strip() for p in parts if p.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        env_ignore_empty=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # repr=False: a postgresql:// URL carries the database password.
    database_url: str = Field("sqlite:///./data/receiver.db", repr=False)
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = []
    allow_unsigned: bool = False
    replay_tolerance_seconds: int = Field(300, ge=1, le=3600)
    admin_token: SecretStr | None = None
    read_token: SecretStr | None = None
    notify_urls: Annotated[list[SecretStr], NoDecode] = []
    apprise_config: Path | None = None
    thresholds: Annotated[list[Decimal], NoDecode] = [
        Decimal("0.5"),
        Decimal("0.8"),
        Decimal("0.9"),
    ]
    halt_at: Decimal = Field(Decimal("1.0"), gt=0, le=10)
    halt_url: SecretStr | None = None
    halt_method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    halt_token: SecretStr | None = None
    halt_timeout_seconds: float = Field(10.0, gt=0, le=120)
    max_body_bytes: int = Field(65536, ge=256, le=16 * 1024 * 1024)
    spend_after_halt_quiet_seconds: float = Field(3600.0, ge=0)
    delivery_max_attempts: int = Field(8, ge=1, le=100)
    retry_base_seconds: float = Field(1.0, gt=0, le=3600)
    retry_cap_seconds: float = Field(300.0, gt=0, le=86400)
    lease_seconds: float = Field(60.0, ge=1, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: human-readable on a terminal, JSON lines otherwise (a container's log pipeline).
    log_format: Literal["auto", "json", "text"] = "auto"
    metrics_token: SecretStr | None = None
    database_pool_size: int = Field(10, ge=1, le=200)
    # HTTP worker processes; each runs the whole pipeline against the shared store.
    workers: int = Field(1, ge=1, le=32)
    # Slow clients: a request head within header_timeout of the connection opening or of
    # the previous response, a body within body_timeout of being read; connections per worker.
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    max_connections: int = Field(512, ge=2, le=65536)
    # Days the history of a finished task is kept (see retention.py); 0 keeps it forever.
    retention_days: int = Field(90, ge=0, le=36500)

    # Other sources; each is off until its settings are given.
    litellm_token: SecretStr | None = None
    litellm_entity: Literal["key", "user", "team", "customer"] = "key"
    sns_topic_arns: Annotated[list[str], NoDecode] = []
    # 3+ characters of region, as AWS's own message validators: sns.s3.amazonaws.com is S3.
    sns_cert_host_pattern: str = r"^sns\.[a-z0-9-]{3,}\.amazonaws\.com(\.cn)?$"
    gcp_audience: str | None = None
    gcp_service_account: str | None = None
    gcp_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    gcp_token: SecretStr | None = None

    @field_validator("webhook_secrets", "thresholds", "sns_topic_arns", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _url_list(cls, value: Any) -> Any:
        return _split(value, lines=True)

    @field_validator("halt_method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("webhook_secrets")
    @classmethod
    def _valid_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for i, secret in enumerate(value, start=1):
            if is_placeholder(secret.get_secret_value()):
                raise ValueError(
                    f"secret {i} is still the placeholder: `budget-receiver new-secret` makes one"
                )
            try:
                decode_secret(secret.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"secret {i}: {exc}") from None
        return value

    @field_validator(
        "admin_token", "read_token", "halt_token", "metrics_token", "litellm_token", "gcp_token"
    )
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and is_placeholder(value.get_secret_value()):
            raise ValueError("still the placeholder from the example file: set a real token")
        return value

    @field_validator("admin_token", "read_token", "metrics_token", "litellm_token", "gcp_token")
    @classmethod
    def _hard_to_guess(cls, value: SecretStr | None) -> SecretStr | None:
        # Tokens the receiver checks. The halt token is the platform's to choose: no length rule.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (e.g. `openssl rand -hex 24`)")
        return value

    @field_validator("halt_token")
    @classmethod
    def _sendable(cls, value: SecretStr | None) -> SecretStr | None:
        # Else every halt call fails to build its header, and no halt is ever made.
        raw = "" if value is None else value.get_secret_value()
        if value is not None and not (raw and all("!" <= c <= "~" for c in raw)):
            raise ValueError(
                "visible ASCII only, no spaces: it is sent as 'Authorization: Bearer <token>'"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("use sqlite:///PATH or postgresql://USER:PASS@HOST/DB")
        return value

    @field_validator("sns_cert_host_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("apprise_config")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = []  # both checked, so one message names every bad field
        ts = self.thresholds
        if any(t <= 0 or t >= self.halt_at for t in ts) or ts != sorted(set(ts)):
            problems.append(
                "RECEIVER_THRESHOLDS: increasing fractions between 0 and RECEIVER_HALT_AT "
                f"({self.halt_at}), like 0.5,0.8,0.9"
            )
        if not self.webhook_secrets and not self.allow_unsigned:
            problems.append(
                "RECEIVER_WEBHOOK_SECRETS: required (comma-separated whsec_ secrets; "
                "`budget-receiver new-secret` makes one), or RECEIVER_ALLOW_UNSIGNED=true "
                "for local development only"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def sqlite_path(self) -> Path | None:
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return None

    @property
    def secret_keys(self) -> list[bytes]:
        return [decode_secret(s.get_secret_value()) for s in self.webhook_secrets]


def load_settings(env_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment and ``env_file`` (or RECEIVER_ENV_FILE)."""
    env_file = env_file or os.environ.get(f"{ENV_PREFIX}ENV_FILE")
    if env_file is not None and not Path(env_file).is_file():
        raise ConfigError([f"env file: no such file: {env_file}"])
    secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
    if secrets_dir is not None and not Path(secrets_dir).is_dir():
        raise ConfigError([f"{ENV_PREFIX}SECRETS_DIR: no such directory: {secrets_dir}"])
    try:
        return Settings(_env_file=env_file, _secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]
    except SettingsError as exc:  # e.g. a file in the secrets directory this user cannot read
        raise ConfigError([_unreadable(exc)]) from None
    except ValidationError as exc:
        raise ConfigError([p for err in exc.errors() for p in _describe(err).split("\n")]) from None


def _describe(err: Any) -> str:
    loc = [str(part) for part in err.get("loc", ()) if not isinstance(part, int)]
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc:
        return msg
    return f"{ENV_PREFIX}{loc[0].upper()}: {msg}"


def _unreadable(exc: SettingsError) -> str:
    """``RECEIVER_X: cannot read FILE: Permission denied (...)`` for a secrets file."""
    cause = exc.__cause__
    field = re.search(r'field "(\w+)"', str(exc))
    name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "settings"
    if isinstance(cause, OSError) and cause.filename:
        return (
            f"{name}: cannot read {cause.filename}: {cause.strerror}"
            f" (it must be readable by uid {os.getuid()})"
        )
    return f"{name}: {cause or exc}"
