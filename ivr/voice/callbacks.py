"""Webhooks of the calls the service places (call-backs): answer, key, code, status.

Twilio reaches these only through the URLs given to `calls.create`, which carry
nothing but the call-back's opaque id (`?o=`). Every answer is valid TwiML; any
trouble ends the call politely without ever saying a code.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request, url_for
from werkzeug.exceptions import HTTPException

from ivr.calls import outbound, runtime
from ivr.calls.outbound import ASK, READ, Callback
from ivr.errors import CallError
from ivr.flow.instructions import Gather, Hangup, Instruction, Pause, Say
from ivr.phone import mask
from ivr.storage import audit, db
from ivr.verification.codes import Issued, policy_for
from ivr.voice import twiml, webhook
from ivr.voice.services import codes, number_changes
from ivr.voice.signature import require_twilio_signature

log = logging.getLogger(__name__)

bp = Blueprint("callback", __name__, url_prefix="/voice/callback")
bp.before_request(require_twilio_signature)

# Twilio's AnsweredBy values that mean no person (only sent when machine detection is on).
MACHINES = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax")


def _answer(instructions: list[Instruction], action: str = "") -> Response:
    links = twiml.Links(input=lambda _step: action, dial=lambda _step: "", whisper=None)
    return Response(twiml.render(instructions, links), mimetype="text/xml")


def _say(callback: Callback | None, key: str, **values: str) -> Say:
    rt = runtime.get()
    catalog = rt.catalog
    language = callback.language if callback else rt.flow.default_language
    if language not in catalog.languages:
        language = rt.flow.default_language
    text = catalog.text(language, key)
    if values:
        text = text.format(**values)
    return Say(" ".join(text.split()), language, catalog.voice(language))


def _goodbye(callback: Callback | None, key: str) -> Response:
    return _answer([_say(callback, key), Hangup()])


def spoken_code(code: str) -> str:
    """Digit by digit with a comma between each, which text-to-speech reads slowly."""
    return ", ".join(code)


@bp.post("/answer")
def answer() -> Response:
    """The called phone was answered: ask for a key (READ) or for the code (ASK)."""
    webhook.parse(request.form)
    callback_id = request.args.get("o", "")
    if request.form.get("AnsweredBy", "") in MACHINES:
        machine = outbound.load(callback_id)
        if machine is None:
            return _goodbye(None, "callback_expired")
        log.info("call-back %s reached %s; nothing said", machine.sid, request.form["AnsweredBy"])
        return _answer([Hangup()])
    callback = outbound.update(callback_id, answered=True)  # read and marked at once
    if callback is None:
        return _goodbye(None, "callback_expired")
    if callback.mode == READ:
        gather = Gather(
            (_say(callback, "callback_press_key"),),
            step=0,
            timeout=10,
            num_digits=1,
            finish_on_key="",
            retry_on_silence=False,
        )
        action = url_for("callback.key", o=callback.id)
        return _answer([gather, _say(callback, "callback_no_key"), Hangup()], action)
    return _ask_for_code(callback, "callback_enter_code")


def _ask_for_code(callback: Callback, prompt: str) -> Response:
    length = policy_for(callback.purpose, runtime.get().settings).length
    gather = Gather(
        (_say(callback, prompt),),
        step=0,
        timeout=10,
        num_digits=length,
        finish_on_key="#",
        retry_on_silence=False,
    )
    action = url_for("callback.code", o=callback.id)
    return _answer([gather, _say(callback, "callback_no_code"), Hangup()], action)


@bp.post("/key")
def key() -> Response:
    """A key was pressed on a READ call-back: make the code now and read it out twice."""
    call = webhook.parse(request.form)
    callback = outbound.load(request.args.get("o", ""))
    if callback is None or callback.mode != READ:
        return _goodbye(callback, "callback_expired")
    if not call.digits:
        return _goodbye(callback, "callback_no_key")
    outcome = codes(callback.purpose).reveal(
        callback.account_id, callback.purpose, callback.id, callback.bound_to
    )
    if not isinstance(outcome, Issued):
        log.info("call-back %s: no code read (%s)", call.call_sid, outcome.reason)
        if outcome.reason == "locked":
            return _goodbye(callback, "callback_locked")
        return _goodbye(callback, "callback_expired")
    outbound.update(callback.id, revealed=True)
    log.info("call-back %s: code read out (%s)", call.call_sid, callback.purpose)
    digits = spoken_code(outcome.code)
    return _answer(
        [
            _say(callback, "read_code_callback", code_digits=digits),
            Pause(2),
            _say(callback, "read_code_callback_again", code_digits=digits),
            _say(callback, "callback_goodbye"),
            Hangup(),
        ]
    )


@bp.post("/code")
def code() -> Response:
    """A code keyed in on an ASK call-back; its purpose decides what a right one does."""
    call = webhook.parse(request.form)
    callback = outbound.load(request.args.get("o", ""))
    if callback is None or callback.mode != ASK:
        return _goodbye(callback, "callback_expired")
    if not call.digits:
        return _goodbye(callback, "callback_no_code")
    # Changing the number is the only purpose that asks for a code on a call-back.
    result = number_changes().confirm_on_callback(callback, call.digits)
    if result.ask_again:
        return _ask_for_code(callback, result.prompt)
    return _goodbye(callback, result.prompt)


@bp.post("/status")
def status() -> Response:
    """Status callback of a call-back leg: record the final status once, and audit it."""
    call = webhook.parse(request.form)
    if call.call_status not in outbound.FINAL_STATUSES:
        return _answer([])
    # The status is stored first (idempotently), so a failure below can never leave a
    # caller waiting on a call-back that has in fact ended.
    callback = outbound.update(
        request.args.get("o", ""), status=call.call_status, unless_status=outbound.FINAL_STATUSES
    )
    details: dict[str, object] = {"status": call.call_status}
    if callback is not None:
        details.update(
            purpose=callback.purpose,
            mode=callback.mode,
            to=mask(callback.to),
            answered=callback.answered,
            code_read=callback.revealed,
            outcome=callback.outcome,
            placed_for=callback.placed_for,
        )
    first = audit.record_alone(
        db.engine(),
        "callback.ended",
        actor="twilio",
        call_sid=call.call_sid,
        account_id=callback.account_id if callback else None,
        details=details,
        dedupe_key=f"callback.ended:{call.call_sid}:{call.call_status}",
    )
    if first and callback is not None:
        number_changes().callback_ended(callback)
    log.info(
        "call-back %s ended: %s%s", call.call_sid, call.call_status, "" if first else " (repeat)"
    )
    return _answer([])


@bp.errorhandler(Exception)
def end_politely(exc: Exception) -> Response | HTTPException:
    """Storage down or a bug: say sorry and hang up; never a code, never an HTTP 500."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc
    log.error(
        "call-back webhook %s failed: %s: %s",
        request.path,
        type(exc).__name__,
        exc,
        exc_info=not isinstance(exc, CallError),  # expected run-time errors get one line
    )
    if request.endpoint == "callback.status":
        return _answer([])
    try:
        return _goodbye(None, "callback_trouble")
    except Exception:
        return Response(twiml.document(Hangup()), mimetype="text/xml")
