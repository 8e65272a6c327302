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
    assert settings.allowed_countries == frozenset({"US"})  # just the default region
    assert settings.allowed_line_types == frozenset(
        {"mobile", "fixed_line", "fixed_line_or_mobile"}
    )
    assert settings.number_change_cooling_off == 7 * 24 * 3600
    assert settings.agent_context_ttl == 300  # agent context tokens live 5 minutes
    assert settings.agent_api_keys == ()  # no keys: the agent API takes agent sessions only


def test_production_names_every_missing_variable_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IVR_ENV": "production"})
    for name in PRODUCTION_REQUIRED:
        assert name in str(info.value)


def test_production_with_everything_set() -> None:
    settings = Settings.from_env(PRODUCTION_ENV)
    assert settings.is_production
    assert settings.database_url == "postgresql+psycopg://u@db/ivr"
    assert settings.agent_api_keys == ()  # agent API keys are optional in production


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
        (
            {"TWILIO_ACCOUNT_SID": ""},
            "production needs these environment variables: TWILIO_ACCOUNT_SID$",
        ),
        ({"IVR_CODE_TTL": "900"}, "at most 600 seconds"),
        ({"IVR_CODE_LENGTH": "4"}, "from 6 to 10 digits"),
        ({"IVR_ALLOWED_COUNTRIES": "US,XX"}, "IVR_ALLOWED_COUNTRIES: 'XX' is not a known region"),
        ({"IVR_ALLOWED_COUNTRIES": " , "}, "IVR_ALLOWED_COUNTRIES must name at least one"),
        ({"IVR_ALLOWED_LINE_TYPES": "mobile,fax"}, "'fax' is not a line type; choose from"),
        ({"IVR_ALLOWED_LINE_TYPES": ","}, "IVR_ALLOWED_LINE_TYPES must name at least one"),
        ({"IVR_NUMBER_CHANGE_COOLING_OFF_DAYS": "0"}, "positive whole number of days, not '0'"),
        ({"IVR_NUMBER_CHANGE_COOLING_OFF_DAYS": "1.5"}, "positive whole number of days"),
        ({"IVR_AGENT_CONTEXT_TTL": "901"}, "IVR_AGENT_CONTEXT_TTL may be at most 900 seconds"),
        ({"IVR_AGENT_CONTEXT_TTL": "0"}, "IVR_AGENT_CONTEXT_TTL must be a positive whole"),
        ({"IVR_AGENT_CONTEXT_TTL": "5m"}, "IVR_AGENT_CONTEXT_TTL must be a positive whole"),
        (
            {"IVR_AGENT_API_KEYS": "short"},
            "key 1 of 1 has 5 characters; each key needs at least 32",
        ),
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


def test_the_default_region_is_the_default_allowed_country() -> None:
    assert Settings.from_env({"IVR_DEFAULT_REGION": "gb"}).allowed_countries == frozenset({"GB"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("GB", {"GB"}),
        ("us, gb ,De", {"US", "GB", "DE"}),
        ("U S,,CA,", {"US", "CA"}),
    ],
)
def test_allowed_countries_are_parsed(raw: str, expected: set[str]) -> None:
    settings = Settings.from_env({"IVR_ALLOWED_COUNTRIES": raw})
    assert settings.allowed_countries == frozenset(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mobile", {"mobile"}),
        (" Mobile , TOLL_FREE,voip", {"mobile", "toll_free", "voip"}),
        (
            "mobile,fixed_line,fixed_line_or_mobile,toll_free,voip,personal_number",
            {
                "mobile",
                "fixed_line",
                "fixed_line_or_mobile",
                "toll_free",
                "voip",
                "personal_number",
            },
        ),
    ],
)
def test_allowed_line_types_are_parsed(raw: str, expected: set[str]) -> None:
    settings = Settings.from_env({"IVR_ALLOWED_LINE_TYPES": raw})
    assert settings.allowed_line_types == frozenset(expected)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("premium_rate", "toll fraud"),
        ("shared_cost", "toll fraud"),
        ("uan", "switchboard"),
        ("pager", "cannot answer"),
        ("voicemail", "mailbox"),
        ("unknown", "cannot tell"),
    ],
)
def test_line_types_that_cannot_receive_codes_are_never_allowed(name: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{name}' is never allowed \(.*{why}"):
        Settings.from_env({"IVR_ALLOWED_LINE_TYPES": f"mobile,{name.upper()}"})


def test_unknown_line_type_lists_only_the_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IVR_ALLOWED_LINE_TYPES": "landline"})
    valid = "fixed_line, fixed_line_or_mobile, mobile, personal_number, toll_free, voip"
    assert str(info.value).endswith(f"'landline' is not a line type; choose from {valid}")


def test_every_bad_number_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "IVR_ALLOWED_COUNTRIES": "ZZ",
                "IVR_ALLOWED_LINE_TYPES": "pager",
                "IVR_NUMBER_CHANGE_COOLING_OFF_DAYS": "soon",
            }
        )
    for fragment in ("'ZZ'", "'pager' is never allowed", "IVR_NUMBER_CHANGE_COOLING_OFF_DAYS"):
        assert fragment in str(info.value)


