"""Helpers shared by the webhook and journey tests: signed posts, prompt texts,
accounts, stored state, and the check that nothing secret is logged."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from caller import Phone, code_of
from conftest import AUTH_TOKEN, PUBLIC_URL
from factories import make_account
from flask import Flask
from sqlalchemy import select
from twilio.request_validator import RequestValidator
from twiml_schema import assert_valid_twiml
from werkzeug.test import TestResponse

from ivr.delivery import outbox
from ivr.simulator.player import CallResult
from ivr.storage import db, keys, kv
from ivr.storage.models import AuditEvent

AGENT = "+15005550006"  # IVR_AGENT_TARGET of the test app
JANE_PHONE = "+14155550100"


# --- signed webhook posts -------------------------------------------------------------------


def new_sid() -> str:
    return "CA" + secrets.token_hex(16)


def call_form(call_sid: str | None, **fields: str) -> dict[str, str]:
    """The fields Twilio always sends on an inbound call's webhook, plus `fields`."""
    form = {
        "AccountSid": "AC" + "0" * 32,
        "From": JANE_PHONE,
        "Caller": JANE_PHONE,
        "To": AGENT,
        "Called": AGENT,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    if call_sid is not None:
        form["CallSid"] = call_sid
    form.update(fields)
    return form


def signature(form: dict[str, str], url: str, token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature for `form` posted to the full public `url`."""
    return RequestValidator(token).compute_signature(url, form)


def post(
    app: Flask,
    path: str,
    form: dict[str, str],
    *,
    sign_as: str | None = None,
    token: str = AUTH_TOKEN,
    header: str | None = None,
    signed: bool = True,
) -> TestResponse:
    """POST `form` to `path`, signed for PUBLIC_URL + `sign_as` (default: `path`)."""
    headers = {}
    if header is not None:
        headers["X-Twilio-Signature"] = header
    elif signed:
        headers["X-Twilio-Signature"] = signature(form, PUBLIC_URL + (sign_as or path), token)
    return app.test_client().post(path, data=form, headers=headers)


def twiml(response: TestResponse) -> ET.Element:
    """A 200 answer's TwiML, schema-checked and parsed."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/xml"
    body = response.get_data(as_text=True)
    assert_valid_twiml(body)
    root = ET.fromstring(body)
    assert root.tag == "Response"
    return root


def says(doc: ET.Element) -> list[str]:
    """Every <Say> text in the document, in order, whitespace normalised."""
    return [" ".join((say.text or "").split()) for say in doc.iter("Say")]


def gather_step(doc: ET.Element) -> int:
    """The step number the document's <Gather> action carries (?s=N)."""
    gather = doc.find("Gather")
    assert gather is not None, ET.tostring(doc, encoding="unicode")
    action = urlsplit(gather.get("action") or "")
    assert action.path == "/voice/input"
    return int(parse_qs(action.query)["s"][0])


def state_of(app: Flask, call_sid: str) -> dict[str, Any] | None:
    """The stored call state as a dict (None when there is none)."""
    with app.app_context():
        raw = kv.client().get(keys.call_state(call_sid))
    return json.loads(raw) if raw else None


# --- journeys -------------------------------------------------------------------------------


def text(app: Flask, key: str, language: str = "en-US", **values: str) -> str:
    """A prompt as the caller hears it: placeholders filled, whitespace as the simulator logs it."""
    raw = app.extensions["ivr.runtime"].working.catalog.text(language, key)
    return " ".join(raw.format(**values).split()) if values else " ".join(raw.split())


def greeting(app: Flask) -> list[str]:
    """The welcome and the language choice, spoken once in each language."""
    return [
        text(app, "welcome"),
        text(app, "language_option", "en-US"),
        text(app, "language_option", "es-US"),
    ]


# How a caller who passed both steps was verified, as the whisper names it.
DIGITS_AND_SMS = ("account_digits", "code_sms")
NUMBER_AND_SMS = ("account_number", "code_sms")


def with_flags(app: Flask, summary: str, flags: Sequence[str]) -> str:
    """A whisper summary followed by the sentence of each risk flag, in the order given."""
    return " ".join([summary, *(text(app, f"whisper_flag_{flag}") for flag in flags)])


def verified_whisper(
    app: Flask,
    name: str,
    last4: str,
    methods: str | Sequence[str],
    reason: str,
    flags: Sequence[str] = (),
) -> str:
    """What the agent hears about a caller who passed verification, by every method used,
    then the risk flags (`whisper_flag_<flag>`) the call raised."""
    names = [methods] if isinstance(methods, str) else list(methods)
    summary = text(
        app,
        "whisper_verified",
        name=name,
        account_last4=" ".join(last4),
        method=" and ".join(text(app, f"method_{method}") for method in names),
        reason=text(app, f"reason_{reason}"),
    )
    # Simulated calls take no time: the code was checked "just now".
    return with_flags(app, f"{summary} {text(app, 'whisper_when_now')}", flags)


def unverified_whisper(app: Flask, reason: str, flags: Sequence[str] = ()) -> str:
    """What the agent hears about a caller who did not pass verification, then its risk flags."""
    summary = text(app, "whisper_unverified", reason=text(app, f"reason_{reason}"))
    return with_flags(app, summary, flags)


def read_out(app: Flask, code: str) -> list[str]:
    """What the person who answers a call-back and presses a key hears: the code, twice."""
    digits = ", ".join(code)
    return [
        text(app, "callback_press_key"),
        text(app, "read_code_callback", code_digits=digits),
        text(app, "read_code_callback_again", code_digits=digits),
        text(app, "callback_goodbye"),
    ]


def add_account(
    app: Flask, name: str, phone: str, account_number: str, email: str | None = None
) -> int:
    """One committed account (in a context of its own, so calls use their own sessions)."""
    with app.app_context():
        account = make_account(
            db.session(), name=name, phone=phone, account_number=account_number, email=email
        )
        return account.id


def call_ended_rows(app: Flask, call_sid: str) -> list[AuditEvent]:
    """The `call.ended` audit rows of one call, read on a fresh session."""
    with app.app_context():
        query = select(AuditEvent).where(
            AuditEvent.call_sid == call_sid, AuditEvent.action == "call.ended"
        )
        return list(db.session().scalars(query))


def stored_state(app: Flask, call_sid: str) -> Any:
    """The raw call state kept in Redis for `call_sid` (None when there is none)."""
    with app.app_context():
        return kv.client().get(keys.call_state(call_sid))


def caller_documents(result: CallResult) -> list[tuple[str, ET.Element]]:
    """The TwiML documents of the caller's leg (not the agent's whisper), parsed."""
    return [
        (url, ET.fromstring(body)) for url, body in result.documents if "/voice/whisper" not in url
    ]


def dial_of(result: CallResult) -> ET.Element:
    """The one <Dial> the caller's leg received."""
    dials = [dial for _, doc in caller_documents(result) for dial in doc.iter("Dial")]
    assert len(dials) == 1, f"expected one <Dial>, got {len(dials)}"
    return dials[0]


def heard_before_keys(result: CallResult, entry: int) -> list[str]:
    """What the caller heard before their `entry`-th keypad entry (0-based)."""
    heard: list[str] = []
    seen = 0
    for event in result.events:
        if event.who != "caller":
            continue
        if event.kind == "keys":
            if seen == entry:
                return heard
            seen += 1
        elif event.kind == "say":
            heard.append(event.text)
    raise AssertionError(f"the caller made fewer than {entry + 1} entries")


# --- nothing secret in the logs ---------------------------------------------------------------

# Opaque ids are hex and may contain any digits: CallSids, outbox and message ids, flow versions.
OPAQUE_IDS = [
    # Twilio SIDs (CallSid CA…, RecordingSid RE…, QueueSid QU…, TaskRouter W…) and our
    # call-back ids: random hex may hold ten digits in a row, which is no phone number.
    re.compile(r"\b[A-Z]{2}[0-9a-fA-F]{32}\b"),
    re.compile(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{12,}\b"),
]
FULL_NUMBER = re.compile(r"\+[1-9]\d{6,14}|\d{10,}")  # E.164, or a number written without +


def secrets_of(outbox_path: Path, calls: Iterable[CallResult]) -> set[str]:
    """What must never be logged: codes sent or read out, numbers and addresses sent to,
    and keys pressed (by callers and by the people call-backs reach)."""
    found: set[str] = set()
    for message in outbox.read(outbox_path):
        found.add(message.to)
        if message.purpose in ("verify", "confirm_number") and message.channel != "call":
            found.add(code_of(message))
    for result in calls:
        found |= set(result.codes)
        for event in result.events:
            if event.kind != "keys" or event.who not in ("caller", "callee"):
                continue
            pressed = event.text.strip("#*")  # single keys (menu choices) give nothing away
            if pressed.isdigit() and len(pressed) >= 4:
                found.add(pressed)
    return found


def logged_text(record: logging.LogRecord) -> str:
    """A record as it would be written, opaque ids blanked out."""
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    for pattern in OPAQUE_IDS:
        text = pattern.sub("<id>", text)
    return text


def assert_nothing_secret_logged(records: Iterable[logging.LogRecord], secrets: set[str]) -> None:
    for record in records:
        text = logged_text(record)
        leaked = sorted(secret for secret in secrets if secret in text)
        assert not leaked, f"{record.name} logged {leaked}: {text!r}"
        number = FULL_NUMBER.search(text)
        assert number is None, f"{record.name} logged a full number {number.group()}: {text!r}"


def checked_logs(caplog: pytest.LogCaptureFixture, outbox_path: Path) -> Iterator[None]:
    """Capture all logging (DEBUG) around a test, then check its records for secrets."""
    Phone.placed.clear()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="ivr")
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    if Phone.placed:
        assert records, "calls were placed but nothing was logged: the check would prove nothing"
    assert_nothing_secret_logged(records, secrets_of(outbox_path, Phone.placed))


# --- a clock for the codes the webhooks check ---------------------------------------------


class Clock:
    """Real time, plus whatever jumps a test makes."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead

    def after(self, seconds: float, entry: str) -> Callable[[], str]:
        """A keypad entry pressed `seconds` later than the prompt it answers."""

        def later() -> str:
            self.ahead += seconds
            return entry

        return later
