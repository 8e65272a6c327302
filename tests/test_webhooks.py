"""The voice webhooks as Twilio reaches them: signatures, odd and replayed requests, outages.

Requests are signed here by hand, the way Twilio signs them (over IVR_PUBLIC_URL +
path + query and every POSTed field), and posted with Flask's test client. Every
TwiML answer is validated against Twilio's schema and read as parsed XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from caller import sent_codes
from conftest import AUTH_TOKEN, PUBLIC_URL, app_environ
from factories import make_account
from flask import Flask, request
from kit import (
    AGENT,
    JANE_PHONE,
    call_form,
    gather_step,
    new_sid,
    post,
    says,
    signature,
    state_of,
    text,
    twiml,
)
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from ivr.app import create_app
from ivr.config import Settings
from ivr.errors import ConfigError
from ivr.storage import db
from ivr.storage.models import AuditEvent
from ivr.voice.signature import signed_url

CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/none"

VOICE_ENDPOINTS = [
    "/voice/incoming",
    "/voice/input?s=1",
    "/voice/dial?s=1",
    "/voice/whisper?s=1",
    "/voice/status",
    "/voice/fallback",
    "/voice/whisper/answer",
    "/voice/fallback/dial",
]
# The queue's hold document is signed too; its fail-safe answer is <Leave/>, which
# Twilio's XSD rejects, so it is not among the schema-checked endpoints above.
SIGNED_ENDPOINTS = [*VOICE_ENDPOINTS, "/voice/queue/wait?s=1"]


# --- helpers -----------------------------------------------------------------------------


def assert_apology_and_transfer(app: Flask, doc: ET.Element) -> None:
    """The fail-closed answer: an apology, then a <Dial> to the agent (no whisper needed)."""
    assert [child.tag for child in doc] == ["Say", "Dial"]
    assert says(doc) == [text(app, "error_apology")]
    dial = doc.find("Dial")
    assert dial is not None
    assert dial.get("action") == "/voice/fallback/dial"
    assert dial.findtext("Number") == AGENT


def audit_rows(app: Flask, call_sid: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session().scalars(select(AuditEvent).where(AuditEvent.call_sid == call_sid)))


def add_jane(app: Flask) -> None:
    with app.app_context():
        make_account(db.session(), name="Jane Doe", phone=JANE_PHONE, account_number="10004321")


def start_call(app: Flask, call_sid: str) -> ET.Element:
    """POST /voice/incoming for a new call and return its answer."""
    return twiml(post(app, "/voice/incoming", call_form(call_sid)))


def press(app: Flask, call_sid: str, step: int, digits: str) -> ET.Element:
    """The caller's keys for the prompt of `step`."""
    return twiml(post(app, f"/voice/input?s={step}", call_form(call_sid, Digits=digits)))


# --- signatures ----------------------------------------------------------------------------


def _other_query(path: str) -> str:
    return path.split("?")[0] + "?s=2"


BAD_SIGNATURES = [
    # (id, how to post: keyword arguments for `post`)
    ("missing", lambda path: {"signed": False}),
    ("empty", lambda path: {"header": ""}),
    ("garbage", lambda path: {"header": "not-a-signature"}),
    ("other-token", lambda path: {"token": "another-auth-token"}),
    ("other-path", lambda path: {"sign_as": "/voice/elsewhere"}),
    ("other-query", lambda path: {"sign_as": _other_query(path)}),
]


@pytest.mark.parametrize("path", SIGNED_ENDPOINTS)
@pytest.mark.parametrize(
    "how", [how for _, how in BAD_SIGNATURES], ids=[name for name, _ in BAD_SIGNATURES]
)
def test_bad_signature_is_refused(app: Flask, path: str, how: Any) -> None:
    """No signature, a wrong one, another token's, or one for another URL: 403, nothing stored."""
    call_sid = new_sid()

    response = post(app, path, call_form(call_sid, Digits="1"), **how(path))

    assert response.status_code == 403
    assert state_of(app, call_sid) is None
    assert audit_rows(app, call_sid) == []


