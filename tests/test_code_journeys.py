"""End-to-end journeys through the one-time-code step of the default flow, one per outcome.

After the account digits pass, the service sends a code (by text message, or by a
call to the phone on file or by email on request) and asks for it; only a caller who keys it in reaches the menu
and is greeted by name. Calls are played by the simulator over signed webhooks into
a real app; the code is read from the app's local outbox, as a person would read
their phone (`@code`, see tests/test_journeys.py's Phone). Tests check what the
caller hears (against the app's prompt texts), what was sent, what the agent hears,
the `call.ended` audit row and, for every test, that nothing secret was logged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from caller import CODE_IN_MESSAGE, Entry, Phone, code_of, sent, sent_codes, wrong
from flask import Flask
from kit import (
    AGENT,
    DIGITS_AND_SMS,
    JANE_PHONE,
    Clock,
    add_account,
    assert_nothing_secret_logged,
    call_ended_rows,
    call_form,
    caller_documents,
    checked_logs,
    gather_step,
    greeting,
    new_sid,
    post,
    says,
    state_of,
    text,
    twiml,
    unverified_whisper,
    verified_whisper,
)

from ivr.storage import keys
from ivr.verification.codes import VERIFY, CodeService, Issued, policy_for

JANE_EMAIL = "jane@example.com"
MINUTES = "5"  # the default code lifetime, 300 s, as the messages word it
TWILIO_SID = "AC" + "0" * 32


@pytest.fixture(autouse=True)
def nothing_secret_is_logged(caplog: pytest.LogCaptureFixture, outbox_path: Path) -> Iterator[None]:
    """Every journey runs with all logging captured, and fails if a record holds a secret."""
    yield from checked_logs(caplog, outbox_path)


# --- helpers -----------------------------------------------------------------------------


def codes(app: Flask) -> CodeService:
    """The app's code service, on the app's own Redis, secret and policy."""
    runtime = app.extensions["ivr.runtime"]
    return CodeService(
        app.extensions["ivr.redis"],
        runtime.settings.secret_key,
        policy_for(VERIFY, runtime.settings),
    )


def until_code(app: Flask) -> list[str]:
    """What a caller on Jane's line hears up to the code prompt."""
    return [
        *greeting(app),
        text(app, "enter_last4"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
    ]


def pressed(result: Any) -> list[str]:
    """The caller's keypad entries, in order."""
    return [e.text for e in result.events if e.kind == "keys" and e.who == "caller"]


def redis_has(app: Flask, key: str) -> bool:
    return bool(app.extensions["ivr.redis"].exists(key))


# --- the code by text message ----------------------------------------------------------------


def test_sms_code_verifies_and_the_menu_greets_by_first_name(app: Flask, phone: Phone) -> None:
    """Digits, then the texted code: the menu says "Jane", the agent hears both methods."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"])

    assert result.heard("caller") == [
        *until_code(app),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    (message,) = sent(app)
    code = code_of(message)
    assert (message.channel, message.to, message.subject) == ("sms", JANE_PHONE, "")
    assert (message.call_sid, message.purpose) == (result.call_sid, "verify")
    assert message.body == text(app, "message_code_sms", code=code, minutes=MINUTES)
    assert len(code) == 6 and code.isdigit()
    assert pressed(result)[2] == code
    # The code prompt collects exactly the code's length, ended early by #.
    (code_gather,) = [
        gather
        for _, doc in caller_documents(result)
        for gather in doc.iter("Gather")
        if gather.findtext("Say") == text(app, "enter_code")
    ]
    assert (code_gather.get("numDigits"), code_gather.get("finishOnKey")) == ("6", "#")
    assert code_gather.get("timeout") == "10"
    # The code is never spoken, put in a URL or told to the agent.
    assert not any(code in body for _, body in result.documents)
    assert result.transfers == [f"dial number {AGENT}"]
    assert result.heard("agent") == [
        verified_whisper(app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"),
        text(app, "whisper_accept"),
    ]
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["verification"] == "code"
    assert row.details["methods"] == list(DIGITS_AND_SMS)
    assert row.details["failure"] is None
    assert row.account_id == account_id
    assert code not in repr(row.details)
    assert not redis_has(app, keys.code(account_id, "verify"))  # single use: it is gone


def test_code_length_follows_the_setting(make_app: Any) -> None:
    """IVR_CODE_LENGTH=8: an 8-digit code is sent and the prompt collects 8 keys."""
    app = make_app(IVR_CODE_LENGTH="8")
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "3"])

    (code,) = sent_codes(app)
    assert len(code) == 8
    assert result.heard("caller")[-2:] == [
        text(app, "main_menu", first_name="Jane"),
        text(app, "goodbye"),
    ]
    _, code_doc = caller_documents(result)[2]
    gather = code_doc.find("Gather")
    assert gather is not None and gather.get("numDigits") == "8"


def test_one_wrong_code_then_the_right_one_verifies(app: Flask, phone: Phone) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@wrong", "@code", "2"])

    assert result.heard("caller") == [
        *until_code(app),
        text(app, "enter_code_retry"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    assert len(sent(app)) == 1  # a wrong entry sends nothing new
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["verification"] == "code"


def test_three_wrong_codes_transfer_unverified(app: Flask, phone: Phone) -> None:
    """A wrong code gets the retry prompt; the third wrong one ends with an agent."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "@wrong", "@wrong", "@wrong"])

    assert result.heard("caller") == [
        *until_code(app),
        text(app, "enter_code_retry"),
        text(app, "enter_code_retry"),
        text(app, "connecting_unverified"),
    ]
    assert result.transfers == [f"dial number {AGENT}"]
    assert not any("Jane" in said for said in result.heard("caller"))
    assert len(sent(app)) == 1
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["failure"] == "code_failed"
    assert row.details["verification"] == "digits"
    assert row.details["methods"] == ["account_digits"]
    assert row.details["transfer_reason"] == "verification_failed"
    assert row.account_id == account_id


# --- new codes and other channels ------------------------------------------------------------


def test_pressing_1_sends_a_new_code_and_the_old_one_stops_working(
    app: Flask, phone: Phone
) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    def old_code() -> str:
        first, second = sent_codes(app)
        assert first != second
        return first

    result = phone.call(JANE_PHONE, ["1", "4321", "1", old_code, "@code", "2"])

    assert result.heard("caller") == [
        *until_code(app),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "enter_code_retry"),  # the old code
        text(app, "main_menu", first_name="Jane"),  # the new one
        text(app, "connecting"),
    ]
    assert [(m.channel, m.to) for m in sent(app)] == [("sms", JANE_PHONE)] * 2
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["methods"] == list(DIGITS_AND_SMS)


