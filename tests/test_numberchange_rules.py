"""Checking a new phone number keyed on a keypad: forms, validity, country, line type, readback.

Example numbers come from phonenumbers' own metadata (example_number_for_type), so the
tests follow the library's idea of each range instead of numbers guessed by hand.
"""

from __future__ import annotations

from collections.abc import Callable

import phonenumbers
import pytest
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType

from ivr.config import Settings
from ivr.numberchange.rules import (
    Accepted,
    NumberRules,
    Rejected,
    check_new_number,
    spoken,
)
from ivr.phone import LINE_TYPES, NEVER_ALLOWED

ALLOWABLE_LINE_TYPES = frozenset(LINE_TYPES) - NEVER_ALLOWED
EVERYWHERE = frozenset(phonenumbers.SUPPORTED_REGIONS)
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))

US_DEFAULT = NumberRules.from_settings(Settings.from_env({}))
US_AND_GB = NumberRules("US", frozenset({"US", "GB"}), US_DEFAULT.allowed_line_types)
GB_AND_US = NumberRules("GB", frozenset({"GB", "US"}), US_DEFAULT.allowed_line_types)


def example(region: str, kind: int) -> PhoneNumber:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None, f"phonenumbers has no example of {kind} for {region}"
    return number


def e164(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def national(number: PhoneNumber) -> str:
    """Keyed as written nationally ("07400123456" in GB, "2015550123" in the US)."""
    return phonenumbers.normalize_digits_only(
        phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    )


def with_trunk(number: PhoneNumber, region: str) -> str:
    """Keyed with the region's trunk prefix in front of the national number ("1 201…")."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert metadata is not None and metadata.national_prefix
    return metadata.national_prefix + phonenumbers.national_significant_number(number)


def invalid_example(region: str) -> str:
    """phonenumbers' own invalid example for the region, keyed nationally."""
    number = phonenumbers.invalid_example_number(region)
    assert number is not None
    return national(number)


def international(number: PhoneNumber, idd: str) -> str:
    """Keyed behind an international prefix: "011" + "44" + "7400123456"."""
    return idd + str(number.country_code) + phonenumbers.national_significant_number(number)


# --- accepted forms -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE])
@pytest.mark.parametrize(
    "keyed_as",
    [
        national,
        lambda n: with_trunk(n, "US"),
        lambda n: international(n, "011"),
        lambda n: national(n) + "#",  # the finishing key, should Twilio ever pass it on
    ],
    ids=["national", "trunk-prefix", "idd-011", "trailing-hash"],
)
def test_us_number_is_accepted_in_each_keyed_form(
    kind: int, keyed_as: Callable[[PhoneNumber], str]
) -> None:
    number = example("US", kind)
    assert check_new_number(keyed_as(number), US_DEFAULT, None) == Accepted(e164(number))


def test_a_us_mobile_is_fixed_line_or_mobile_to_phonenumbers() -> None:
    """NANP mobile and fixed ranges overlap, so allowing only "mobile" refuses US numbers."""
    number = example("US", PhoneNumberType.MOBILE)
    mobile_only = NumberRules("US", frozenset({"US"}), frozenset({"mobile"}))
    assert check_new_number(national(number), mobile_only, None) == Rejected("line_type")


def test_foreign_mobile_is_refused_unless_its_country_is_allowed() -> None:
    keyed = international(example("GB", PhoneNumberType.MOBILE), "011")
    assert check_new_number(keyed, US_DEFAULT, None) == Rejected("country")
    assert check_new_number(keyed, US_AND_GB, None) == Accepted(
        e164(example("GB", PhoneNumberType.MOBILE))
    )


@pytest.mark.parametrize(
    ("keyed_as", "number"),
    [
        (national, example("GB", PhoneNumberType.MOBILE)),
        (lambda n: international(n, "00"), example("GB", PhoneNumberType.MOBILE)),
        (lambda n: international(n, "00"), example("US", PhoneNumberType.MOBILE)),
    ],
    ids=["gb-national", "gb-idd-00", "us-idd-00"],
)
def test_numbers_keyed_from_gb(keyed_as: Callable[[PhoneNumber], str], number: PhoneNumber) -> None:
    assert check_new_number(keyed_as(number), GB_AND_US, None) == Accepted(e164(number))


def test_country_code_without_international_prefix_is_not_a_keyed_form() -> None:
    """From GB, "44 7400…" is neither how one dials nationally nor internationally."""
    number = example("GB", PhoneNumberType.MOBILE)
    keyed = international(number, "")
    assert check_new_number(keyed, GB_AND_US, None) == Rejected("invalid")


# --- line types ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE])
def test_us_toll_free_and_premium_rate_are_refused_by_default(kind: int) -> None:
    number = example("US", kind)
    assert phonenumbers.number_type(number) == kind
    assert check_new_number(national(number), US_DEFAULT, None) == Rejected("line_type")


def test_toll_free_is_accepted_once_allowed() -> None:
    number = example("US", PhoneNumberType.TOLL_FREE)
    with_toll_free = NumberRules("US", frozenset({"US"}), frozenset({"toll_free"}))
    assert check_new_number(national(number), with_toll_free, None) == Accepted(e164(number))


@pytest.mark.parametrize(
    ("region", "kind"),
    [
        ("GB", PhoneNumberType.PAGER),
        ("GB", PhoneNumberType.UAN),
        ("GB", PhoneNumberType.PREMIUM_RATE),
        ("CH", PhoneNumberType.PAGER),
        ("CH", PhoneNumberType.UAN),
        ("CH", PhoneNumberType.VOICEMAIL),  # GB has no voicemail or shared-cost example
        ("CH", PhoneNumberType.SHARED_COST),
    ],
)
def test_never_allowed_line_types_are_refused_even_with_everything_else_allowed(
    region: str, kind: int
) -> None:
    number = example(region, kind)
    assert phonenumbers.number_type(number) == kind
    generous = NumberRules("US", frozenset({"US", region}), ALLOWABLE_LINE_TYPES)
    assert check_new_number(international(number, "011"), generous, None) == Rejected("line_type")


# --- invalid input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keyed",
    [
        "",
        "#",
        "*",
        "4155550123*",
        "415*5550123",
        "12#34",
        "1" * 25,
        "011" + "44" + "7400123456" + "00000000",  # 21 digits
        "4155550123".translate(
            FULLWIDTH
        ),  # phonenumbers would read these; a keypad cannot send them
        "201",  # too short
        "5550100",  # a seven-digit local number without its area code
        "5555550100",  # 555 is not an area code
        "1235550100",  # area codes never start with 1
        "011",  # an international prefix and nothing after it
        invalid_example("US"),
    ],
)
def test_invalid_input_is_refused_before_anything_else(keyed: str) -> None:
    anything = NumberRules("US", EVERYWHERE, ALLOWABLE_LINE_TYPES)
    assert check_new_number(keyed, anything, None) == Rejected("invalid")


