"""The one-time code by voice call: the service rings the phone on file and reads the code
only after the person who answers presses a key.

Journeys run end to end through the simulator, which answers the call the service
placed (through the local outbox) by following its URL, as Twilio would; the code
the callee hears is what the caller keys in (`@code`). Every test also checks that
nothing secret was logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from caller import Phone, sent, sent_codes
from flask import Flask
from kit import (
    JANE_PHONE,
    add_account,
    call_form,
    checked_logs,
    gather_step,
    greeting,
    new_sid,
    post,
    read_out,
    says,
    text,
    twiml,
    verified_whisper,
)
from sqlalchemy import select

from ivr.calls import outbound
from ivr.delivery import DeliveryFailed, OutgoingCall
from ivr.simulator.player import spoken_codes
from ivr.storage import db, keys
from ivr.storage.models import AuditEvent

JANE_NUMBER = "10004321"
ELSEWHERE = "anonymous"  # the caller is not on the phone we ring


@pytest.fixture(autouse=True)
def nothing_secret_is_logged(caplog: pytest.LogCaptureFixture, outbox_path: Path) -> Iterator[None]:
    yield from checked_logs(caplog, outbox_path)


def until_voice_code(app: Flask) -> list[str]:
    """What a caller keying Jane's full account number hears up to the voice-code prompt."""
    return [
        *greeting(app),
        text(app, "enter_account_number"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "code_calling"),
        text(app, "enter_voice_code"),
    ]


def pressed(result: Any, who: str = "caller") -> list[str]:
    return [e.text for e in result.events if e.kind == "keys" and e.who == who]


def callback_rows(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == "callback.ended")
        return list(db.session().scalars(query))