def test_pressing_3_sends_the_code_by_email(app: Flask, phone: Phone) -> None:
    """3 emails a code to the address on file; it replaces the texted one."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321", email=JANE_EMAIL)

    def texted_code() -> str:
        return code_of(sent(app)[0])

    result = phone.call(JANE_PHONE, ["1", "4321", "3", texted_code, "@code", "2"])

    assert result.heard("caller") == [
        *until_code(app),
        text(app, "code_sent_email"),
        text(app, "enter_code"),
        text(app, "enter_code_retry"),  # the texted code no longer works
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    texted, emailed = sent(app)
    assert (texted.channel, texted.to) == ("sms", JANE_PHONE)
    assert (emailed.channel, emailed.to) == ("email", JANE_EMAIL)
    assert emailed.subject == text(app, "message_code_email_subject")
    assert emailed.body == text(app, "message_code_email", code=code_of(emailed), minutes=MINUTES)
    assert emailed.call_sid == result.call_sid
    assert result.heard("agent")[0] == verified_whisper(
        app, "Jane Doe", "4321", ["account_digits", "code_email"], "caller_request"
    )
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["methods"] == ["account_digits", "code_email"]
    assert row.account_id == account_id
    assert JANE_EMAIL not in repr(row.details)


def test_pressing_3_without_an_email_on_file_offers_the_trouble_menu(
    app: Flask, phone: Phone
) -> None:
    """No address on file: the caller is told so and offered a text, a call or an agent."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", "3", "1", "@code", "2"])

    assert result.heard("caller") == [
        *until_code(app),
        text(app, "no_email_on_file"),
        text(app, "code_trouble"),
        text(app, "code_sent_sms"),  # 1 at the trouble menu: a text again
        text(app, "enter_code"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    assert [m.channel for m in sent(app)] == ["sms", "sms"]


# --- expiry ------------------------------------------------------------------------------------


def test_code_entered_after_its_lifetime_has_expired(
    app: Flask, phone: Phone, code_clock: Clock
) -> None:
    """400 s after the text (the lifetime is 300 s) the code is refused and a new one sent."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", code_clock.after(400, "@code"), "@code", "2"])

    assert result.heard("caller") == [
        *until_code(app),
        text(app, "code_expired"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    first, second = sent_codes(app)
    assert pressed(result)[2:4] == [first, second]


def test_code_entered_within_its_lifetime_still_works(
    app: Flask, phone: Phone, code_clock: Clock
) -> None:
    """The control for the test above: 200 s later the same code is accepted."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["1", "4321", code_clock.after(200, "@code"), "2"])

    assert result.heard("caller")[-2:] == [
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    assert code_clock.ahead == 200 and len(sent(app)) == 1


# --- limits and lockout --------------------------------------------------------------------------


@pytest.mark.parametrize(("earlier_sends", "limited"), [(4, False), (5, True)])
def test_send_limit_sends_the_caller_to_an_agent(
    app: Flask, phone: Phone, earlier_sends: int, limited: bool
) -> None:
    """5 codes sent in the last 10 minutes (on other calls): no sixth, the caller gets an agent."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    service = codes(app)
    for _ in range(earlier_sends):
        service.issue(account_id, "verify", new_sid())

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "3"])

    (row,) = call_ended_rows(app, result.call_sid)
    if limited:
        assert result.heard("caller") == [
            *greeting(app),
            text(app, "enter_last4"),
            text(app, "connecting_unverified"),
        ]
        assert sent(app) == []
        assert result.transfers == [f"dial number {AGENT}"]
        assert row.details["failure"] == "code_rate_limited"
        assert row.details["verification"] == "digits"
    else:
        assert result.heard("caller")[-2:] == [
            text(app, "main_menu", first_name="Jane"),
            text(app, "goodbye"),
        ]
        assert len(sent(app)) == 1
        assert row.details["verification"] == "code"


def test_lockout_builds_up_across_calls_and_survives_a_new_call(app: Flask, phone: Phone) -> None:
    """10 consecutive wrong codes, over several calls, lock the account: the next call goes
    straight to an agent after the digits, and no code is sent."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    service = codes(app)

    for call in range(3):  # 9 failures: three calls of three wrong codes
        result = phone.call(JANE_PHONE, ["1", "4321", "@wrong", "@wrong", "@wrong"])
        assert result.heard("caller")[-1] == text(app, "connecting_unverified")
        (row,) = call_ended_rows(app, result.call_sid)
        assert row.details["failure"] == "code_failed", call
        assert not service.is_locked(account_id)

    locking = phone.call(JANE_PHONE, ["1", "4321", "@wrong", "@code"])  # the 10th failure

    assert locking.heard("caller") == [*until_code(app), text(app, "connecting_unverified")]
    assert pressed(locking)[3:] == []  # the call never asked for another try
    (row,) = call_ended_rows(app, locking.call_sid)
    assert row.details["failure"] == "locked"
    assert service.is_locked(account_id)
    codes_sent = len(sent(app))
    assert codes_sent == 4

    after = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"])

    assert after.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4"),
        text(app, "connecting_unverified"),
    ]
    assert len(sent(app)) == codes_sent
    assert after.transfers == [f"dial number {AGENT}"]
    (row,) = call_ended_rows(app, after.call_sid)
    assert row.details["failure"] == "locked"
    assert row.details["verification"] == "digits"


# --- what the agent hears when the code step fails -------------------------------------------------


def _wrong_codes(app: Flask, account_id: int) -> list[Entry]:
    return ["1", "4321", "@wrong", "@wrong", "@wrong"]


def _send_limit(app: Flask, account_id: int) -> list[Entry]:
    for _ in range(5):
        codes(app).issue(account_id, "verify", new_sid())
    return ["1", "4321"]


def _no_email_then_agent(app: Flask, account_id: int) -> list[Entry]:
    return ["1", "4321", "3", "4"]


def _locked_out(app: Flask, account_id: int) -> list[Entry]:
    """10 consecutive wrong codes (a code dies after 5, so two codes), on an earlier call."""
    service, sid = codes(app), new_sid()
    outcomes = []
    for _ in range(2):
        issued = service.issue(account_id, "verify", sid)
        assert isinstance(issued, Issued)
        outcomes += [service.check(account_id, "verify", sid, wrong(issued.code)) for _ in range(5)]
    assert outcomes == ["wrong"] * 9 + ["locked"]
    return ["1", "4321"]


@pytest.mark.parametrize(
    ("scenario", "flags"),
    [
        (_wrong_codes, []),
        (_send_limit, []),
        (_no_email_then_agent, []),
        (_locked_out, ["locked"]),  # the agent is also told the account is locked out
    ],
    ids=["three-wrong-codes", "send-limit", "no-email-then-agent", "locked-out"],
)
def test_caller_who_fails_the_code_step_is_announced_unverified(
    app: Flask, phone: Phone, scenario: Callable[[Flask, int], list[Entry]], flags: list[str]
) -> None:
    """Digits alone are not verification any more: the agent must hear "Unverified caller".

    README ("three wrong entries, the account's send limits or a lockout send the
    caller to an agent, unverified") and product.md ("Unverified caller: failed the
    code twice"). Announcing "Verified caller Jane Doe … verified by the last four
    account digits" would hand an agent a caller who only knew four digits.
    """
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, scenario(app, account_id))

    assert result.heard("caller")[-1] == text(app, "connecting_unverified")
    assert result.heard("agent") == [
        unverified_whisper(app, "verification_failed", flags=flags),
        text(app, "whisper_accept"),
    ]
    assert not any("Jane" in said or "4 3 2 1" in said for said in result.heard("agent"))


# --- the text message could not be sent ---------------------------------------------------------


class FakeTwilio:
    """A local stand-in for Twilio's REST API: records each request and answers as told."""

    def __init__(self, status: int, body: str):
        self.status = status
        self.body = body
        self.requests: list[tuple[str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                fake.requests.append((self.path, {k: v[0] for k, v in form.items()}))
                payload = fake.body.encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def codes(self) -> list[str]:
        """The codes in the text messages Twilio was asked to send."""
        found = [CODE_IN_MESSAGE.search(form.get("Body", "")) for _, form in self.requests]
        return [match.group(1) for match in found if match]


@pytest.fixture
def twilio_api(request: pytest.FixtureRequest) -> Iterator[FakeTwilio]:
    status, body = request.param
    fake = FakeTwilio(status, body)
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=5)


TWILIO_FAILURES = [
    (500, "Internal Server Error"),
    (
        400,
        json.dumps(
            {"code": 21211, "message": "Invalid To", "status": 400, "more_info": "https://x"}
        ),
    ),
]
TWILIO_ACCEPTS = (
    201,
    json.dumps({"sid": "SM" + "a" * 32, "status": "queued", "account_sid": TWILIO_SID}),
)


def twilio_app(make_app: Any, fake: FakeTwilio) -> Flask:
    app: Flask = make_app(
        IVR_DELIVERY="twilio", TWILIO_ACCOUNT_SID=TWILIO_SID, IVR_TWILIO_API_URL=fake.url
    )
    return app


@pytest.mark.parametrize(
    "twilio_api", TWILIO_FAILURES, ids=["http-500", "error-21211"], indirect=True
)
def test_sms_that_cannot_be_sent_is_withdrawn_and_the_caller_offered_help(
    make_app: Any, twilio_api: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio refuses the text: the caller is told, offered a retry or an agent; no code lives."""
    app = twilio_app(make_app, twilio_api)
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(app).call(JANE_PHONE, ["1", "4321", "1", "4"])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4"),
        text(app, "code_send_failed"),
        text(app, "code_trouble"),
        text(app, "code_send_failed"),  # 1: try a text again
        text(app, "code_trouble"),
        text(app, "connecting_unverified"),  # 4: an agent
    ]
    assert result.transfers == [f"dial number {AGENT}"]
    assert [path for path, _ in twilio_api.requests] == [
        f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    ] * 2
    for _, form in twilio_api.requests:
        assert (form["To"], form["From"]) == (JANE_PHONE, "+15005550006")
    assert sent(app) == []  # nothing went to the local outbox instead
    # Nothing half-done: the undelivered code and its send are withdrawn.
    assert not redis_has(app, keys.code(account_id, "verify"))
    assert app.extensions["ivr.redis"].zcard(keys.code_sends(account_id, "verify")) == 0
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["failure"] == "sms_failed"
    assert row.details["verification"] == "digits"
    # The codes Twilio was handed, and the number, never reach a log.
    assert_nothing_secret_logged(caplog.get_records("call"), set(twilio_api.codes) | {JANE_PHONE})


@pytest.mark.parametrize("twilio_api", [TWILIO_ACCEPTS], ids=["accepted"], indirect=True)
def test_sms_through_twilio_delivers_the_code(make_app: Any, twilio_api: FakeTwilio) -> None:
    """The control for the test above: when Twilio accepts, the texted code verifies."""
    app = twilio_app(make_app, twilio_api)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    def texted_code() -> str:
        return twilio_api.codes[-1]

    result = Phone(app).call(JANE_PHONE, ["1", "4321", texted_code, "2"])

    assert result.heard("caller") == [
        *until_code(app),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    ((_, form),) = twilio_api.requests
    code = twilio_api.codes[0]
    assert form["Body"] == text(app, "message_code_sms", code=code, minutes=MINUTES)


# --- replays ---------------------------------------------------------------------------------------


def press(app: Flask, call_sid: str, step: int, digits: str) -> Any:
    return twiml(post(app, f"/voice/input?s={step}", call_form(call_sid, Digits=digits)))


def test_replayed_webhooks_never_send_a_second_code(app: Flask) -> None:
    """Twilio may deliver a Gather result twice: the copy gets the same answer, nothing is sent."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = new_sid()
    step = gather_step(twiml(post(app, "/voice/incoming", call_form(sid))))
    digits_step = gather_step(press(app, sid, step, "1"))

    first = press(app, sid, digits_step, "4321")
    again = press(app, sid, digits_step, "4321")

    assert says(first) == [text(app, "code_sent_sms"), text(app, "enter_code")]
    assert says(again) == says(first)  # the stored answer to the same request
    assert gather_step(again) == gather_step(first)
    assert len(sent(app)) == 1

    code_step = gather_step(first)
    wrong_code = wrong(sent_codes(app)[0])
    wrong_entry = press(app, sid, code_step, wrong_code)
    assert says(wrong_entry) == [text(app, "enter_code_retry")]
    press(app, sid, code_step, wrong_code)  # the wrong code, replayed: counted once
    assert app.extensions["ivr.redis"].get(keys.account_failures(account_id)) == b"1"

    retry_step = gather_step(wrong_entry)
    resent = press(app, sid, retry_step, "1")
    resent_again = press(app, sid, retry_step, "1")
    assert says(resent) == [text(app, "code_sent_sms"), text(app, "enter_code")]
    assert says(resent_again) == says(resent)
    assert len(sent(app)) == 2

    retried_incoming = twiml(post(app, "/voice/incoming", call_form(sid)))  # Twilio retrying
    assert says(retried_incoming) == [text(app, "enter_code")]
    assert len(sent(app)) == 2

    new_code_step = gather_step(resent)
    menu = press(app, sid, new_code_step, sent_codes(app)[-1])
    before = state_of(app, sid)
    menu_again = press(app, sid, new_code_step, sent_codes(app)[-1])
    assert says(menu) == says(menu_again) == [text(app, "main_menu", first_name="Jane")]
    assert state_of(app, sid) == before  # the replayed code was not checked again
    assert before is not None and before["verification"] == "code"
    assert len(sent(app)) == 2


# --- Spanish --------------------------------------------------------------------------------------


def test_spanish_caller_gets_the_spanish_text_message(app: Flask, phone: Phone) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = phone.call(JANE_PHONE, ["2", "4321", "@code", "2"])

    # The prompts in Spanish: tests/test_journeys.py. Here: the text message.
    assert result.heard("caller")[-2] == text(app, "main_menu", "es-US", first_name="Jane")
    (message,) = sent(app)
    code = code_of(message)
    assert message.body == text(app, "message_code_sms", "es-US", code=code, minutes=MINUTES)
    assert message.body != text(app, "message_code_sms", code=code, minutes=MINUTES)