@pytest.mark.parametrize(
    "signed_for",
    ["http://ivr.example.test", "https://evil.example.test", "https://ivr.example.test:8443"],
)
def test_signature_for_another_origin_is_refused(app: Flask, signed_for: str) -> None:
    """A signature over another scheme, host or port than IVR_PUBLIC_URL does not pass."""
    form = call_form(new_sid())
    header = signature(form, signed_for + "/voice/incoming")

    response = post(app, "/voice/incoming", form, header=header)

    assert response.status_code == 403


def test_signature_over_the_url_with_its_default_port_is_accepted(app: Flask) -> None:
    """Twilio may sign https://host:443/…: the URL as configured, with its default port
    added, passes too (checked second, only when the first form does not match)."""
    assert PUBLIC_URL.startswith("https://") and ":" not in PUBLIC_URL.removeprefix("https://")
    form = call_form(new_sid())
    with_port = PUBLIC_URL.replace(".test", ".test:443", 1) + "/voice/incoming"
    header = signature(form, with_port)

    twiml(post(app, "/voice/incoming", form, header=header))


def test_tampered_field_is_refused(app: Flask) -> None:
    """Changing one field after signing (the Digits) breaks the signature."""
    form = call_form(new_sid(), Digits="1")
    header = signature(form, PUBLIC_URL + "/voice/input?s=1")

    response = post(app, "/voice/input?s=1", {**form, "Digits": "2"}, header=header)

    assert response.status_code == 403


@pytest.mark.parametrize("path", VOICE_ENDPOINTS)
def test_signed_request_with_unknown_field_is_accepted(app: Flask, path: str) -> None:
    """Twilio adds parameters at any time: they count for the signature and are ignored."""
    form = call_form(new_sid(), SomeFieldTwilioAddedLater="x", StirVerstat="TN-Validation-Passed-A")

    twiml(post(app, path, form))


CALLBACK_ENDPOINTS = [
    "/voice/callback/answer?o=x",
    "/voice/callback/key?o=x",
    "/voice/callback/code?o=x",
    "/voice/callback/status?o=x",
]
OTHER_ACCOUNTS = [
    ("another", "AC" + "1" * 32),
    ("missing", None),
    ("empty", ""),
    ("lowercase", "ac" + "0" * 32),
    ("padded", " AC" + "0" * 32),
]


