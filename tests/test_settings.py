"""Settings from an env file and RECEIVER_* variables; bad ones stop start-up clearly."""

from __future__ import annotations

import base64
import os
from decimal import Decimal
from pathlib import Path

import pytest

from receiver.errors import ConfigError
from receiver.settings import Settings, load_settings

D = Decimal
SECRET_A = "whsec_" + base64.b64encode(b"a" * 32).decode()
SECRET_B = "whsec_" + base64.b64encode(b"b" * 24).decode()
ADMIN = "adm-9f8e7d6c5b4a39281706"
READ = "rd-0a1b2c3d4e5f60718293"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No RECEIVER_* variable of the machine leaks into a test; cwd is a fresh directory."""
    for name in list(os.environ):
        if name.upper().startswith("RECEIVER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def env_file(tmp_path: Path, text: str, name: str = "receiver.env") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(*args: object, **kw: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kw)  # type: ignore[arg-type]
    return info.value


def test_reads_an_env_file(tmp_path: Path) -> None:
    """Every setting can come from the env file given on the command line."""
    path = env_file(
        tmp_path,
        f"""# comment lines and blank lines are fine

RECEIVER_HOST=192.0.2.10
RECEIVER_PORT=9000
RECEIVER_DATABASE_URL=postgresql://receiver:pw@db:5432/receiver
RECEIVER_WEBHOOK_SECRETS={SECRET_A}
RECEIVER_ADMIN_TOKEN={ADMIN}
RECEIVER_READ_TOKEN={READ}
RECEIVER_THRESHOLDS=0.25,0.75
RECEIVER_HALT_AT=1.0
RECEIVER_HALT_URL=https://agents.example.com/v1/tasks/{{task_id}}/cancel
RECEIVER_HALT_METHOD=put
RECEIVER_MAX_BODY_BYTES=131072
UNRELATED_SETTING=ignored
""",
    )
    s = load_settings(path)
    assert (s.host, s.port) == ("192.0.2.10", 9000)
    assert s.database_url == "postgresql://receiver:pw@db:5432/receiver"
    assert s.sqlite_path is None
    assert s.secret_keys == [b"a" * 32]
    assert s.admin_token is not None and s.admin_token.get_secret_value() == ADMIN
    assert s.read_token is not None and s.read_token.get_secret_value() == READ
    assert s.thresholds == [D("0.25"), D("0.75")]
    assert s.halt_at == D("1.0")
    assert s.halt_url is not None
    assert s.halt_url.get_secret_value().endswith("/{task_id}/cancel")
    assert s.halt_method == "PUT"
    assert s.max_body_bytes == 131072


def test_defaults_match_the_design(tmp_path: Path) -> None:
    """With only a secret given, the documented defaults apply."""
    s = load_settings(env_file(tmp_path, f"RECEIVER_WEBHOOK_SECRETS={SECRET_A}\n"))
    assert s.port == 8080
    assert s.database_url == "sqlite:///./data/receiver.db"
    assert s.sqlite_path == Path("./data/receiver.db")
    assert s.thresholds == [D("0.5"), D("0.8"), D("0.9")]
    assert s.halt_at == D("1.0")
    assert s.halt_method == "POST"
    assert s.max_body_bytes == 65536
    assert s.replay_tolerance_seconds == 300
    assert s.allow_unsigned is False
    assert s.notify_urls == []


def test_env_file_named_by_receiver_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RECEIVER_ENV_FILE names the env file when none is passed."""
    path = env_file(tmp_path, f"RECEIVER_WEBHOOK_SECRETS={SECRET_A}\nRECEIVER_PORT=9001\n")
    monkeypatch.setenv("RECEIVER_ENV_FILE", str(path))
    assert load_settings().port == 9001


def test_missing_env_file_is_a_config_error(tmp_path: Path) -> None:
    """An env file that does not exist is named in a ConfigError, not ignored."""
    error = config_error(tmp_path / "nope.env")
    assert "nope.env" in str(error)


def test_environment_overrides_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RECEIVER_* variable in the environment wins over the same name in the file."""
    path = env_file(
        tmp_path,
        f"RECEIVER_WEBHOOK_SECRETS={SECRET_A}\nRECEIVER_PORT=9000\nRECEIVER_HOST=10.0.0.1\n",
    )
    monkeypatch.setenv("RECEIVER_PORT", "9100")
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_B)
    s = load_settings(path)
    assert s.port == 9100
    assert s.secret_keys == [b"b" * 24]
    assert s.host == "10.0.0.1"


def test_empty_environment_variable_does_not_blank_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty RECEIVER_* variable counts as unset, so the file's value stays."""
    path = env_file(tmp_path, f"RECEIVER_WEBHOOK_SECRETS={SECRET_A}\nRECEIVER_PORT=9000\n")
    monkeypatch.setenv("RECEIVER_PORT", "")
    assert load_settings(path).port == 9000


