"""End-to-end journeys through the default flow (flows/support.yaml), one per branch.

Every call is played by the project's simulator over signed webhooks into a real
app (tests/caller.py); every TwiML answer is checked against Twilio's schema on the
way. Tests compare what the caller and the agent hear with the prompt texts the app
loaded, so rewording a prompt never breaks them; what was stored is read back from
the audit table and Redis after the call.

Callers key in the one-time code the service just "texted" them: the code is read
from the app's local outbox when its prompt plays (`@code`, see Phone). Every
test here runs with all logging captured, and fails if a record carries a code, the
keys a caller pressed, a full phone number or an email address (security.md).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from caller import Phone, sent, sent_codes
from flask import Flask
from kit import (
    AGENT,
    DIGITS_AND_SMS,
    JANE_PHONE,
    NUMBER_AND_SMS,
    add_account,
    assert_nothing_secret_logged,
    call_ended_rows,
    caller_documents,
    checked_logs,
    dial_of,
    greeting,
    heard_before_keys,
    stored_state,
    text,
    unverified_whisper,
    verified_whisper,
)

from ivr.agent.api import context_signer

JANE_MASKED = "+1415•••0100"


# --- helpers -----------------------------------------------------------------------------


# --- nothing secret in the logs ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def nothing_secret_is_logged(caplog: pytest.LogCaptureFixture, outbox_path: Path) -> Iterator[None]:
    """Every journey runs with all logging captured, and fails if a record holds a secret."""
    yield from checked_logs(caplog, outbox_path)


def test_the_log_check_catches_codes_keys_and_numbers() -> None:
    """The check itself: each kind of leak fails it, and opaque ids do not."""
    log = logging.getLogger("ivr.test")
    record = log.makeRecord("ivr.test", logging.INFO, __file__, 1, "%s", ("x",), None)
    for leak in ["code 482916", "pressed 4321", "from +14155550100", "to 4155550100"]:
        record.msg, record.args = "call %s: " + leak, ("CA" + "4321" * 8,)
        with pytest.raises(AssertionError):
            assert_nothing_secret_logged([record], {"482916", "4321"})
    record.msg, record.args = "call %s on %s from +1415•••0100", ("CA" + "4321" * 8, "9a4321bc4321")
    assert_nothing_secret_logged([record], {"482916", "4321"})


# --- one account on the number -------------------------------------------------------------


def test_one_account_last4_menu_agent_verified(app: Flask, phone: Phone) -> None:
    """A known caller who keys the last 4 and the code reaches the menu, then a briefed agent."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    assert result.transfers == [f"dial number {AGENT}"]
    assert result.heard("agent") == [
        verified_whisper(app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"),
        text(app, "whisper_accept"),
    ]
    assert "4 3 2 1" in result.heard("agent")[0]
    assert result.ended_by == "ivr"


def test_last4_prompt_asks_for_exactly_four_keys(app: Flask, phone: Phone) -> None:
    """The last-4 prompt collects 4 keys (or up to #) and comes back to the input webhook."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1"])

    _, doc = caller_documents(result)[-1]
    gather = doc.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "4"
    assert gather.get("finishOnKey") == "#"
    assert (gather.get("action") or "").startswith("/voice/input?s=")
    redirect = doc.find("Redirect")
    assert redirect is not None and redirect.text == gather.get("action")


@pytest.mark.parametrize(
    ("last4", "name"),
    [("4321", "Jane Doe"), ("8765", "John Doe")],
)
def test_family_line_last4_picks_the_account(
    app: Flask, phone: Phone, last4: str, name: str
) -> None:
    """Several accounts on one number: the last 4 choose which one, and the whisper names it."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    add_account(app, "John Doe", JANE_PHONE, "20008765")

    result = phone.call(JANE_PHONE, ["1", last4, "@code", "2"])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4_family"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "main_menu", first_name=name.split()[0]),
        text(app, "connecting"),
    ]
    assert result.heard("agent")[0] == verified_whisper(
        app, name, last4, DIGITS_AND_SMS, "caller_request"
    )