def test_cooling_off_is_configured_in_days_and_kept_in_seconds() -> None:
    settings = Settings.from_env({"IVR_NUMBER_CHANGE_COOLING_OFF_DAYS": "30"})
    assert settings.number_change_cooling_off == 30 * 86400


AGENT_KEY = "a" * 32
OTHER_AGENT_KEY = "b" * 48


@pytest.mark.parametrize("ttl", ["60", "900"])
def test_agent_context_ttl_is_read_in_seconds(ttl: str) -> None:
    assert Settings.from_env({"IVR_AGENT_CONTEXT_TTL": ttl}).agent_context_ttl == int(ttl)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (AGENT_KEY, (AGENT_KEY,)),
        (f" {AGENT_KEY} ,{OTHER_AGENT_KEY},", (AGENT_KEY, OTHER_AGENT_KEY)),
        (f"{AGENT_KEY},{AGENT_KEY}", (AGENT_KEY,)),
        (" , ", ()),
    ],
)
def test_agent_api_keys_are_parsed(raw: str, expected: tuple[str, ...]) -> None:
    assert Settings.from_env({"IVR_AGENT_API_KEYS": raw}).agent_api_keys == expected


def test_agent_api_keys_are_accepted_in_production() -> None:
    settings = Settings.from_env({**PRODUCTION_ENV, "IVR_AGENT_API_KEYS": AGENT_KEY})
    assert settings.agent_api_keys == (AGENT_KEY,)


def test_a_short_agent_api_key_is_named_by_position_never_by_value() -> None:
    short = "s3cr3t-but-too-short-31-chars!!"
    assert len(short) == 31
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IVR_AGENT_API_KEYS": f"{AGENT_KEY},{short}"})
    message = str(info.value)
    assert "IVR_AGENT_API_KEYS: key 2 of 2 has 31 characters" in message
    assert short not in message and AGENT_KEY not in message


def test_staff_and_jobs_defaults_follow_the_mode() -> None:
    development = Settings.from_env({})
    assert (development.staff_2fa, development.jobs) == ("optional", "in-process")
    assert development.staff_session_idle == 30 * 60
    assert development.staff_session_max == 12 * 3600
    assert development.digits_max_failures == 10
    production = Settings.from_env(PRODUCTION_ENV)
    assert (production.staff_2fa, production.jobs) == ("required", "worker")


def test_staff_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "IVR_STAFF_2FA": "Required",
            "IVR_STAFF_SESSION_IDLE_MINUTES": "15",
            "IVR_STAFF_SESSION_HOURS": "8",
            "IVR_DIGITS_MAX_FAILURES": "4",
            "IVR_JOBS": "worker",
            "IVR_JOBS_REDIS_URL": "redis://jobs.example:6379/2",
        }
    )
    assert settings.staff_2fa == "required"
    assert (settings.staff_session_idle, settings.staff_session_max) == (15 * 60, 8 * 3600)
    assert settings.digits_max_failures == 4
    assert (settings.jobs, settings.jobs_redis_url) == ("worker", "redis://jobs.example:6379/2")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"IVR_STAFF_2FA": "sometimes"}, "IVR_STAFF_2FA must be one of required, optional"),
        ({"IVR_JOBS": "cron"}, "IVR_JOBS must be one of in-process, worker, not 'cron'"),
        ({"IVR_DIGITS_MAX_FAILURES": "0"}, "IVR_DIGITS_MAX_FAILURES must be a positive"),
        (
            {"IVR_STAFF_SESSION_IDLE_MINUTES": "120", "IVR_STAFF_SESSION_HOURS": "1"},
            "IVR_STAFF_SESSION_IDLE_MINUTES may not exceed IVR_STAFF_SESSION_HOURS",
        ),
    ],
)
def test_bad_staff_and_jobs_settings_are_explained(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(overrides)


def test_production_refuses_optional_staff_2fa() -> None:
    with pytest.raises(ConfigError, match="IVR_STAFF_2FA=optional is refused in production"):
        Settings.from_env({**PRODUCTION_ENV, "IVR_STAFF_2FA": "optional"})


@pytest.mark.parametrize(("raw", "hops"), [(None, 0), ("0", 0), ("1", 1), ("2", 2)])
def test_proxy_hops_are_read(raw: str | None, hops: int) -> None:
    environ = {} if raw is None else {"IVR_PROXY_HOPS": raw}
    assert Settings.from_env(environ).proxy_hops == hops


@pytest.mark.parametrize("raw", ["-1", "one", "²", "9"])
def test_bad_proxy_hops_are_explained(raw: str) -> None:
    with pytest.raises(ConfigError, match="IVR_PROXY_HOPS must be a whole number from 0 to 5"):
        Settings.from_env({"IVR_PROXY_HOPS": raw})
