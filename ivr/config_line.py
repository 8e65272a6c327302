"""The settings of the support line itself: the agent line for queued calls and
voicemail (issue 15).

Read by `ivr.config.Settings.from_env` with the rest (as `settings.line`); kept here so
the settings module stays one screen of call-handling settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_VOICEMAIL_DAYS = 30
MAX_VOICEMAIL_DAYS = 3650
MIN_PIN_LENGTH, MAX_PIN_LENGTH = 6, 12
# Played to a holding caller between announcements when the transfer node names no
# hold_music: Twilio's own classical demo track (an audio file: `<Play>` cannot play the
# twimlet playlist Twilio's default waitUrl points at, which is a TwiML document).
DEFAULT_HOLD_MUSIC = "https://demo.twilio.com/docs/classic.mp3"
MAX_HOLD_MUSIC_URL = 1024


@dataclass(frozen=True)
class LineSettings:
    # IVR_AGENT_PHONES: E.164 numbers allowed to call the agent line (comma-separated).
    agent_phones: tuple[str, ...] = ()
    # IVR_AGENT_PIN: a shared PIN for the agent line ("" : only staff accounts' own PINs).
    agent_pin: str = ""
    voicemail_days: int = DEFAULT_VOICEMAIL_DAYS  # IVR_VOICEMAIL_DAYS
    # IVR_HOLD_MUSIC_URL: music between hold announcements (None: "none", silence).
    hold_music: str | None = DEFAULT_HOLD_MUSIC


def read(
    get: Callable[[str], str | None], default_region: str, problems: list[str]
) -> LineSettings:
    """The settings from the environment; each bad value adds one problem."""
    from ivr.phone import to_e164

    phones: list[str] = []
    for item in (part.strip() for part in (get("IVR_AGENT_PHONES") or "").split(",")):
        if not item:
            continue
        number = to_e164(item, default_region)
        if number is None:
            problems.append(f"IVR_AGENT_PHONES: {item!r} is not a phone number")
        elif number not in phones:
            phones.append(number)
    pin = (get("IVR_AGENT_PIN") or "").strip()
    if pin and not (
        pin.isascii() and pin.isdigit() and MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH
    ):
        problems.append(f"IVR_AGENT_PIN must be {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} keypad digits")
        pin = ""
    days = DEFAULT_VOICEMAIL_DAYS
    raw_days = get("IVR_VOICEMAIL_DAYS")
    if raw_days is not None:
        if raw_days.isascii() and raw_days.isdigit() and 1 <= int(raw_days) <= MAX_VOICEMAIL_DAYS:
            days = int(raw_days)
        else:
            problems.append(
                f"IVR_VOICEMAIL_DAYS must be a whole number of days from 1 to "
                f"{MAX_VOICEMAIL_DAYS}, not {raw_days!r}"
            )
    return LineSettings(tuple(phones), pin, days, _hold_music(get, problems))


def _hold_music(get: Callable[[str], str | None], problems: list[str]) -> str | None:
    """IVR_HOLD_MUSIC_URL: unset, Twilio's track; "none", silence; else an https URL."""
    from urllib.parse import urlsplit

    raw = get("IVR_HOLD_MUSIC_URL")
    if raw is None:
        return DEFAULT_HOLD_MUSIC
    url = raw.strip()
    if url.lower() == "none":
        return None
    parts = urlsplit(url)
    if (
        len(url) > MAX_HOLD_MUSIC_URL
        or any(ch.isspace() or ch in '<>"' for ch in url)
        or parts.scheme != "https"
        or not parts.hostname
    ):
        problems.append(
            "IVR_HOLD_MUSIC_URL must be an https:// URL of an audio file (mp3 or wav), "
            f"at most {MAX_HOLD_MUSIC_URL} characters, or none for silence"
        )
        return DEFAULT_HOLD_MUSIC
    return url
