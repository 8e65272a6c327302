"""Every voice endpoint, fuzzed with signed requests: no input gives an HTTP 5xx or a bug.

The endpoints are read from the app's url_map (every rule under /voice/), so a new
webhook is fuzzed without touching this file. Each request is signed with the test
auth token, exactly as Twilio signs, so it reaches the views: odd numbers ("²",
"٤٣", "-1", twenty digits), NUL, non-ASCII, huge values, missing fields, random
query strings, for calls with a stored state and without.

What must hold for every request:

- our AccountSid: HTTP 200, `text/xml`, a document valid against Twilio's TwiML
  schema (the queue's hold document may also be `<Leave/>`, valid TwiML inside a
  waitUrl that the vendored schema does not know);
- another, a malformed or no AccountSid: 403;
- no unexpected exception on the way, even one the error handlers turn into an
  apology: the voice error handlers log those with a traceback, so none may appear;
- a final status callback of a well-formed call is audited (`call.ended`) whatever
  else the form holds.

Hypothesis runs derandomized (a fixed sequence of examples, no example database), so
CI cannot flake; the odd values above are among the sampled ones, so each run meets them.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from caller import sent_codes
from conftest import AUTH_TOKEN, PUBLIC_URL
from factories import make_account
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit import JANE_PHONE, call_form, gather_step, new_sid, post, signature, twiml
from sqlalchemy import select
from twiml_schema import assert_valid_twiml

from ivr.calls import outbound
from ivr.storage import db
from ivr.storage.models import AuditEvent
from ivr.voice.webhook import CALL_SID

OUR_ACCOUNT = "AC" + "0" * 32  # TWILIO_ACCOUNT_SID of the test app (the development default)
OTHER_ACCOUNT = "AC" + "1" * 32
EXAMPLES_PER_ENDPOINT = 120
FINAL_STATUSES = ("completed", "busy", "no-answer", "canceled", "failed")
LEAVE = '<?xml version="1.0" encoding="UTF-8"?><Response><Leave /></Response>'

# Values that broke, or could break, a parser: non-ASCII digits, signs, exponents,
# overflow, NUL, markup, bidi controls, whitespace, and a few huge ones.
ODD = [
    "",
    " ",
    "²",
    "¹²",
    "٤٣٢١",
    "१२",
    "-1",
    "+1",
    "1e3",
    "0x1f",
    "1_000",
    " 12 ",
    "12\n",
    "99999999",
    "999999999",
    "9" * 40,
    "\x00",
    "12\x0034",
    "<Say>hi</Say>",
    "]]>&amp;",
    "\u202e1234",
    "🙂",
    "a" * 5_000,
    "1" * 20_000,
    "*",
    "#",
    "1#",
    "*9",
]
FIELDS = [
    "CallSid",
    "AccountSid",
    "From",
    "Caller",
    "To",
    "Called",
    "CallStatus",
    "Direction",
    "ApiVersion",
    "Digits",
    "QueueTime",
    "QueueResult",
    "DialCallStatus",
    "DialCallDuration",
    "CallDuration",
    "AnsweredBy",
    "ParentCallSid",
    "StirVerstat",
    "ErrorCode",
    "ErrorUrl",
    "SequenceNumber",
]
STATUSES = [*FINAL_STATUSES, "queued", "ringing", "in-progress", "answered", "bridged", "leave"]

# Numbers Twilio sends as ASCII digits (and our ?s=): the odd ones str.isdigit() accepts.
NUMERIC = ("Digits", "QueueTime", "CallDuration", "DialCallDuration", "SequenceNumber")
NUMBER_LIKE = ["²", "٤٣", "१२", "-1", "1e3", " 12 ", "9" * 40, "", "\x00", "12", "0"]

_text = st.text(st.characters(codec="utf-8"), max_size=30)  # no lone surrogates
_values = st.one_of(
    st.sampled_from(ODD),
    _text,
    st.integers(-(10**12), 10**12).map(str),
    st.sampled_from(STATUSES),
)
_numbers = st.one_of(st.sampled_from(NUMBER_LIKE), st.integers(0, 10**4).map(str), _values)


@dataclass(frozen=True)
class Calls:
    """Ids that exist in the app when fuzzing starts (calls with state, call-backs)."""

    call_sids: tuple[str, ...]
    callback_ids: tuple[str, ...]


def _requests(calls: Calls) -> st.SearchStrategy[tuple[dict[str, str], dict[str, str]]]:
    """(query, form) pairs: each field Twilio sends present or not, each with a sensible,
    a number-like or an odd value; unknown fields and query parameters besides."""
    call_sid = st.one_of(st.sampled_from(calls.call_sids), st.builds(new_sid), _values)
    account = st.sampled_from([OUR_ACCOUNT] * 6 + [OTHER_ACCOUNT, "", "AC", "ac" + "0" * 32])
    fields = {name: _numbers if name in NUMERIC else _values for name in FIELDS}
    fields["CallSid"] = call_sid
    fields["ParentCallSid"] = st.one_of(st.sampled_from(calls.call_sids), _values)
    fields.pop("AccountSid")
    form = st.fixed_dictionaries({"AccountSid": account}, optional=fields)
    unknown = st.dictionaries(_text, _values, max_size=2)
    query = st.fixed_dictionaries(
        {},
        optional={
            "s": st.one_of(st.integers(-1, 12).map(str), _numbers),
            "o": st.one_of(st.sampled_from(calls.callback_ids), _values),
        },
    )

    dropped = st.sets(st.sampled_from(FIELDS), max_size=3)

    @st.composite
    def build(draw: Any) -> tuple[dict[str, str], dict[str, str]]:
        fuzzed = {**call_form(draw(call_sid)), **draw(unknown), **draw(form)}
        for name in draw(dropped):
            fuzzed.pop(name, None)
        return {**draw(unknown), **draw(query)}, fuzzed

    return build()


class _Tracebacks(logging.Handler):
    """Collects log records that carry a traceback: the mark of an unexpected exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@contextmanager
