"""Phone numbers: caller ID normalisation to E.164 and masking for logs.

Caller ID is spoofable and often not a number at all (anonymous, SIP, client
addresses); this module turns whatever Twilio sent into either a valid E.164
number or "withheld", and is the only place that formats numbers for humans.
"""

from __future__ import annotations

import phonenumbers

# Values Twilio (and carriers through it) send when the caller hides their number.
_WITHHELD_MARKERS = frozenset(
    {"", "anonymous", "restricted", "unknown", "private", "blocked", "unavailable", "withheld"}
)
# A placeholder number Twilio documents for anonymous callers; never a real subscriber.
_ANONYMOUS_PLACEHOLDERS = frozenset({"+266696687", "266696687"})


def normalise_caller_id(raw: str | None, default_region: str) -> str | None:
    """Return the caller ID in E.164, or None when it is withheld, anonymous or invalid."""
    value = (raw or "").strip()
    if value.lower() in _WITHHELD_MARKERS or value in _ANONYMOUS_PLACEHOLDERS:
        return None
    if ":" in value:  # client:alice, sip:bob@example.com — not a phone number
        return None
    return to_e164(value, default_region)


def to_e164(value: str, default_region: str) -> str | None:
    """Parse a number written any common way; None unless it is a valid number."""
    try:
        parsed = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask(e164: str | None) -> str:
    """Mask a number for logs and audit records: +1415•••0100 (country+area, last 4)."""
    if not e164:
        return "withheld"
    if len(e164) <= 8:
        return e164[:2] + "•••"
    return f"{e164[:5]}•••{e164[-4:]}"


def mask_account(number: str) -> str:
    """Mask an account number down to its last four digits."""
    return f"•••{number[-4:]}" if len(number) > 4 else "•••"


def spoken_digits(digits: str) -> str:
    """Space the digits out so text-to-speech reads them one by one."""
    return " ".join(ch for ch in digits if ch.isdigit())
