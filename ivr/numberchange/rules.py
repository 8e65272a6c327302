"""Checking a new phone number a caller keyed in on the keypad (security.md, number change).

The number becomes where one-time codes go, so it must be a real, dialable number
of an allowed country and of a kind a person answers (no premium rate, shared cost,
UAN, pager or voicemail), and not the number already on file. This module only
judges digits against rules; the ownership call-back, the duplicate-account check,
storage and audit live in the number-change service. No Flask, no Twilio, no I/O.

Parsing, validity, line types and grouping all come from `phonenumbers`; the only
thing decided here is which keyed forms we accept: the default region's national
form (with or without its trunk prefix) and the international form behind the
region's own international (IDD) prefix, since a keypad has no "+".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import phonenumbers
from phonenumbers import CountryCodeSource, PhoneNumberFormat

from ivr.phone import LINE_TYPES

if TYPE_CHECKING:
    from ivr.config import Settings


# Why a number was refused, in the order the checks run (the first failing one wins).
PROBLEMS = ("invalid", "country", "line_type", "same_number")

# E.164 numbers have at most 15 digits, and common international prefixes 2 to 4: anything
# longer is a stuck key, not a number (the parser would refuse it anyway, only later).
MAX_KEYED_DIGITS = 20

# The two keyed forms we accept, as phonenumbers reports how it found the country code.
_NATIONAL = CountryCodeSource.FROM_DEFAULT_COUNTRY
_INTERNATIONAL = CountryCodeSource.FROM_NUMBER_WITH_IDD
# "14155550123" in NANP: the country code doubles as the trunk prefix, so phonenumbers
# reports a country code without "+"; see _keyed_form_accepted.
_COUNTRY_CODE_WITHOUT_PLUS = CountryCodeSource.FROM_NUMBER_WITHOUT_PLUS_SIGN


@dataclass(frozen=True)
class NumberRules:
    """Which new numbers are acceptable, and how callers in the default region dial."""

    region: str  # IVR_DEFAULT_REGION, e.g. "US": how the keyed digits are read
    allowed_countries: frozenset[str]
    allowed_line_types: frozenset[str]  # names from LINE_TYPES

    @classmethod
    def from_settings(cls, settings: Settings) -> NumberRules:
        """The rules the service was configured with."""
        return cls(
            region=settings.default_region,
            allowed_countries=settings.allowed_countries,
            allowed_line_types=settings.allowed_line_types,
        )

    @property
    def international_prefix(self) -> str:
        """The digits dialled before a country code from the region ("011" US, "00" GB).

        Empty for regions with several prefixes and no preferred one (carrier selection,
        as in BR or KR): phonenumbers still recognises each of them when parsing.
        """
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(self.region)
        if metadata is None:
            return ""
        prefix = metadata.preferred_international_prefix
        if prefix is None and re.fullmatch(r"\d+", metadata.international_prefix or ""):
            prefix = metadata.international_prefix
        # "8~10" (RU, KZ): the "~" means wait for a second dial tone; a keypad sends "810".
        return phonenumbers.normalize_digits_only(prefix or "")

    @property
    def allowed_types(self) -> frozenset[int]:
        """The allowed line types as phonenumbers' PhoneNumberType values."""
        return frozenset(LINE_TYPES[name] for name in self.allowed_line_types)


@dataclass(frozen=True)
class Accepted:
    """The new number passed every check."""

    e164: str


@dataclass(frozen=True)
class Rejected:
    """The new number failed a check; problem is one of PROBLEMS."""

    problem: str


def check_new_number(keyed: str, rules: NumberRules, current: str | None) -> Accepted | Rejected:
    """Judge the digits a caller keyed as their new number; current is the number on file."""
    number = _parse_keyed(keyed, rules)
    if number is None or not phonenumbers.is_valid_number(number):
        return Rejected("invalid")
    if phonenumbers.region_code_for_number(number) not in rules.allowed_countries:
        return Rejected("country")
    if phonenumbers.number_type(number) not in rules.allowed_types:
        return Rejected("line_type")
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if e164 == current:
        return Rejected("same_number")
    return Accepted(e164)


def spoken(e164: str, rules: NumberRules) -> str:
    """The number as a caller in the region dials it, for text-to-speech to read back.

    Digits are spaced so they are read one by one, and the groups people write the
    number in (area code, exchange, line: phonenumbers' formatting) are separated by
    ", " so the voice pauses between them: "4 1 5, 5 5 5, 0 1 2 3". A number sharing
    the region's country code is read in national format, trunk prefix included where
    it is written ("0 7 4 0 0, ..." in GB; the US national format has none); any other
    is read as dialled from the region: international prefix, country code, number.
    """
    number = phonenumbers.parse(e164)
    if number.country_code == phonenumbers.country_code_for_region(rules.region):
        groups = _digit_groups(phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL))
    else:
        international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        groups = [rules.international_prefix, *_digit_groups(international)]
    return ", ".join(" ".join(group) for group in groups if group)


def _parse_keyed(keyed: str, rules: NumberRules) -> phonenumbers.PhoneNumber | None:
    """Parse keypad digits in one of the two accepted forms; None for anything else."""
    digits = keyed.removesuffix("#")  # Twilio strips the finishing key, but be sure
    if not digits.isascii() or not digits.isdigit() or len(digits) > MAX_KEYED_DIGITS:
        return None
    try:
        # phonenumbers strips the region's international prefix (all its variants) itself.
        number = phonenumbers.parse(digits, rules.region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return None
    return number if _keyed_form_accepted(number, rules.region) else None


def _keyed_form_accepted(number: phonenumbers.PhoneNumber, region: str) -> bool:
    """Only the national and the IDD form, not a country code keyed without its prefix.

    phonenumbers also reads "447400123456" from GB as +44: no one dials that, and a
    bare country code is ambiguous with national numbers. It is allowed only where it
    is the national form too: the NANP trunk prefix "1" is also the country code.
    """
    source = number.country_code_source
    if source in (_NATIONAL, _INTERNATIONAL):
        return True
    if source != _COUNTRY_CODE_WITHOUT_PLUS:
        return False
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return metadata is not None and metadata.national_prefix == str(number.country_code)


def _digit_groups(formatted: str) -> list[str]:
    """The runs of digits in a formatted number: "+1 415-555-0123" → 1, 415, 555, 0123."""
    return re.findall(r"\d+", formatted)