def _tracebacks() -> Iterator[_Tracebacks]:
    handler = _Tracebacks()
    logger = logging.getLogger("ivr")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def voice_endpoints(app: Flask) -> list[str]:
    """Every rule under /voice/, as Twilio would request it."""
    rules = sorted(
        rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/voice/")
    )
    assert all("<" not in rule for rule in rules), "a voice URL with a path variable"
    return rules


def _setup_calls(app: Flask) -> Calls:
    """Jane, and calls at several prompts (language, digits, code, menu), and call-backs
    in both modes: so fuzzed requests also meet real state."""
    with app.app_context():
        account = make_account(
            db.session(), name="Jane Doe", phone=JANE_PHONE, account_number="10004321"
        )
        account_id = account.id
    sids = []
    for presses in ([], ["1"], ["1", "4321"], ["1", "4321", "@code"]):
        sid = new_sid()
        step = gather_step(twiml(post(app, "/voice/incoming", call_form(sid))))
        for keys in presses:
            if keys == "@code":
                keys = sent_codes(app)[-1]
            step = gather_step(
                twiml(post(app, f"/voice/input?s={step}", call_form(sid, Digits=keys)))
            )
        sids.append(sid)
    callback_ids = []
    with app.app_context():
        for mode, purpose in ((outbound.READ, "verify"), (outbound.ASK, "confirm_number")):
            callback = outbound.new_callback(
                purpose=purpose,
                mode=mode,
                account_id=account_id,
                bound_to=sids[-1],
                language="en-US",
                to=JANE_PHONE,
                placed_for=sids[-1],
            )
            outbound.save(callback)
            callback_ids.append(callback.id)
    return Calls(tuple(sids), tuple(callback_ids))