@pytest.mark.parametrize("path", [*SIGNED_ENDPOINTS, *CALLBACK_ENDPOINTS])
@pytest.mark.parametrize(
    "account", [sid for _, sid in OTHER_ACCOUNTS], ids=[name for name, _ in OTHER_ACCOUNTS]
)
def test_validly_signed_request_for_another_account_is_refused(
    app: Flask, path: str, account: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid signature is not enough: AccountSid must be TWILIO_ACCOUNT_SID (403, nothing
    stored, one log line that shows no more than the last 4 characters of the account)."""
    call_sid = new_sid()
    form = call_form(call_sid, Digits="1", CallStatus="completed")
    if account is None:
        del form["AccountSid"]
    else:
        form["AccountSid"] = account

    with caplog.at_level("WARNING", logger="ivr.voice.signature"):
        response = post(app, path, form)

    assert response.status_code == 403
    assert state_of(app, call_sid) is None
    assert audit_rows(app, call_sid) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "ivr.voice.signature"]
    assert len(lines) == 1 and "AccountSid" in lines[0] and call_sid in lines[0]
    assert "1" * 32 not in lines[0] and AUTH_TOKEN not in caplog.text


def test_our_account_is_served_on_every_endpoint(app: Flask) -> None:
    """The same requests with our AccountSid pass the check (the refusal above is the account)."""
    for path in [*SIGNED_ENDPOINTS, *CALLBACK_ENDPOINTS]:
        response = post(app, path, call_form(new_sid(), Digits="1", CallStatus="completed"))
        assert response.status_code == 200, path


def test_account_check_follows_twilio_account_sid(make_app: Any) -> None:
    """The account is TWILIO_ACCOUNT_SID's, not a fixed one: the development default is refused
    by an app configured for another account."""
    ours = "AC" + "ab" * 16
    app = make_app(TWILIO_ACCOUNT_SID=ours, IVR_DELIVERY="outbox")

    assert post(app, "/voice/incoming", call_form(new_sid())).status_code == 403
    twiml(post(app, "/voice/incoming", call_form(new_sid(), AccountSid=ours)))


def test_signing_helper_matches_twilio_test_vector() -> None:
    """The signing used here reproduces twilio-python's published test vector."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    expected = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

    assert signature(params, url, token="12345") == expected
    assert RequestValidator("12345").validate(url, params, expected)
    assert not RequestValidator("12345").validate(url, {**params, "Digits": "1235"}, expected)


def test_service_rebuilds_the_url_twilio_signed(database_url: str) -> None:
    """Behind a proxy Flask sees http://internal; the service checks the public URL instead."""
    app = create_app(
        app_environ(database_url, IVR_PUBLIC_URL="https://mycompany.com", TWILIO_AUTH_TOKEN="12345")
    )
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    with app.test_request_context(
        "/myapp.php?foo=1&bar=2", method="POST", base_url="http://10.0.0.7:8000", data=params
    ):
        url = signed_url(app.config["IVR_SETTINGS"])
        assert url == "https://mycompany.com/myapp.php?foo=1&bar=2"
        assert RequestValidator("12345").validate(url, request.form, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_skip_signature_check_in_development_accepts_unsigned(make_app: Any) -> None:
    """IVR_SKIP_SIGNATURE_CHECK=1 (development only) lets unsigned requests through."""
    strict = make_app()
    relaxed = make_app(IVR_SKIP_SIGNATURE_CHECK="1")
    form = call_form(new_sid())

    assert post(strict, "/voice/incoming", form, signed=False).status_code == 403
    doc = twiml(post(relaxed, "/voice/incoming", form, signed=False))
    assert doc.find("Gather") is not None


def test_skip_signature_check_is_refused_in_production(database_url: str) -> None:
    """Production refuses to boot with the signature check disabled (it boots without the flag)."""
    environ = app_environ(
        database_url,
        IVR_ENV="production",
        REDIS_URL=CLOSED_REDIS,
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,  # production sends codes through Twilio
    )
    assert create_app(environ).config["IVR_SETTINGS"].is_production

    with pytest.raises(ConfigError, match="IVR_SKIP_SIGNATURE_CHECK"):
        create_app({**environ, "IVR_SKIP_SIGNATURE_CHECK": "1"})
    with pytest.raises(ConfigError, match="IVR_SKIP_SIGNATURE_CHECK"):
        Settings.from_env({**environ, "IVR_SKIP_SIGNATURE_CHECK": "true"})


# --- malformed and lost calls ------------------------------------------------------------------


BAD_CALL_SIDS = [
    None,  # missing
    "",
    "garbage",
    "CA123",
    "CA" + "z" * 32,
    "CA" + "0" * 33,
    "ca" + "0" * 32,
    "CA" + "0" * 32 + "\n",
    "CA" + "0" * 31 + "'",
]


@pytest.mark.parametrize("path", ["/voice/incoming", "/voice/input?s=1", "/voice/dial?s=1"])
@pytest.mark.parametrize("call_sid", BAD_CALL_SIDS, ids=repr)
def test_malformed_call_sid_gets_apology_and_agent(
    app: Flask, path: str, call_sid: str | None
) -> None:
    """A validly signed request without a proper CallSid still answers: sorry, then an agent."""
    doc = twiml(post(app, path, call_form(call_sid, Digits="1", DialCallStatus="completed")))

    assert_apology_and_transfer(app, doc)


@pytest.mark.parametrize("path", ["/voice/input?s=1", "/voice/dial?s=1"])
def test_lost_state_gets_apology_and_agent(app: Flask, path: str) -> None:
    """A webhook for a call with no stored state: apology and transfer, 200."""
    doc = twiml(post(app, path, call_form(new_sid(), Digits="1", DialCallStatus="no-answer")))

    assert_apology_and_transfer(app, doc)


# --- replays --------------------------------------------------------------------------------


def test_replayed_language_input_does_not_advance_twice(app: Flask) -> None:
    """The same /voice/input?s=N twice: the second answer repeats the current prompt."""
    add_jane(app)
    call_sid = new_sid()
    first_step = gather_step(start_call(app, call_sid))

    first = press(app, call_sid, first_step, "1")
    again = press(app, call_sid, first_step, "1")

    assert gather_step(first) == first_step + 1
    assert gather_step(again) == gather_step(first)
    assert says(again) == says(first) == [text(app, "enter_last4")]
    assert state_of(app, call_sid)["step"] == first_step + 1  # type: ignore[index]


def test_replayed_wrong_digits_cost_one_try_only(app: Flask) -> None:
    """A wrong entry replayed is not counted twice (and the prompt is not re-advanced)."""
    add_jane(app)
    call_sid = new_sid()
    digits_step = gather_step(press(app, call_sid, gather_step(start_call(app, call_sid)), "1"))

    first = press(app, call_sid, digits_step, "0000")
    before = state_of(app, call_sid)
    again = press(app, call_sid, digits_step, "0000")

    assert says(first) == says(again) == [text(app, "enter_last4_retry")]
    assert gather_step(again) == gather_step(first) == digits_step + 1
    assert state_of(app, call_sid) == before
    assert before is not None and before["tries"] == {"last4": 1}


@pytest.mark.parametrize("stale", ["1", "2", "99", "abc", ""], ids=repr)
def test_stale_step_repeats_the_current_prompt(app: Flask, stale: str) -> None:
    """At the menu, an input for an old (or bogus) step only repeats the menu, unchanged."""
    add_jane(app)
    call_sid = new_sid()
    step = gather_step(start_call(app, call_sid))
    step = gather_step(press(app, call_sid, step, "1"))
    step = gather_step(press(app, call_sid, step, "4321"))
    (code,) = sent_codes(app)
    menu_step = gather_step(press(app, call_sid, step, code))
    before = state_of(app, call_sid)
    assert before is not None and before["node"] == "menu"

    query = f"?s={stale}" if stale else ""
    # Digits=2 would mean Spanish at the language prompt and an agent at the menu.
    doc = twiml(post(app, f"/voice/input{query}", call_form(call_sid, Digits="2")))

    assert says(doc) == [text(app, "main_menu", first_name="Jane")]
    assert gather_step(doc) == menu_step
    assert state_of(app, call_sid) == before


def test_incoming_twice_does_not_restart(app: Flask) -> None:
    """Twilio retrying /voice/incoming for the same call gets the current prompt, no restart."""
    add_jane(app)
    call_sid = new_sid()
    step = gather_step(press(app, call_sid, gather_step(start_call(app, call_sid)), "1"))
    before = state_of(app, call_sid)

    doc = start_call(app, call_sid)

    assert gather_step(doc) == step
    assert says(doc) == [text(app, "enter_last4")]
    assert state_of(app, call_sid) == before


# --- storage outages -----------------------------------------------------------------------------


def test_redis_down_incoming_apologises_and_transfers(app: Flask, make_app: Any) -> None:
    """With Redis unreachable a new call still gets valid TwiML: apology, then an agent."""
    down = make_app(REDIS_URL=CLOSED_REDIS, IVR_STORAGE_TIMEOUT="0.5")

    doc = twiml(post(down, "/voice/incoming", call_form(new_sid())))

    assert_apology_and_transfer(down, doc)


def test_database_down_at_identify_apologises_and_transfers(app: Flask, make_app: Any) -> None:
    """With the database unreachable the identify step fails closed to an agent."""
    down = make_app(DATABASE_URL=CLOSED_DATABASE, IVR_STORAGE_TIMEOUT="0.5")
    call_sid = new_sid()
    step = gather_step(start_call(down, call_sid))  # the greeting needs no database

    doc = press(down, call_sid, step, "1")

    assert_apology_and_transfer(down, doc)
    assert state_of(down, call_sid)["verification"] == "none"  # type: ignore[index]


def test_fallback_works_with_redis_and_database_down(app: Flask, make_app: Any) -> None:
    """/voice/fallback needs neither Redis nor the database."""
    down = make_app(REDIS_URL=CLOSED_REDIS, DATABASE_URL=CLOSED_DATABASE, IVR_STORAGE_TIMEOUT="0.5")
    form = call_form(new_sid(), ErrorCode="11200", ErrorUrl=PUBLIC_URL + "/voice/incoming")

    doc = twiml(post(down, "/voice/fallback", form))

    assert_apology_and_transfer(down, doc)


@pytest.mark.parametrize(
    ("dial_status", "tags"),
    [
        ("no-answer", ["Say", "Hangup"]),
        ("busy", ["Say", "Hangup"]),
        ("failed", ["Say", "Hangup"]),
        ("canceled", ["Say", "Hangup"]),
        ("completed", ["Hangup"]),
        ("answered", ["Hangup"]),
    ],
)
def test_fallback_dial_result(app: Flask, make_app: Any, dial_status: str, tags: list[str]) -> None:
    """After the fallback's transfer: agents_unavailable if nobody answered, else just hang up."""
    down = make_app(REDIS_URL=CLOSED_REDIS, DATABASE_URL=CLOSED_DATABASE, IVR_STORAGE_TIMEOUT="0.5")

    doc = twiml(
        post(down, "/voice/fallback/dial", call_form(new_sid(), DialCallStatus=dial_status))
    )

    assert [child.tag for child in doc] == tags
    if "Say" in tags:
        assert says(doc) == [text(down, "agents_unavailable")]


@pytest.mark.parametrize("queue_result", ["leave", "queue-full", "error", "hangup"])
def test_fallback_queue_that_never_bridged_says_no_agent(make_app: Any, queue_result: str) -> None:
    """After the fallback's <Enqueue>: any result but bridged ends with agents_unavailable."""
    app = make_app(IVR_AGENT_TARGET="queue:support")

    form = call_form(new_sid(), QueueResult=queue_result, QueueTime="30")
    doc = twiml(post(app, "/voice/fallback/dial", form))

    assert [child.tag for child in doc] == ["Say", "Hangup"]
    assert says(doc) == [text(app, "agents_unavailable")]


def test_fallback_rings_several_numbers_at_once(make_app: Any) -> None:
    """IVR_AGENT_TARGET takes the same syntax as a node's target."""
    app = make_app(IVR_AGENT_TARGET=f"{AGENT}, +14155550142")

    doc = twiml(post(app, "/voice/fallback", call_form(new_sid(), ErrorCode="11200")))

    dial = doc.find("Dial")
    assert dial is not None and dial.get("action") == "/voice/fallback/dial"
    assert [number.text for number in dial.iter("Number")] == [AGENT, "+14155550142"]


def test_fallback_with_queue_target_does_not_apologise_after_bridging(make_app: Any) -> None:
    """With a queue target the fallback enqueues; a bridged queue call ends without 'no agent'.

    `<Enqueue action>` reports QueueResult, not DialCallStatus; a caller who was
    served and then left the queue must not hear that no agent was available.
    """
    app = make_app(IVR_AGENT_TARGET="queue:support")
    fallback = twiml(post(app, "/voice/fallback", call_form(new_sid(), ErrorCode="11200")))
    enqueue = fallback.find("Enqueue")
    assert enqueue is not None and enqueue.get("action") == "/voice/fallback/dial"

    form = call_form(new_sid(), QueueResult="bridged", QueueTime="30")
    doc = twiml(post(app, "/voice/fallback/dial", form))

    assert [child.tag for child in doc] == ["Hangup"]


def test_whisper_with_redis_down_never_dials_from_the_agent_leg(app: Flask, make_app: Any) -> None:
    """The whisper runs on the agent's leg: a storage failure there must not transfer again.

    The agent should hear that the caller is unverified, not the caller's apology
    followed by a <Dial> that rings the agent target from the agent's own phone.
    """
    down = make_app(REDIS_URL=CLOSED_REDIS, IVR_STORAGE_TIMEOUT="0.5")
    form = call_form(new_sid(), ParentCallSid=new_sid(), Direction="outbound-dial")

    doc = twiml(post(down, "/voice/whisper?s=4", form))

    assert [el.tag for el in doc.iter() if el.tag in ("Dial", "Enqueue")] == []
    assert text(down, "error_apology") not in says(doc)
    unverified = text(down, "whisper_unverified").split("{")[0].strip()
    assert any(said.startswith(unverified) for said in says(doc))


# --- status callback ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "busy", "no-answer", "canceled", "failed"])
def test_final_status_is_audited_once(app: Flask, status: str) -> None:
    """The same final status posted twice writes one `call.ended` row and clears the state."""
    call_sid = new_sid()
    start_call(app, call_sid)
    assert state_of(app, call_sid) is not None

    for _ in range(2):
        twiml(post(app, "/voice/status", call_form(call_sid, CallStatus=status, CallDuration="7")))

    rows = audit_rows(app, call_sid)
    assert [row.action for row in rows] == ["call.ended"]
    assert rows[0].details["status"] == status
    assert rows[0].details["duration"] == 7
    assert state_of(app, call_sid) is None


@pytest.mark.parametrize("status", ["queued", "initiated", "ringing", "in-progress"])
def test_non_final_status_writes_nothing(app: Flask, status: str) -> None:
    """Statuses of a call still running neither audit nor forget the call."""
    call_sid = new_sid()
    start_call(app, call_sid)
    before = state_of(app, call_sid)

    doc = twiml(post(app, "/voice/status", call_form(call_sid, CallStatus=status)))

    assert list(doc) == []
    assert audit_rows(app, call_sid) == []
    assert before is not None
    assert state_of(app, call_sid) == before


# --- odd keypad input --------------------------------------------------------------------------------


ODD_DIGITS = ["12*4", "#", "9" * 200, "abcd", "1" * 64 + "x", "٤٣٢١", "12\x0034", " "]


def _advance_to(app: Flask, call_sid: str, prompt: str) -> int:
    """Walk a new call to `prompt` (language, last4, account_number, enter_code or menu)."""
    caller = "anonymous" if prompt == "account_number" else JANE_PHONE
    step = gather_step(twiml(post(app, "/voice/incoming", call_form(call_sid, From=caller))))
    if prompt == "language":
        return step
    step = gather_step(press(app, call_sid, step, "1"))
    if prompt in ("enter_code", "menu"):
        step = gather_step(press(app, call_sid, step, "4321"))
    if prompt == "menu":
        step = gather_step(press(app, call_sid, step, sent_codes(app)[-1]))
    state = state_of(app, call_sid)
    assert state is not None and state["node"] == prompt
    return step


@pytest.mark.parametrize("prompt", ["language", "last4", "account_number", "enter_code", "menu"])
@pytest.mark.parametrize("digits", ODD_DIGITS, ids=repr)
def test_odd_digits_never_break_the_call(app: Flask, prompt: str, digits: str) -> None:
    """Odd keypad strings at any prompt: 200, valid TwiML that keeps the call going."""
    add_jane(app)
    call_sid = new_sid()
    step = _advance_to(app, call_sid, prompt)
    before = state_of(app, call_sid)

    doc = twiml(post(app, f"/voice/input?s={step}", call_form(call_sid, Digits=digits)))

    assert {child.tag for child in doc} & {"Gather", "Dial", "Enqueue"}
    urls = [el.get("action") or el.get("url") or "" for el in doc.iter()]
    urls += [el.text or "" for el in doc.iter("Redirect")]
    assert not any(digits.strip() and digits in url for url in urls)
    after = state_of(app, call_sid)
    assert before is not None and after is not None
    assert after["verification"] == before["verification"]  # odd keys never verify anyone
    assert after.get("account_id") == before.get("account_id")