def test_family_line_same_last4_goes_to_full_account_number(app: Flask, phone: Phone) -> None:
    """Two accounts on the number ending in the same 4 digits: the full number decides."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    add_account(app, "John Doe", JANE_PHONE, "20004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "20004321#", "@code", "2"])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4_family"),
        text(app, "enter_account_number"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "main_menu", first_name="John"),
        text(app, "connecting"),
    ]
    assert result.heard("agent")[0] == verified_whisper(
        app, "John Doe", "4321", NUMBER_AND_SMS, "caller_request"
    )


# --- callers the number does not identify -----------------------------------------------------


def test_unknown_number_full_account_number_then_menu(app: Flask, phone: Phone) -> None:
    """An unknown number keys the full account number ended by #, then the code, then the menu.

    The code goes to the phone on file, never to the number that is calling.
    """
    add_account(app, "Ann Lee", "+14155550111", "20005678")

    result = phone.call("+14155550199", ["1", "20005678#", "@code", "2"])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_account_number"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "main_menu", first_name="Ann"),
        text(app, "connecting"),
    ]
    # Ann is calling from a number that is not hers: the agent is told so.
    assert result.heard("agent")[0] == verified_whisper(
        app, "Ann Lee", "5678", NUMBER_AND_SMS, "caller_request", flags=["caller_id_mismatch"]
    )
    assert [(m.channel, m.to) for m in sent(app)] == [("sms", "+14155550111")]
    # The account-number prompt: any length, ended by #.
    gathers = [
        gather
        for _, doc in caller_documents(result)
        for gather in doc.iter("Gather")
        if gather.findtext("Say") == text(app, "enter_account_number")
    ]
    assert len(gathers) == 1
    assert gathers[0].get("finishOnKey") == "#"
    assert gathers[0].get("numDigits") is None
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["identity"] == "unknown_number"
    assert "caller_id_mismatch" in row.details["flags"]
    assert row.details["verification"] == "code"


WITHHELD_CALLER_IDS = [
    "anonymous",
    "Anonymous",
    "restricted",
    "unknown",
    "+266696687",
    "",
    "client:alice",
    "sip:bob@example.com",
    "+1555",
]


@pytest.mark.parametrize("caller_id", WITHHELD_CALLER_IDS)
def test_withheld_caller_goes_to_full_account_number(
    app: Flask, phone: Phone, caller_id: str
) -> None:
    """A withheld, anonymous, non-phone or invalid caller ID asks for the full account number."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(caller_id, ["1", "10004321#", "@code", "2"])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_account_number"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["identity"] == "withheld"
    assert row.details["caller"] == "withheld"
    assert row.details["verification"] == "code"
    assert row.details["methods"] == list(NUMBER_AND_SMS)


# --- failing verification ----------------------------------------------------------------------


def test_wrong_last4_three_times_transfers_unverified(app: Flask, phone: Phone) -> None:
    """Three wrong entries: the clearer retry prompt twice, then an agent told 'unverified'."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "0000", "1111", "2222"])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4"),
        text(app, "enter_last4_retry"),
        text(app, "enter_last4_retry"),
        text(app, "connecting_unverified"),
    ]
    assert result.transfers == [f"dial number {AGENT}"]
    assert result.heard("agent") == [
        unverified_whisper(app, "verification_failed"),
        text(app, "whisper_accept"),
    ]
    assert not any("Jane" in said for said in result.heard("agent"))
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["verification"] == "none"
    assert row.details["failure"] == "digits_failed"
    assert row.account_id is None


def test_no_input_twice_at_digits_transfers_unverified(app: Flask, phone: Phone) -> None:
    """Silence at the digits prompt repeats it once, then hands over to an agent, unverified."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "", ""])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4"),
        text(app, "enter_last4"),
        text(app, "connecting_unverified"),
    ]
    assert result.heard("agent")[0] == unverified_whisper(app, "verification_failed")


