"""Settings from the environment: development defaults, production refusals."""

from __future__ import annotations

import pytest

from ivr.config import PRODUCTION_REQUIRED, Settings
from ivr.errors import ConfigError

PRODUCTION_ENV = {
    "IVR_ENV": "production",
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "token",
    "IVR_SECRET_KEY": "secret",
    "IVR_PUBLIC_URL": "https://ivr.example.com",
    "DATABASE_URL": "postgres://u@db/ivr",
    "REDIS_URL": "redis://cache:6379/0",
}


def test_development_runs_on_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.env == "development"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.redis_url is None  # the in-process stand-in
    assert settings.validate_signatures  # on by default, even in development
    assert settings.twilio_api_url == "https://api.twilio.com"
    assert settings.default_region == "US"
    assert settings.delivery == "outbox"  # nothing leaves the machine
    assert settings.code_ttl == 300 and settings.code_length == 6


def test_production_names_every_missing_variable_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IVR_ENV": "production"})
    for name in PRODUCTION_REQUIRED:
        assert name in str(info.value)


def test_production_with_everything_set() -> None:
    settings = Settings.from_env(PRODUCTION_ENV)
    assert settings.is_production
    assert settings.database_url == "postgresql+psycopg://u@db/ivr"


def test_wsgi_entry_point_defaults_to_production() -> None:
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        Settings.from_env({}, default_env="production")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"IVR_PUBLIC_URL": "http://ivr.example.com"}, "must be an https:// URL"),
        ({"IVR_SKIP_SIGNATURE_CHECK": "1"}, "refused in production"),
        ({"IVR_DEFAULT_REGION": "XX"}, "not a known region code"),
        ({"IVR_CALL_STATE_TTL": "-5"}, "IVR_CALL_STATE_TTL must be a positive"),
        ({"IVR_STORAGE_TIMEOUT": "soon"}, "IVR_STORAGE_TIMEOUT must be a positive"),
        ({"IVR_ENV": "staging"}, "IVR_ENV must be"),
        ({"IVR_DELIVERY": "outbox"}, "refused in production"),
        ({"TWILIO_ACCOUNT_SID": ""}, "set TWILIO_ACCOUNT_SID"),
        ({"IVR_CODE_TTL": "900"}, "at most 600 seconds"),
        ({"IVR_CODE_LENGTH": "4"}, "from 6 to 10 digits"),
    ],
)
def test_bad_settings_are_explained(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**PRODUCTION_ENV, **overrides})


def test_development_may_skip_signatures_only_when_asked() -> None:
    assert not Settings.from_env({"IVR_SKIP_SIGNATURE_CHECK": "true"}).validate_signatures


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("sip:nobody", "needs user@host"),
        ("queue:", "needs a name"),
        ("agents", "not a phone number"),
    ],
)
def test_bad_agent_target_stops_the_boot(make_app, target: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        make_app(IVR_AGENT_TARGET=target)


def test_unknown_flow_stops_the_boot(make_app) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="IVR_FLOW 'sales' is not among the flows"):
        make_app(IVR_FLOW="sales")
