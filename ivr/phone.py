"""Phone numbers: caller ID normalisation to E.164, kinds of line, and masking for logs.

Caller ID is spoofable and often not a number at all (anonymous, SIP, client
addresses); this module turns whatever Twilio sent into either a valid E.164
number or "withheld", and is the only place that formats numbers for humans.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import phonenumbers
from phonenumbers import PhoneNumberType

# Values Twilio (and carriers through it) send when the caller hides their number.
_WITHHELD_MARKERS = frozenset(
    {"", "anonymous", "restricted", "unknown", "private", "blocked", "unavailable", "withheld"}
)
# A placeholder number Twilio documents for anonymous callers; never a real subscriber.
_ANONYMOUS_PLACEHOLDERS = frozenset({"+266696687", "266696687"})

# Our setting names for phonenumbers' line types (IVR_ALLOWED_LINE_TYPES).
LINE_TYPES: Mapping[str, int] = MappingProxyType(
    {
        "mobile": PhoneNumberType.MOBILE,
        "fixed_line": PhoneNumberType.FIXED_LINE,
        # Where mobile and fixed numbers share ranges (all of NANP) this is all phonenumbers knows.
        "fixed_line_or_mobile": PhoneNumberType.FIXED_LINE_OR_MOBILE,
        "toll_free": PhoneNumberType.TOLL_FREE,
        "voip": PhoneNumberType.VOIP,
        "personal_number": PhoneNumberType.PERSONAL_NUMBER,
        "premium_rate": PhoneNumberType.PREMIUM_RATE,
        "shared_cost": PhoneNumberType.SHARED_COST,
        "uan": PhoneNumberType.UAN,
        "pager": PhoneNumberType.PAGER,
        "voicemail": PhoneNumberType.VOICEMAIL,
        "unknown": PhoneNumberType.UNKNOWN,
    }
)

# Line types no configuration may allow for a phone that receives one-time codes, and why.
WHY_NEVER_ALLOWED: Mapping[str, str] = MappingProxyType(
    {
        "premium_rate": "toll fraud: every code call-back earns the number's owner money",
        "shared_cost": "toll fraud: code call-backs cost more and pay the number's operator",
        "uan": "a company switchboard number, not one person's phone",
        "pager": "a pager cannot answer a code call-back",
        "voicemail": "a code left in a mailbox can be heard by whoever reaches the mailbox",
        "unknown": "phonenumbers cannot tell what kind of line it is",
    }
)
NEVER_ALLOWED = frozenset(WHY_NEVER_ALLOWED)


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