def test_star_repeats_the_prompt(app: Flask, phone: Phone) -> None:
    """`*` repeats the current prompt (the first one, since no try was used)."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "*", "4321", "*", "@code", "2"])

    assert result.heard("caller")[3:9] == [
        text(app, "enter_last4"),
        text(app, "enter_last4"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "enter_code"),  # `*` at the code prompt too
        text(app, "main_menu", first_name="Jane"),
    ]
    assert len(sent(app)) == 1  # repeating the code prompt sends nothing


def test_star_costs_no_try(app: Flask, phone: Phone) -> None:
    """Two wrong entries and two `*`: the third real try is still allowed and succeeds."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "0000", "*", "1111", "*", "4321", "@code", "2"])

    assert result.heard("caller")[3:] == [
        text(app, "enter_last4"),
        text(app, "enter_last4_retry"),
        text(app, "enter_last4_retry"),
        text(app, "enter_last4_retry"),
        text(app, "enter_last4_retry"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    assert result.heard("agent")[0] == verified_whisper(
        app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"
    )


def test_endless_star_ends_with_an_agent(app: Flask, phone: Phone) -> None:
    """A caller who keeps pressing `*` is not looped forever: the input cap hands them over."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1"] + ["*"] * 100)

    assert result.transfers == [f"dial number {AGENT}"]
    assert result.heard("agent")[0] == unverified_whisper(app, "error")
    assert result.ended_by == "ivr"


# --- the menu --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("menu_keys", "menu_heard"),
    [
        (["9", "2"], ["main_menu", "main_menu", "connecting"]),
        (["5", "2"], ["main_menu", "main_menu_retry", "connecting"]),
        (["5", "9", "2"], ["main_menu", "main_menu_retry", "main_menu", "connecting"]),
        (["", "2"], ["main_menu", "main_menu", "connecting"]),
    ],
    ids=["9-repeats", "invalid-retry-prompt", "9-after-invalid", "silence-repeats-once"],
)
def test_menu_repeats_and_retries(
    app: Flask, phone: Phone, menu_keys: list[str], menu_heard: list[str]
) -> None:
    """9 repeats the menu, a wrong key gets the retry prompt, silence repeats it once."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", *menu_keys])

    assert result.heard("caller")[6:] == [text(app, key, first_name="Jane") for key in menu_heard]
    assert result.transfers == [f"dial number {AGENT}"]


def test_menu_3_says_goodbye_and_hangs_up(app: Flask, phone: Phone) -> None:
    """3 ends the call politely: goodbye, then <Hangup>, and no transfer."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "3"])

    assert result.heard("caller")[-2:] == [
        text(app, "main_menu", first_name="Jane"),
        text(app, "goodbye"),
    ]
    assert result.transfers == []
    assert result.ended_by == "ivr"
    _, last = caller_documents(result)[-1]
    assert [child.tag for child in last] == ["Say", "Hangup"]


def test_menu_no_input_twice_goes_to_an_agent(app: Flask, phone: Phone) -> None:
    """Silence at the menu twice takes the safe default: a person, with the caller verified."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "", ""])

    assert result.heard("caller")[6:] == [
        text(app, "main_menu", first_name="Jane"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    assert result.transfers == [f"dial number {AGENT}"]
    assert result.heard("agent")[0].startswith(text(app, "whisper_verified").split("{")[0].strip())


def test_menu_no_input_whisper_does_not_claim_the_caller_asked(app: Flask, phone: Phone) -> None:
    """After silence at the menu the agent hears why: the caller did not respond.

    The prompts carry `reason_no_input` for exactly this; saying "the caller asked
    for an agent" would tell the agent something that did not happen.
    """
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "", ""])

    whisper = result.heard("agent")[0]
    assert text(app, "reason_caller_request") not in whisper
    assert whisper == verified_whisper(app, "Jane Doe", "4321", DIGITS_AND_SMS, "no_input")