# --- the number on file and the order of the checks ------------------------------------------


def test_the_current_number_is_not_a_new_number() -> None:
    number = example("US", PhoneNumberType.MOBILE)
    keyed = with_trunk(number, "US")
    assert check_new_number(keyed, US_DEFAULT, e164(number)) == Rejected("same_number")
    other = e164(example("US", PhoneNumberType.TOLL_FREE))
    assert check_new_number(keyed, US_DEFAULT, other) == Accepted(e164(number))


@pytest.mark.parametrize(
    ("number", "current_is_same", "problem"),
    [
        # Foreign premium rate: the country is judged before the line type.
        (example("GB", PhoneNumberType.PREMIUM_RATE), False, "country"),
        # Disallowed country and already on file: the country comes first.
        (example("GB", PhoneNumberType.MOBILE), True, "country"),
        # Toll-free and already on file: the line type comes first.
        (example("US", PhoneNumberType.TOLL_FREE), True, "line_type"),
    ],
)
def test_checks_run_in_order(number: PhoneNumber, current_is_same: bool, problem: str) -> None:
    current = e164(number) if current_is_same else None
    keyed = international(number, "011")
    assert check_new_number(keyed, US_DEFAULT, current) == Rejected(problem)


# --- rules -----------------------------------------------------------------------------------


def test_rules_come_from_settings() -> None:
    settings = Settings.from_env(
        {
            "IVR_DEFAULT_REGION": "GB",
            "IVR_ALLOWED_COUNTRIES": "GB,IE",
            "IVR_ALLOWED_LINE_TYPES": "mobile",
        }
    )
    assert NumberRules.from_settings(settings) == NumberRules(
        "GB", frozenset({"GB", "IE"}), frozenset({"mobile"})
    )


def test_every_never_allowed_name_is_a_line_type() -> None:
    assert frozenset(LINE_TYPES) > NEVER_ALLOWED
    assert len(set(LINE_TYPES.values())) == len(LINE_TYPES)


@pytest.mark.parametrize(
    ("region", "prefix"),
    [("US", "011"), ("GB", "00"), ("DE", "00"), ("FR", "00"), ("AU", "0011"), ("RU", "810")],
)
def test_international_prefix_is_the_one_callers_dial(region: str, prefix: str) -> None:
    region_rules = NumberRules(region, EVERYWHERE, ALLOWABLE_LINE_TYPES)
    assert region_rules.international_prefix == prefix
    # …and a number keyed behind it is understood.
    foreign = example("GB" if region != "GB" else "US", PhoneNumberType.MOBILE)
    keyed = international(foreign, region_rules.international_prefix)
    assert check_new_number(keyed, region_rules, None) == Accepted(e164(foreign))


def test_region_with_carrier_selection_has_no_single_international_prefix() -> None:
    assert NumberRules("BR", EVERYWHERE, ALLOWABLE_LINE_TYPES).international_prefix == ""


# --- readback --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "number", "expected"),
    [
        ("US", "+14155550123", "4 1 5, 5 5 5, 0 1 2 3"),
        ("US", "+14165550123", "4 1 6, 5 5 5, 0 1 2 3"),  # Toronto: one country code, dialled so
        ("US", "+447400123456", "0 1 1, 4 4, 7 4 0 0, 1 2 3 4 5 6"),
        ("GB", "+447400123456", "0 7 4 0 0, 1 2 3 4 5 6"),
        ("GB", "+14155550123", "0 0, 1, 4 1 5, 5 5 5, 0 1 2 3"),
        ("RU", "+447400123456", "8 1 0, 4 4, 7 4 0 0, 1 2 3 4 5 6"),
    ],
)
def test_readback_is_grouped_as_the_caller_dials(region: str, number: str, expected: str) -> None:
    region_rules = NumberRules(region, EVERYWHERE, ALLOWABLE_LINE_TYPES)
    said = spoken(number, region_rules)
    assert said == expected
    # Keying what was read back gives the same number again.
    keyed = phonenumbers.normalize_digits_only(said)
    assert check_new_number(keyed, region_rules, None) == Accepted(number)
