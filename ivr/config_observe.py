"""The settings of what ops and engineers see: call history, metrics, log format.

Read by `ivr.config.Settings.from_env` with the rest; kept here so the settings
module stays one screen of call-handling settings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_CALL_HISTORY_DAYS = 90
MAX_CALL_HISTORY_DAYS = 3650
MIN_METRICS_TOKEN_LENGTH = 32
LOG_FORMATS = ("text", "json")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ObserveSettings:
    call_history_days: int = DEFAULT_CALL_HISTORY_DAYS  # IVR_CALL_HISTORY_DAYS
    metrics_token: str = ""  # IVR_METRICS_TOKEN; empty: no bearer access to /metrics
    metrics_allow: tuple[Network, ...] = ()  # IVR_METRICS_ALLOW: addresses/networks
    log_format: str = "text"  # IVR_LOG_FORMAT: text | json

    @property
    def metrics_enabled(self) -> bool:
        """`/metrics` is off unless a token or an allow list is set."""
        return bool(self.metrics_token or self.metrics_allow)


def read(get: Callable[[str], str | None], problems: list[str]) -> ObserveSettings:
    """The settings from the environment; each bad value adds one problem."""
    days = DEFAULT_CALL_HISTORY_DAYS
    raw_days = get("IVR_CALL_HISTORY_DAYS")
    if raw_days is not None:
        if (
            raw_days.isascii()
            and raw_days.isdigit()
            and 1 <= int(raw_days) <= MAX_CALL_HISTORY_DAYS
        ):
            days = int(raw_days)
        else:
            problems.append(
                f"IVR_CALL_HISTORY_DAYS must be a whole number of days from 1 to "
                f"{MAX_CALL_HISTORY_DAYS}, not {raw_days!r}"
            )
    token = (get("IVR_METRICS_TOKEN") or "").strip()
    if token and len(token) < MIN_METRICS_TOKEN_LENGTH:
        problems.append(
            f"IVR_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters "
            "(a random secret, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
        token = ""
    allow: list[Network] = []
    for item in (part.strip() for part in (get("IVR_METRICS_ALLOW") or "").split(",")):
        if not item:
            continue
        try:
            allow.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            problems.append(f"IVR_METRICS_ALLOW: {item!r} is not an IP address or network")
    log_format = (get("IVR_LOG_FORMAT") or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        problems.append(
            f"IVR_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}"
        )
        log_format = "text"
    return ObserveSettings(days, token, tuple(allow), log_format)