def test_environment_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any env file, RECEIVER_* variables configure the daemon (as in a container)."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv("RECEIVER_ALLOW_UNSIGNED", "false")
    assert load_settings().secret_keys == [b"a" * 32]


@pytest.mark.parametrize(
    "value",
    [
        f"{SECRET_A},{SECRET_B}",
        f"{SECRET_A}, {SECRET_B}",
        f" {SECRET_A} ,{SECRET_B},",
        f"{SECRET_A},,{SECRET_B}",
    ],
)
def test_comma_separated_secrets(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several comma-separated secrets are all accepted (rotation), spaces and empties ignored."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", value)
    assert load_settings().secret_keys == [b"a" * 32, b"b" * 24]


NOTIFY = ["slack://T000/B000/XXXX", "mailto://user:pw@example.com", "ntfy://alerts"]


@pytest.mark.parametrize(
    "value",
    [
        " ".join(NOTIFY),
        "\n".join(NOTIFY),
        "\n  ".join(NOTIFY) + "\n",
        "\t".join(NOTIFY),
    ],
    ids=["spaces", "newlines", "indented", "tabs"],
)
def test_notify_urls_whitespace_or_newline_separated(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Apprise URLs may be separated by spaces or newlines; each becomes one channel."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv("RECEIVER_NOTIFY_URLS", value)
    assert [u.get_secret_value() for u in load_settings().notify_urls] == NOTIFY


def test_notify_urls_multiline_in_env_file(tmp_path: Path) -> None:
    """A quoted multi-line value in the env file gives one URL per line."""
    urls = "\n".join(NOTIFY)
    path = env_file(
        tmp_path, f'RECEIVER_WEBHOOK_SECRETS={SECRET_A}\nRECEIVER_NOTIFY_URLS="{urls}"\n'
    )
    assert [u.get_secret_value() for u in load_settings(path).notify_urls] == NOTIFY


@pytest.mark.parametrize(
    ("thresholds", "halt_at", "expected"),
    [
        ("0.5,0.8,0.9", None, ["0.5", "0.8", "0.9"]),
        (" 0.6 , 0.95 ", None, ["0.6", "0.95"]),
        ("0.75", None, ["0.75"]),
        ("0.5,1.0,1.1", "1.2", ["0.5", "1.0", "1.1"]),
        ("0.5", "0.8", ["0.5"]),
    ],
)
def test_thresholds_parsing(
    thresholds: str, halt_at: str | None, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Comma-separated fractions, increasing and below the halt fraction, are the thresholds."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv("RECEIVER_THRESHOLDS", thresholds)
    if halt_at is not None:
        monkeypatch.setenv("RECEIVER_HALT_AT", halt_at)
    assert load_settings().thresholds == [D(x) for x in expected]


@pytest.mark.parametrize(
    ("thresholds", "halt_at"),
    [
        ("0.9,0.5", None),  # unsorted
        ("0.5,0.5", None),  # repeated
        ("0.5,1.0", None),  # at halt_at
        ("0.5,1.5", None),  # above halt_at
        ("0.5,0.9", "0.9"),  # at a lowered halt_at
        ("0,0.5", None),  # zero
        ("-0.1,0.5", None),  # negative
        ("abc", None),
        ("0.5;0.8", None),
        ("NaN", None),
    ],
)
def test_bad_thresholds_are_refused(
    thresholds: str, halt_at: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thresholds out of order, repeated, <= 0, >= the halt fraction or not numbers are refused."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv("RECEIVER_THRESHOLDS", thresholds)
    if halt_at is not None:
        monkeypatch.setenv("RECEIVER_HALT_AT", halt_at)
    error = config_error()
    assert any(p.startswith("RECEIVER_THRESHOLDS") for p in error.problems), error.problems


@pytest.mark.parametrize("halt_at", ["0", "-1", "11", "abc"])
def test_bad_halt_at_is_refused(halt_at: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The halt fraction must be a positive number of sane size."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv("RECEIVER_THRESHOLDS", "0.001")
    monkeypatch.setenv("RECEIVER_HALT_AT", halt_at)
    assert any(p.startswith("RECEIVER_HALT_AT") for p in config_error().problems)


def test_missing_secrets_without_allow_unsigned_is_refused() -> None:
    """No webhook secret and no explicit opt-out stops start-up, naming the variable."""
    error = config_error()
    assert len(error.problems) == 1
    assert error.problems[0].startswith("RECEIVER_WEBHOOK_SECRETS")
    assert "RECEIVER_ALLOW_UNSIGNED" in error.problems[0]


@pytest.mark.parametrize("flag", ["true", "1", "yes", "TRUE"])
def test_allow_unsigned_permits_no_secrets(flag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """RECEIVER_ALLOW_UNSIGNED (dev only) lets the daemon start without secrets."""
    monkeypatch.setenv("RECEIVER_ALLOW_UNSIGNED", flag)
    s = load_settings()
    assert s.allow_unsigned is True
    assert s.webhook_secrets == []


def test_unpadded_secret_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whsec_ secret without its trailing '=' (as senders' libraries print it) starts the
    daemon, with the same key as the padded form."""
    assert SECRET_A.endswith("=")
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A.rstrip("="))
    assert load_settings().secret_keys == [b"a" * 32]


@pytest.mark.parametrize(
    "secret",
    [
        "not-a-whsec",
        "whsec_",
        "whsec_%%%%notbase64%%%%",
        "whsec_" + base64.b64encode(b"short").decode(),
    ],
)
def test_bad_secret_is_refused_without_echoing_it(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed secret is named by position under RECEIVER_WEBHOOK_SECRETS, never printed."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", f"{SECRET_A},{secret}")
    error = config_error()
    assert len(error.problems) == 1
    assert error.problems[0].startswith("RECEIVER_WEBHOOK_SECRETS")
    assert "secret 2" in error.problems[0]
    body = secret.removeprefix("whsec_")
    assert not body or body not in str(error)
    assert SECRET_A not in str(error)


def test_several_bad_fields_give_one_error_naming_each(tmp_path: Path) -> None:
    """Every bad field is reported at once, so one restart fixes them all."""
    path = env_file(
        tmp_path,
        f"""RECEIVER_WEBHOOK_SECRETS={SECRET_A}
RECEIVER_PORT=eighty
RECEIVER_DATABASE_URL=mysql://db/receiver
RECEIVER_HALT_METHOD=GET
RECEIVER_ADMIN_TOKEN=short
RECEIVER_MAX_BODY_BYTES=10
RECEIVER_LOG_LEVEL=loud
""",
    )
    error = config_error(path)
    named = sorted(p.split(":", 1)[0] for p in error.problems)
    assert named == [
        "RECEIVER_ADMIN_TOKEN",
        "RECEIVER_DATABASE_URL",
        "RECEIVER_HALT_METHOD",
        "RECEIVER_LOG_LEVEL",
        "RECEIVER_MAX_BODY_BYTES",
        "RECEIVER_PORT",
    ]
    for field in named:
        assert field in str(error)


def test_bad_thresholds_and_missing_secrets_are_both_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cross-field checks report together too, not one per restart."""
    monkeypatch.setenv("RECEIVER_THRESHOLDS", "0.9,0.5")
    error = config_error()
    named = sorted(p.split(":", 1)[0] for p in error.problems)
    assert named == ["RECEIVER_THRESHOLDS", "RECEIVER_WEBHOOK_SECRETS"]


@pytest.mark.parametrize(
    "field", ["RECEIVER_ADMIN_TOKEN", "RECEIVER_READ_TOKEN", "RECEIVER_HALT_TOKEN"]
)
@pytest.mark.parametrize(
    "token",
    [
        "changeme",
        "CHANGEME-1234567890abcdef",
        "change-me-0123456789abcdef",
        "replace-me-with-a-real-token",
        "<your admin token goes here>",
        "xxxxxxxxxxxxxxxxxxxx",
    ],
)
def test_placeholder_tokens_are_refused(
    field: str, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token still set to the example file's placeholder stops start-up."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv(field, token)
    error = config_error()
    assert [p.split(":", 1)[0] for p in error.problems] == [field]
    assert "placeholder" in str(error)
    assert token not in str(error)


CHECKED_TOKENS = [
    "RECEIVER_ADMIN_TOKEN",
    "RECEIVER_READ_TOKEN",
    "RECEIVER_METRICS_TOKEN",
    "RECEIVER_LITELLM_TOKEN",
    "RECEIVER_GCP_TOKEN",
]


@pytest.mark.parametrize("field", CHECKED_TOKENS)
@pytest.mark.parametrize("token", ["a", "0123456789abcde"])
def test_short_tokens_are_refused(field: str, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token the receiver checks, under 16 characters, is too easy to guess: refused."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv(field, token)
    assert [p.split(":", 1)[0] for p in config_error().problems] == [field]


@pytest.mark.parametrize("token", ["k7", "pk_7Qx", "0123456789abcde", "Zm9v+YmFy/YmF6=="])
def test_the_halt_token_is_the_platforms_to_choose(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver presents the halt token, it does not check it: any length will do."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv("RECEIVER_HALT_TOKEN", token)
    halt_token = load_settings().halt_token
    assert halt_token is not None and halt_token.get_secret_value() == token


@pytest.mark.parametrize(
    "token",
    [
        "t\u00f6ken-0123456789abcdef",  # long enough for the old rule, and still unsendable
        "two words 0123456789abcdef",
        "tab\there-0123456789abcdef",
        "bell\x07-0123456789abcdef",
        "t\u00f6k",
    ],
)
def test_a_halt_token_that_cannot_be_sent_is_refused(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside visible ASCII every halt call would fail to build its header: refused at start,
    without echoing the token."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv("RECEIVER_HALT_TOKEN", token)
    error = config_error()
    assert [p.split(":", 1)[0] for p in error.problems] == ["RECEIVER_HALT_TOKEN"]
    assert token not in str(error)


def test_apprise_config_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing apprise config file is named; an existing one is accepted."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET_A)
    monkeypatch.setenv("RECEIVER_APPRISE_CONFIG", str(tmp_path / "missing.yml"))
    assert config_error().problems[0].startswith("RECEIVER_APPRISE_CONFIG")
    real = tmp_path / "apprise.yml"
    real.write_text("urls:\n  - json://localhost\n")
    monkeypatch.setenv("RECEIVER_APPRISE_CONFIG", str(real))
    assert load_settings().apprise_config == real


SECRET_VALUES = {
    "RECEIVER_WEBHOOK_SECRETS": f"{SECRET_A},{SECRET_B}",
    "RECEIVER_ADMIN_TOKEN": ADMIN,
    "RECEIVER_READ_TOKEN": READ,
    "RECEIVER_HALT_TOKEN": "halt-tok-5e4d3c2b1a09f8e7",
    "RECEIVER_HALT_URL": "https://agents.example.com/halt/{task_id}?key=url-key-77aa88bb",
    "RECEIVER_NOTIFY_URLS": "slack://tokA/tokB/tokC-99zz mailto://bob:mail-pw-31337@example.com",
    "RECEIVER_DATABASE_URL": "postgresql://receiver:db-pw-8c7b6a@db:5432/receiver",
}
SECRET_FRAGMENTS = [
    SECRET_A,
    SECRET_B,
    SECRET_A.removeprefix("whsec_"),
    ADMIN,
    READ,
    "halt-tok-5e4d3c2b1a09f8e7",
    "url-key-77aa88bb",
    "tokC-99zz",
    "mail-pw-31337",
    "db-pw-8c7b6a",
]


def _set_all_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)


def test_secret_values_never_appear_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """repr() and str() of the settings (which end up in logs) show no secret value."""
    _set_all_secrets(monkeypatch)
    s = load_settings()
    assert isinstance(s, Settings)
    shown = repr(s) + str(s)
    for fragment in SECRET_FRAGMENTS:
        assert fragment not in shown, fragment


def test_secret_values_never_appear_in_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config error elsewhere never echoes a secret that was set alongside it."""
    _set_all_secrets(monkeypatch)
    monkeypatch.setenv("RECEIVER_PORT", "not-a-port")
    monkeypatch.setenv("RECEIVER_DATABASE_URL", "mysql://root:db-pw-8c7b6a@db/receiver")
    error = config_error()
    text = str(error) + repr(error) + " ".join(error.problems)
    assert "RECEIVER_PORT" in text
    assert "RECEIVER_DATABASE_URL" in text
    for fragment in SECRET_FRAGMENTS:
        assert fragment not in text, fragment


def test_slow_client_limits_have_defaults_and_bounds(tmp_path: Path) -> None:
    """Head and body deadlines and the connection limit default to 10 s, 30 s and 512, and
    values that would refuse every request or wait for ever are named at start."""
    s = load_settings(env_file(tmp_path, f"RECEIVER_WEBHOOK_SECRETS={SECRET_A}\n"))
    assert (s.header_timeout_seconds, s.body_timeout_seconds, s.max_connections) == (10, 30, 512)
    bad = env_file(
        tmp_path,
        f"""RECEIVER_WEBHOOK_SECRETS={SECRET_A}
RECEIVER_HEADER_TIMEOUT_SECONDS=0
RECEIVER_BODY_TIMEOUT_SECONDS=forever
RECEIVER_MAX_CONNECTIONS=1
""",
        name="bad.env",
    )
    named = sorted(p.split(":", 1)[0] for p in config_error(bad).problems)
    assert named == [
        "RECEIVER_BODY_TIMEOUT_SECONDS",
        "RECEIVER_HEADER_TIMEOUT_SECONDS",
        "RECEIVER_MAX_CONNECTIONS",
    ]