def test_the_code_by_voice_call_verifies_the_caller(app: Flask, phone: Phone) -> None:
    """2 at the code prompt rings the phone on file; a key there reads the code, twice."""
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)

    result = phone.call(ELSEWHERE, ["1", f"{JANE_NUMBER}#", "2", "@code", "2"], callee_keys=["1"])

    code = pressed(result)[3]
    assert len(code) == 6 and code.isdigit()
    assert result.heard("callee") == read_out(app, code)
    assert result.heard("caller") == [
        *until_voice_code(app),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    assert result.heard("agent")[0] == verified_whisper(
        app, "Jane Doe", "4321", ("account_number", "code_voice"), "caller_request"
    )
    # The call went to the phone on file, from URLs that carry only an opaque id.
    call = [message for message in sent(app) if message.channel == "call"]
    assert [(c.to, c.purpose, c.call_sid) for c in call] == [
        (JANE_PHONE, "verify", result.call_sid)
    ]
    for url in (call[0].url, call[0].status_callback):
        parts = urlsplit(url)
        assert list(parse_qs(parts.query)) == ["o"]
        assert code not in url and JANE_PHONE[1:] not in url
    assert call[0].ring_seconds == outbound.RING_SECONDS
    # Nobody but the callee ever got the code: not the agent, not the caller's TwiML.
    assert not any(code in body for _, body in result.documents)  # the caller's leg
    (row,) = callback_rows(app)
    assert row.details["status"] == "completed" and row.details["code_read"] is True
    assert JANE_PHONE not in repr(row.details)


def test_a_voicemail_never_hears_the_code(app: Flask, phone: Phone) -> None:
    """An answering machine presses no key: it hears the greeting and a goodbye, no code."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)

    result = phone.call(ELSEWHERE, ["1", f"{JANE_NUMBER}#", "2", "123456"], callee="voicemail")

    assert result.heard("callee") == [text(app, "callback_press_key"), text(app, "callback_no_key")]
    callee_docs = [body for call in result.callbacks for _, body in call.documents]
    assert len(callee_docs) == 1 and not any(spoken_codes(body) for body in callee_docs)
    assert result.codes == sent_codes(app)  # only the texted code: none was heard
    # No code was ever made: what the caller tried counts as a wrong guess.
    with app.app_context():
        stored = app.extensions["ivr.redis"].hgetall(keys.code(account_id, "verify"))
    assert b"mac" not in stored and stored[b"wrong"] == b"1"
    assert result.heard("caller")[len(until_voice_code(app))] == text(app, "enter_code_retry")
    (row,) = callback_rows(app)
    assert row.details["answered"] is True and row.details["code_read"] is False


@pytest.mark.parametrize("callee", ["no-answer", "busy", "failed"])
def test_an_unanswered_code_call_leaves_the_caller_other_ways(
    app: Flask, phone: Phone, callee: str
) -> None:
    """Nobody answers: nothing is read; 1 then sends a text, and its code verifies."""
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)

    result = phone.call(ELSEWHERE, ["1", f"{JANE_NUMBER}#", "2", "1", "@code", "3"], callee=callee)

    assert result.heard("callee") == []
    assert result.heard("caller")[-3:] == [
        text(app, "enter_code"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "goodbye"),
    ]
    (row,) = callback_rows(app)
    assert row.details["status"] == callee and row.details["answered"] is False


def test_the_phone_on_file_cannot_ring_while_the_caller_is_on_it(app: Flask, phone: Phone) -> None:
    """Calling from the phone on file, 2 explains why a call cannot work and offers others."""
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)

    result = phone.call(JANE_PHONE, ["1", "4321", "2", "4"])

    heard = result.heard("caller")
    assert heard[heard.index(text(app, "enter_code")) + 1 :] == [
        text(app, "voice_line_in_use"),
        text(app, "code_trouble"),
        text(app, "connecting_unverified"),
    ]
    assert not [message for message in sent(app) if message.channel == "call"]


def test_a_second_key_press_reads_nothing_more(app: Flask, phone: Phone) -> None:
    """A replayed key webhook makes no second code: the first one stays the only one."""
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    result = phone.call(ELSEWHERE, ["1", f"{JANE_NUMBER}#", "2"], callee_keys=["1"])
    (call,) = [message for message in sent(app) if message.channel == "call"]
    callback_id = parse_qs(urlsplit(call.url).query)["o"][0]
    key_url = f"/voice/callback/key?o={callback_id}"
    form = call_form("CA" + "e" * 32, Digits="1", From="+15005550006", To=JANE_PHONE)

    again = says(twiml(post(app, key_url, form)))

    assert again == [text(app, "callback_expired")]
    assert len(result.heard("callee")) == 4  # the one reading


def test_an_unknown_callback_id_says_goodbye_and_nothing_else(app: Flask) -> None:
    """A forged or expired id gets a polite goodbye, never a code or an error."""
    form = call_form("CA" + "f" * 32, Digits="1")
    for path in ("/voice/callback/answer?o=nope", "/voice/callback/key?o=nope"):
        assert says(twiml(post(app, path, form))) == [text(app, "callback_expired")]


def test_callback_webhooks_need_twilio_signatures(app: Flask) -> None:
    client = app.test_client()
    for path in ("answer", "key", "code", "status"):
        response = client.post(f"/voice/callback/{path}?o=x", data={"CallSid": "CA" + "0" * 32})
        assert response.status_code == 403


class RefusingDialer:
    """A dialer whose provider refuses every call (as Twilio does on a geo-permission error)."""

    def __init__(self) -> None:
        self.calls: list[OutgoingCall] = []

    def place(self, call: OutgoingCall) -> str:
        self.calls.append(call)
        raise DeliveryFailed("call", "calling that country or region is not enabled")


def test_a_code_call_that_cannot_be_placed_is_told_plainly(app: Flask, phone: Phone) -> None:
    """Twilio refuses the call: the caller hears so and gets other ways; nothing is reserved."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    dialer = RefusingDialer()
    app.extensions["ivr.dialer"] = dialer

    result = phone.call(ELSEWHERE, ["1", f"{JANE_NUMBER}#", "2"])  # then hangs up

    assert len(dialer.calls) == 1
    heard = result.heard("caller")
    assert heard[heard.index(text(app, "enter_code")) + 1 :] == [
        text(app, "code_send_failed"),
        text(app, "code_trouble"),
    ]
    with app.app_context():
        redis = app.extensions["ivr.redis"]
        # The reservation replaced the texted code and was withdrawn with its send:
        # no code is live, and only the text counts against the send limit.
        assert not redis.exists(keys.code(account_id, "verify"))
        assert redis.zcard(keys.code_sends(account_id, "verify")) == 1
        assert not redis.keys(f"{keys.PREFIX}:*callback*")  # the refused call left no record


def test_a_replayed_request_for_a_code_call_places_no_second_call(app: Flask) -> None:
    """Twilio retries the Gather that asked for the call: the same answer, nothing placed again."""
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    sid = new_sid()
    form = call_form(sid, From=ELSEWHERE)
    doc = twiml(post(app, "/voice/incoming", form))
    for digits in ("1", f"{JANE_NUMBER}"):
        doc = twiml(post(app, f"/voice/input?s={gather_step(doc)}", {**form, "Digits": digits}))
    step = gather_step(doc)  # the code prompt

    first = says(twiml(post(app, f"/voice/input?s={step}", {**form, "Digits": "2"})))
    replay = says(twiml(post(app, f"/voice/input?s={step}", {**form, "Digits": "2"})))

    assert first == [text(app, "code_calling"), text(app, "enter_voice_code")]
    assert replay == first  # the stored answer to that request, nothing sent again
    assert len([m for m in sent(app) if m.channel == "call"]) == 1