def _post_signed(app: Flask, path: str, query: dict[str, str], form: dict[str, str]) -> Any:
    url = path + (f"?{urlencode(query)}" if query else "")
    headers = {"X-Twilio-Signature": signature(form, PUBLIC_URL + url, AUTH_TOKEN)}
    return app.test_client().post(url, data=form, headers=headers)


def _call_ended(app: Flask, call_sid: str, status: str) -> bool:
    with app.app_context():
        rows = db.session().scalars(
            select(AuditEvent).where(
                AuditEvent.call_sid == call_sid, AuditEvent.action == "call.ended"
            )
        )
        return any(row.details.get("status") == status for row in rows)


def check_answer(app: Flask, path: str, query: dict[str, str], form: dict[str, str]) -> None:
    """One fuzzed request and everything that must hold for its answer."""
    with _tracebacks() as tracebacks:
        response = _post_signed(app, path, query, form)
    body = response.get_data(as_text=True)
    context = f"{path} query={query!r} form={form!r}\n{body[:2000]}"
    if form.get("AccountSid") != OUR_ACCOUNT:
        assert response.status_code == 403, context
        return
    assert response.status_code == 200, context
    assert response.mimetype == "text/xml", context
    if not (path == "/voice/queue/wait" and body == LEAVE):
        assert_valid_twiml(body)
    ET.fromstring(body)
    assert not tracebacks.records, (
        f"unexpected exception: {tracebacks.records[0].getMessage()}\n{context}"
    )
    call_sid = form.get("CallSid", "")
    final = form.get("CallStatus") in FINAL_STATUSES
    if path == "/voice/status" and final and CALL_SID.fullmatch(call_sid):
        assert _call_ended(app, call_sid, form["CallStatus"]), context


def fuzz(app: Flask, path: str, calls: Calls, examples: int = EXAMPLES_PER_ENDPOINT) -> None:
    """Run `examples` derandomized requests against one endpoint."""

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=False,
    )
    @given(request=_requests(calls))
    def one(request: tuple[dict[str, str], dict[str, str]]) -> None:
        query, form = request
        check_answer(app, path, query, form)

    one()


@pytest.fixture
def calls(app: Flask) -> Calls:
    return _setup_calls(app)


def test_every_voice_endpoint_is_fuzzed(app: Flask) -> None:
    """The fuzzed list comes from the url_map: inbound, agent legs, fallback, call-backs."""
    endpoints = voice_endpoints(app)
    assert {"/voice/incoming", "/voice/status", "/voice/fallback"} <= set(endpoints)
    assert {"/voice/callback/answer", "/voice/callback/status"} <= set(endpoints)


def test_inbound_call_endpoints_survive_any_signed_input(app: Flask, calls: Calls) -> None:
    """The webhooks of the calls coming in (and the agent legs, and the fallback)."""
    endpoints = [path for path in voice_endpoints(app) if not path.startswith("/voice/callback/")]
    assert endpoints
    for path in endpoints:
        fuzz(app, path, calls)


def test_callback_endpoints_survive_any_signed_input(app: Flask, calls: Calls) -> None:
    """The webhooks of the calls the service places (codes read out, number changes)."""
    endpoints = [path for path in voice_endpoints(app) if path.startswith("/voice/callback/")]
    assert endpoints
    for path in endpoints:
        fuzz(app, path, calls)


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/voice/queue/wait?s=1", "QueueTime", "²"),
        ("/voice/status", "CallDuration", "²"),
        ("/voice/input?s=²", "Digits", "1"),
        ("/voice/dial?s=٤", "DialCallStatus", "completed"),
    ],
)
def test_non_ascii_digits_are_no_number(
    app: Flask, calls: Calls, path: str, field: str, value: str
) -> None:
    """The numbers of issue 11's report ("²" passes str.isdigit, int() refuses it)."""
    form = call_form(calls.call_sids[1], **{field: value})
    if path == "/voice/status":
        form["CallStatus"] = "completed"
    base, _, query = path.partition("?")
    check_answer(app, base, dict([query.split("=")]) if query else {}, form)
