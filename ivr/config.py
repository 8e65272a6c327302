"""Settings read from the environment (12-factor), with development defaults.

Development runs with no account anywhere: SQLite in the instance folder, the
in-process Redis stand-in, a local auth token the simulator signs with. Production
has no defaults for secrets: a missing one stops the boot with one message that
names every missing variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers

from ivr import config_line, config_observe
from ivr.config_line import LineSettings
from ivr.config_observe import ObserveSettings
from ivr.errors import ConfigError
from ivr.phone import LINE_TYPES, WHY_NEVER_ALLOWED
from ivr.storage.kv import is_cluster_url

DEVELOPMENT = "development"
APP_FACTORY = "ivr.app_factory"  # app.extensions key: the factory that built the app
PRODUCTION = "production"

# Variables production cannot run without (product.md, issue 2).
PRODUCTION_REQUIRED = (
    "TWILIO_ACCOUNT_SID",  # production always sends through Twilio (the outbox is refused)
    "TWILIO_AUTH_TOKEN",
    "IVR_SECRET_KEY",
    "IVR_PUBLIC_URL",
    "DATABASE_URL",
    "REDIS_URL",
)

# Local defaults: safe because they only ever exist on a developer's machine.
DEV_DEFAULTS = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "dev-auth-token",
    "IVR_SECRET_KEY": "dev-secret-key-not-for-production",
    "IVR_PUBLIC_URL": "http://127.0.0.1:5000",
}

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Agent context tokens are short-lived ("minutes", issue 5): 5 by default, 15 at most.
DEFAULT_AGENT_CONTEXT_TTL = 300
MAX_AGENT_CONTEXT_TTL = 900
# An agent API key must be hard to guess: 32 characters is 128+ bits from a token generator.
MIN_AGENT_API_KEY_LENGTH = 32

# Staff (agent, supervisor, ops) sign-in: TOTP as a second factor, and sessions that end
# after idle and absolute limits (OWASP Session Management: minutes idle, hours absolute).
STAFF_2FA_MODES = ("required", "optional")
DEFAULT_STAFF_SESSION_IDLE_MINUTES = 30
DEFAULT_STAFF_SESSION_HOURS = 12  # one shift

# Wrong account digits per account, across calls, within a day before phone entry stops.
DEFAULT_DIGITS_MAX_FAILURES = 10

# Where background jobs run: a thread of the web process (development: one command, no
# worker to start) or the Procfile's separate `worker:` process (production).
JOBS_IN_PROCESS = "in-process"
JOBS_WORKER = "worker"
JOBS_MODES = (JOBS_IN_PROCESS, JOBS_WORKER)

# IVR_REDIS_PREFIX: no braces (they would make the prefix every key's hash tag), no spaces.
REDIS_PREFIX = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Line types a new phone number may have unless IVR_ALLOWED_LINE_TYPES says otherwise.
DEFAULT_LINE_TYPES = frozenset({"mobile", "fixed_line", "fixed_line_or_mobile"})


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, validated once at boot."""

    env: str
    database_url: str
    redis_url: str | None  # None: the in-process stand-in (development only)
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_api_url: str
    public_url: str
    support_number: str
    default_region: str
    secret_key: str
    agent_target: str
    flow: str
    validate_signatures: bool
    flows_dir: Path
    prompts_dir: Path
    call_state_ttl: int
    storage_timeout: float
    delivery: str  # "twilio" or "outbox" (the local stand-in: nothing leaves the machine)
    outbox_path: Path
    smtp_url: str | None
    email_from: str
    code_ttl: int
    code_length: int
    allowed_countries: frozenset[str]  # ISO regions a new phone number may belong to
    allowed_line_types: frozenset[str]  # names from ivr.phone.LINE_TYPES
    number_change_cooling_off: int  # seconds the account stays flagged "number changed"
    agent_context_ttl: int  # seconds a signed agent context token stays loadable
    agent_api_keys: tuple[str, ...]  # bearer keys of the agent API; empty: keys disabled
    staff_2fa: str = "optional"  # "required": every staff sign-in needs a TOTP code
    staff_session_idle: int = DEFAULT_STAFF_SESSION_IDLE_MINUTES * 60  # seconds
    staff_session_max: int = DEFAULT_STAFF_SESSION_HOURS * 3600  # seconds, from sign-in
    digits_max_failures: int = DEFAULT_DIGITS_MAX_FAILURES  # per account per 24 h
    jobs: str = JOBS_IN_PROCESS  # JOBS_IN_PROCESS or JOBS_WORKER
    jobs_redis_url: str | None = None  # the job queue's Redis; None: REDIS_URL's
    proxy_hops: int = 0  # trusted proxies in front (X-Forwarded-For entries to believe)
    # Call history, metrics and log format (ivr.config_observe).
    observe: ObserveSettings = field(default_factory=ObserveSettings)
    # The agent line for queued calls and voicemail (ivr.config_line).
    line: LineSettings = field(default_factory=LineSettings)

    @property
    def is_production(self) -> bool:
        return self.env == PRODUCTION

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        default_env: str = DEVELOPMENT,
        instance_path: Path | None = None,
    ) -> Settings:
        """Read and check the environment; raise ConfigError listing every problem."""
        env_vars = dict(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env_vars.get(name, "").strip()
            return value or None

        mode = (get("IVR_ENV") or default_env).lower()
        problems: list[str] = []
        if mode not in (DEVELOPMENT, PRODUCTION):
            problems.append(f"IVR_ENV must be 'development' or 'production', not {mode!r}")
            mode = PRODUCTION  # judge the rest by the stricter rules

        if mode == PRODUCTION:
            missing = [name for name in PRODUCTION_REQUIRED if not get(name)]
            if missing:
                problems.append(
                    "production needs these environment variables: " + ", ".join(missing)
                )

        def setting(name: str, fallback: str) -> str:
            value = get(name)
            if value is not None:
                return value
            return DEV_DEFAULTS.get(name, fallback) if mode == DEVELOPMENT else fallback

        public_url = setting("IVR_PUBLIC_URL", "").rstrip("/")
        if mode == PRODUCTION and public_url and not public_url.startswith("https://"):
            problems.append("IVR_PUBLIC_URL must be an https:// URL in production")

        region = (get("IVR_DEFAULT_REGION") or "US").upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            problems.append(f"IVR_DEFAULT_REGION {region!r} is not a known region code")

        skip = (get("IVR_SKIP_SIGNATURE_CHECK") or "").lower() in ("1", "true", "yes")
        if skip and mode == PRODUCTION:
            problems.append("IVR_SKIP_SIGNATURE_CHECK is refused in production")

        ttl = _int_setting(get("IVR_CALL_STATE_TTL"), 4 * 3600, "IVR_CALL_STATE_TTL", problems)
        timeout = _float_setting(get("IVR_STORAGE_TIMEOUT"), 1.5, "IVR_STORAGE_TIMEOUT", problems)

        sends_for_real = bool(get("TWILIO_ACCOUNT_SID")) or mode == PRODUCTION
        delivery = (get("IVR_DELIVERY") or ("twilio" if sends_for_real else "outbox")).lower()
        if delivery not in ("twilio", "outbox"):
            problems.append(f"IVR_DELIVERY must be 'twilio' or 'outbox', not {delivery!r}")
        elif delivery == "outbox" and mode == PRODUCTION:
            problems.append(
                "IVR_DELIVERY=outbox (no SMS or calls leave the machine) is refused in production"
            )
        code_ttl = _int_setting(get("IVR_CODE_TTL"), 300, "IVR_CODE_TTL", problems)
        if code_ttl > 600:
            problems.append("IVR_CODE_TTL may be at most 600 seconds (10 minutes)")
        code_length = _int_setting(get("IVR_CODE_LENGTH"), 6, "IVR_CODE_LENGTH", problems)
        if not 6 <= code_length <= 10:
            problems.append("IVR_CODE_LENGTH must be from 6 to 10 digits")
        countries = _allowed_countries(get("IVR_ALLOWED_COUNTRIES"), region, problems)
        line_types = _allowed_line_types(get("IVR_ALLOWED_LINE_TYPES"), problems)
        cooling_off_days = _int_setting(
            get("IVR_NUMBER_CHANGE_COOLING_OFF_DAYS"),
            7,
            "IVR_NUMBER_CHANGE_COOLING_OFF_DAYS",
            problems,
            unit="days",
        )
        agent_context_ttl = _int_setting(
            get("IVR_AGENT_CONTEXT_TTL"),
            DEFAULT_AGENT_CONTEXT_TTL,
            "IVR_AGENT_CONTEXT_TTL",
            problems,
        )
        if agent_context_ttl > MAX_AGENT_CONTEXT_TTL:
            problems.append(
                f"IVR_AGENT_CONTEXT_TTL may be at most {MAX_AGENT_CONTEXT_TTL} seconds (15 minutes)"
            )
        agent_api_keys = _agent_api_keys(get("IVR_AGENT_API_KEYS"), problems)
        staff_2fa = _choice(
            get("IVR_STAFF_2FA"),
            "required" if mode == PRODUCTION else "optional",
            "IVR_STAFF_2FA",
            STAFF_2FA_MODES,
            problems,
        )
        if staff_2fa != "required" and mode == PRODUCTION:
            problems.append("IVR_STAFF_2FA=optional is refused in production")
        session_idle = _int_setting(
            get("IVR_STAFF_SESSION_IDLE_MINUTES"),
            DEFAULT_STAFF_SESSION_IDLE_MINUTES,
            "IVR_STAFF_SESSION_IDLE_MINUTES",
            problems,
            unit="minutes",
        )
        session_hours = _int_setting(
            get("IVR_STAFF_SESSION_HOURS"),
            DEFAULT_STAFF_SESSION_HOURS,
            "IVR_STAFF_SESSION_HOURS",
            problems,
            unit="hours",
        )
        if session_idle > session_hours * 60:
            problems.append("IVR_STAFF_SESSION_IDLE_MINUTES may not exceed IVR_STAFF_SESSION_HOURS")
        digits_max_failures = _int_setting(
            get("IVR_DIGITS_MAX_FAILURES"),
            DEFAULT_DIGITS_MAX_FAILURES,
            "IVR_DIGITS_MAX_FAILURES",
            problems,
            unit="entries",
        )
        jobs = _choice(
            get("IVR_JOBS"),
            JOBS_WORKER if mode == PRODUCTION else JOBS_IN_PROCESS,
            "IVR_JOBS",
            JOBS_MODES,
            problems,
        )

        proxy_hops = _count_setting(get("IVR_PROXY_HOPS"), "IVR_PROXY_HOPS", problems)
        observe = config_observe.read(get, problems)
        line = config_line.read(get, region, problems)
        _check_redis(get("REDIS_URL"), get("IVR_JOBS_REDIS_URL"), get("IVR_REDIS_PREFIX"), problems)

        if problems:
            raise ConfigError("Cannot start ivr: " + "; ".join(problems))

        instance = instance_path or PROJECT_ROOT / "instance"
        database_url = get("DATABASE_URL") or f"sqlite:///{instance / 'ivr.sqlite3'}"
        return cls(
            env=mode,
            database_url=_normalise_database_url(database_url),
            redis_url=get("REDIS_URL"),
            twilio_account_sid=setting("TWILIO_ACCOUNT_SID", ""),
            twilio_auth_token=setting("TWILIO_AUTH_TOKEN", ""),
            twilio_api_url=(get("IVR_TWILIO_API_URL") or "https://api.twilio.com").rstrip("/"),
            public_url=public_url,
            support_number=get("IVR_SUPPORT_NUMBER") or "+15005550006",
            default_region=region,
            secret_key=setting("IVR_SECRET_KEY", ""),
            agent_target=get("IVR_AGENT_TARGET") or "queue:support",
            flow=get("IVR_FLOW") or "support",
            validate_signatures=not skip,
            flows_dir=Path(get("IVR_FLOWS_DIR") or PROJECT_ROOT / "flows"),
            prompts_dir=Path(get("IVR_PROMPTS_DIR") or PROJECT_ROOT / "prompts"),
            call_state_ttl=ttl,
            storage_timeout=timeout,
            delivery=delivery,
            outbox_path=Path(get("IVR_OUTBOX_PATH") or instance / "outbox.jsonl"),
            smtp_url=get("IVR_SMTP_URL"),
            email_from=get("IVR_EMAIL_FROM") or "support@example.com",
            code_ttl=code_ttl,
            code_length=code_length,
            allowed_countries=countries,
            allowed_line_types=line_types,
            number_change_cooling_off=cooling_off_days * 24 * 3600,
            agent_context_ttl=agent_context_ttl,
            agent_api_keys=agent_api_keys,
            staff_2fa=staff_2fa,
            staff_session_idle=session_idle * 60,
            staff_session_max=session_hours * 3600,
            digits_max_failures=digits_max_failures,
            jobs=jobs,
            jobs_redis_url=get("IVR_JOBS_REDIS_URL"),
            proxy_hops=proxy_hops,
            observe=observe,
            line=line,
        )


def _check_redis(
    redis_url: str | None, jobs_redis_url: str | None, prefix: str | None, problems: list[str]
) -> None:
    """A Redis Cluster needs a single Redis for the job queue (RQ cannot use a cluster),
    and the key prefix must not hold a hash tag (ivr.storage.keys reads it)."""
    if is_cluster_url(redis_url) and jobs_redis_url is None:
        problems.append(
            "REDIS_URL names a Redis Cluster, which the job queue (RQ) cannot use: "
            "set IVR_JOBS_REDIS_URL to a single Redis"
        )
    if is_cluster_url(jobs_redis_url):
        problems.append("IVR_JOBS_REDIS_URL must name a single Redis, not a Redis Cluster")
    if prefix is not None and not REDIS_PREFIX.fullmatch(prefix):
        problems.append(
            "IVR_REDIS_PREFIX may hold only letters, digits and . _ - : (at most 64), "
            f"not {prefix!r}"
        )


def _count_setting(raw: str | None, name: str, problems: list[str]) -> int:
    """A whole number from 0 to 5 (0 when unset)."""
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 5:
        problems.append(f"{name} must be a whole number from 0 to 5, not {raw!r}")
        return 0
    return int(raw)


def _choice(
    raw: str | None, default: str, name: str, choices: tuple[str, ...], problems: list[str]
) -> str:
    """One of a few words (case-insensitive); a problem naming the choices otherwise."""
    if raw is None:
        return default
    value = raw.lower()
    if value not in choices:
        problems.append(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
        return default
    return value


def _normalise_database_url(url: str) -> str:
    """Heroku-style postgres:// URLs → the psycopg 3 driver SQLAlchemy expects."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _int_setting(
    raw: str | None, default: int, name: str, problems: list[str], *, unit: str = "seconds"
) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        problems.append(f"{name} must be a positive whole number of {unit}, not {raw!r}")
        return default
    return value


def _names(raw: str) -> list[str]:
    """Split a comma-separated setting; spaces are ignored, empty items dropped."""
    return [item for item in (part.replace(" ", "") for part in raw.split(",")) if item]


def _allowed_countries(raw: str | None, region: str, problems: list[str]) -> frozenset[str]:
    """IVR_ALLOWED_COUNTRIES: region codes a new phone number may belong to."""
    if raw is None:
        return frozenset({region})
    codes = [code.upper() for code in _names(raw)]
    if not codes:
        problems.append("IVR_ALLOWED_COUNTRIES must name at least one region code")
    for code in codes:
        if code not in phonenumbers.SUPPORTED_REGIONS:
            problems.append(f"IVR_ALLOWED_COUNTRIES: {code!r} is not a known region code")
    return frozenset(codes)


def _allowed_line_types(raw: str | None, problems: list[str]) -> frozenset[str]:
    """IVR_ALLOWED_LINE_TYPES: kinds of line a new phone number may be.

    Some kinds are refused whatever the setting says: one-time codes must reach a phone
    the customer answers themselves, and must not be a way to run up our bill.
    """
    if raw is None:
        return DEFAULT_LINE_TYPES
    names = [name.lower() for name in _names(raw)]
    if not names:
        problems.append("IVR_ALLOWED_LINE_TYPES must name at least one line type")
    valid = sorted(set(LINE_TYPES) - set(WHY_NEVER_ALLOWED))
    for name in names:
        if name in WHY_NEVER_ALLOWED:
            problems.append(
                f"IVR_ALLOWED_LINE_TYPES: {name!r} is never allowed ({WHY_NEVER_ALLOWED[name]})"
            )
        elif name not in LINE_TYPES:
            problems.append(
                f"IVR_ALLOWED_LINE_TYPES: {name!r} is not a line type; "
                f"choose from {', '.join(valid)}"
            )
    return frozenset(names)


def _agent_api_keys(raw: str | None, problems: list[str]) -> tuple[str, ...]:
    """IVR_AGENT_API_KEYS: comma-separated bearer keys for the agent API (none: disabled).

    A problem names a short key by its position and length only: the value is a secret
    and the message ends up in boot logs.
    """
    if raw is None:
        return ()
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_AGENT_API_KEY_LENGTH:
            problems.append(
                f"IVR_AGENT_API_KEYS: key {position} of {len(keys)} has {len(key)} characters;"
                f" each key needs at least {MIN_AGENT_API_KEY_LENGTH}"
            )
    return tuple(dict.fromkeys(keys))


def _float_setting(raw: str | None, default: float, name: str, problems: list[str]) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        problems.append(f"{name} must be a positive number of seconds, not {raw!r}")
        return default
    return value