# --- Spanish ---------------------------------------------------------------------------------


def test_spanish_choice_makes_later_prompts_spanish(app: Flask, phone: Phone) -> None:
    """Pressing 2 switches every later caller prompt to es-US (text, language and voice)."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["2", "4321", "@code", "2"])

    assert result.heard("caller")[3:] == [
        text(app, "enter_last4", "es-US"),
        text(app, "code_sent_sms", "es-US"),
        text(app, "enter_code", "es-US"),
        text(app, "main_menu", "es-US", first_name="Jane"),
        text(app, "connecting", "es-US"),
    ]
    spanish_voice = app.extensions["ivr.runtime"].working.catalog.voice("es-US")
    later = caller_documents(result)[1:]  # everything after the language choice
    says = [say for _, doc in later for say in doc.iter("Say")]
    assert len(says) == 5
    assert {(say.get("language"), say.get("voice")) for say in says} == {("es-US", spanish_voice)}


# --- agents who do not take the call -------------------------------------------------------------


@pytest.mark.parametrize("agent", ["no-answer", "busy", "failed"])
def test_unanswered_transfer_says_agents_busy(app: Flask, phone: Phone, agent: str) -> None:
    """Nobody answers: the caller hears agents_busy and may leave a message (never a bare
    goodbye, never silence)."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2", "record:5#"], agent=agent)

    assert result.heard("caller")[-4:] == [
        text(app, "connecting"),
        text(app, "agents_busy"),
        text(app, "voicemail_prompt"),
        text(app, "voicemail_thanks"),
    ]
    assert result.heard("agent") == []
    after = next(doc for url, doc in caller_documents(result) if "/voice/dial?s=" in url)
    assert [child.tag for child in after] == ["Say", "Say", "Record", "Redirect"]


def test_silent_agent_counts_as_unanswered(app: Flask, phone: Phone) -> None:
    """An agent who hears the whisper but presses nothing is not connected."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"], agent="silent")

    assert result.heard("agent")[0] == verified_whisper(
        app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"
    )
    assert result.heard("caller")[-2:] == [text(app, "agents_busy"), text(app, "voicemail_prompt")]
    assert not any("caller connected" in event.text for event in result.events)


# --- other agent targets --------------------------------------------------------------------------


def test_queue_target_enqueues_without_whisper(make_app: Any) -> None:
    """A queue target answers <Enqueue> (with its action) and has no agent leg to whisper to."""
    app = make_app(IVR_AGENT_TARGET="queue:support")
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "2"])

    assert result.transfers == ["enqueue support"]
    assert result.heard("agent") == []
    enqueues = [e for _, doc in caller_documents(result) for e in doc.iter("Enqueue")]
    assert len(enqueues) == 1
    assert enqueues[0].text == "support"
    assert (enqueues[0].get("action") or "").startswith("/voice/dial?s=")
    assert [dial for _, doc in caller_documents(result) for dial in doc.iter("Dial")] == []
    assert not any("/voice/whisper" in url for url, _ in result.documents)


@pytest.mark.parametrize(
    ("target", "tag", "address"),
    [
        ("sip:agent@pbx.example.com", "Sip", "sip:agent@pbx.example.com"),
        ("client:alice", "Client", "alice"),
    ],
)
def test_sip_and_client_targets_dial_with_whisper(
    make_app: Any, target: str, tag: str, address: str
) -> None:
    """SIP and Twilio Client targets are dialled with a whisper leg, like a phone number."""
    app = make_app(IVR_AGENT_TARGET=target)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "2"])

    dial = dial_of(result)
    assert (dial.get("action") or "").startswith("/voice/dial?s=")
    (leg,) = list(dial)
    assert leg.tag == tag
    assert (leg.get("url") or "").startswith("/voice/whisper?s=")
    if tag == "Client":
        assert leg.findtext("Identity") == address
    else:
        # A SIP leg carries the call's signed context as the X-IVR-Context header.
        uri, _, header = (leg.text or "").strip().partition("?X-IVR-Context=")
        assert uri == address
        with app.app_context():
            context = context_signer().load(header)
        assert context["call_sid"] == result.call_sid
        assert context["customer"] == "Jane Doe" and context["verification"] == "code"
    assert result.heard("agent")[0] == verified_whisper(
        app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"
    )


# --- privacy before verification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("accounts", "digits_entry"),
    [
        ([("Jane Doe", "10004321")], "4321"),
        ([("Jane Doe", "10004321"), ("John Doe", "20008765")], "8765"),
    ],
    ids=["one-account", "family-line"],
)
def test_nothing_about_the_account_is_said_before_the_digits(
    app: Flask, phone: Phone, accounts: list[tuple[str, str]], digits_entry: str
) -> None:
    """Before the digits are verified the caller hears no name and no account digits; before
    the code, no name either (names are spoken only at full verification)."""
    for name, number in accounts:
        add_account(app, name, JANE_PHONE, number)

    result = phone.call(JANE_PHONE, ["1", digits_entry, "@code", "2"])

    before = heard_before_keys(result, 1)  # entry 0: language, entry 1: the account digits
    assert len(before) == 4
    secrets = {"Jane", "Doe", "John"} | {n[-4:] for _, n in accounts}
    secrets |= {" ".join(n[-4:]) for _, n in accounts}
    for said in before:
        assert not any(secret in said for secret in secrets), said
    before_code = heard_before_keys(result, 2)  # entry 2: the code
    assert len(before_code) == 6
    for said in before_code:
        assert not any(secret in said for secret in secrets), said
    # …and the call did go on to verify them, so the check covered a real journey.
    (first_name,) = [n.split()[0] for n, number in accounts if number.endswith(digits_entry)]
    assert text(app, "main_menu", first_name=first_name) in result.heard("caller")


def test_failed_verification_never_reveals_the_account(app: Flask, phone: Phone) -> None:
    """A caller who never gets the digits right hears nothing about the account at all."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "0000", "1111", "2222"])

    assert len(result.heard("caller")) == 7
    for said in result.heard("caller"):
        assert "Jane" not in said and "4321" not in said and "4 3 2 1" not in said
    for _, doc in caller_documents(result):
        spoken = ET.tostring(doc, encoding="unicode")
        assert "Jane" not in spoken and "4321" not in spoken


# --- the end of the call: audit and cleanup -------------------------------------------------------


@pytest.mark.parametrize(
    ("keys_pressed", "verification", "methods"),
    [
        (["1", "4321", "@code", "2"], "code", list(DIGITS_AND_SMS)),
        (["1", "0000", "0000", "0000"], "none", []),
    ],
    ids=["verified", "unverified"],
)
def test_status_callback_audits_once_and_forgets_the_state(
    app: Flask,
    phone: Phone,
    keys_pressed: list[str],
    verification: str,
    methods: list[str],
) -> None:
    """The final status writes one masked `call.ended` row and deletes the Redis state."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, keys_pressed)

    rows = call_ended_rows(app, result.call_sid)
    assert len(rows) == 1
    row = rows[0]
    assert row.actor == "twilio"
    assert row.details["status"] == "completed"
    assert row.details["caller"] == JANE_MASKED
    assert row.details["identity"] == "one_account"
    assert row.details["verification"] == verification
    assert row.details.get("methods", []) == methods
    assert row.account_id == (account_id if verification != "none" else None)
    assert JANE_PHONE not in repr(row.details)
    assert "10004321" not in repr(row.details)
    assert not any(code in repr(row.details) for code in sent_codes(app))
    assert stored_state(app, result.call_sid) is None
