"""Voicemail webhooks: the `<Record>` action (the caller finished their message) and
Twilio's recording status callback (the recording is stored at Twilio, or failed).

The action stores the message first, then runs the engine's step, which thanks the
caller and ends the call. The same action URL is also where the `<Redirect>` after the
`<Record>` leads when the caller said nothing (Twilio does not call the action for an
empty recording): no RecordingSid, nothing stored, the node's empty prompt.

Who called and how they were verified come from the call's state while it lives, else
from the pending voicemail written when the recording started (`ivr.voicemail.pending`):
a caller who hangs up to end the message ends the call first, Twilio's final status
callback takes the state away, and the action comes after it (`Digits=hangup`), as may
the recording status callback. The engine's step cannot run then; the voicemail step
goes to the call's stored record instead (`ivr.voicemail.late`), and the answer is the
goodbye, which nobody hears.

Storing never costs the caller the goodbye: a failure is logged (with the recording
SID, never the number) and the step runs anyway. What the rows hold and how the two
webhooks meet: `ivr.voicemail.store`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from ivr.calls import runtime, store
from ivr.errors import CallStateLost, StorageUnavailable
from ivr.flow.engine import Recorded
from ivr.flow.instructions import Hangup, Instruction, Say
from ivr.storage import db
from ivr.voice import twiml, webhook
from ivr.voice.signature import require_twilio_signature
from ivr.voice.views import run_step
from ivr.voicemail import late, pending
from ivr.voicemail.pending import Pending
from ivr.voicemail.store import CALLBACK_STATUS, RECORDING_SID, Heard, caller_of, save

log = logging.getLogger(__name__)

bp = Blueprint("voicemail", __name__, url_prefix="/voice/voicemail")
bp.before_request(require_twilio_signature)

RECORDING_URL = re.compile(r"https?://[\x21-\x7e]{1,480}")
GOODBYE = "voicemail_thanks"  # said when the call's state is lost after a message


@bp.post("/recorded")
def recorded() -> Response:
    """The `<Record>` action: the message ended (finish key, silence or maximum length);
    or the `<Redirect>` after it, when nothing was recorded."""
    call = webhook.parse(request.form)
    step = webhook.step(request.args)
    sid = request.form.get("RecordingSid", "")
    seconds = 0
    if RECORDING_SID.fullmatch(sid):
        seconds = webhook.ascii_int(request.form.get("RecordingDuration"), 0)
        _store(Heard(call.call_sid, sid, _url(request.form), seconds), call.caller)
    try:
        return run_step(call.call_sid, f"recorded:{step}", step, lambda: Recorded(seconds, step))
    except CallStateLost:
        if not _after_the_call(call.call_sid, seconds):
            raise  # no pending voicemail either: the state was lost mid-call
    # The call ended before its action (the caller hung up: Digits=hangup): nobody
    # hears this, but it is the same goodbye the step would have said.
    return _answer(_goodbye(call.call_sid))


@bp.post("/status")
def recording_status() -> Response:
    """The recording status callback: the message is stored at Twilio (or failed). Always
    an empty document: Twilio does not retry these, a failure is in the log."""
    call = webhook.parse(request.form)
    sid = request.form.get("RecordingSid", "")
    status = CALLBACK_STATUS.get(request.form.get("RecordingStatus", ""))
    if status is None or not RECORDING_SID.fullmatch(sid):
        log.info("call %s: a recording status callback ignored", call.call_sid)
        return _answer(twiml.document())
    duration = webhook.ascii_int(request.form.get("RecordingDuration"), -1)
    heard = Heard(
        call.call_sid, sid, _url(request.form), duration if duration >= 0 else None, status
    )
    _store(heard, call.caller)
    _add_waiting_steps(call.call_sid)
    return _answer(twiml.document())


def _after_the_call(call_sid: str, seconds: int) -> bool:
    """The action of a call that has ended: its voicemail step to the call's stored
    record, or kept for it (see `ivr.voicemail.late`). False when nothing says the call
    was recording (no pending voicemail)."""
    found = pending.recall(call_sid)
    if found is None:
        return False
    log.info("call %s: the message's action came after the call ended", call_sid)
    if not found.late:
        found.late = late.steps_for(found, seconds)
    _add_or_keep(call_sid, found)
    return True


def _add_waiting_steps(call_sid: str) -> None:
    """Steps that came before the call's record (an action after the call ended) are
    added once the record is there: tried again at each recording status callback."""
    found = pending.recall(call_sid)
    if found is not None and found.late:
        _add_or_keep(call_sid, found)


def _add_or_keep(call_sid: str, found: Pending) -> None:
    """Add the waiting steps to the call's record; kept for a later try while it has
    none (stored again without them once added: never added twice)."""
    try:
        with db.unavailable_as_storage_error():
            added = late.add_to_record(db.session(), call_sid, found.late)
    except Exception:  # the message itself is stored; only the step waits
        db.session().rollback()
        log.exception("call %s: voicemail step not added to the call's record", call_sid)
        added = False
    if added:
        found.late = []
    else:
        log.info("call %s: no call record yet; its voicemail step waits for it", call_sid)
    try:
        pending.keep(call_sid, found)
    except StorageUnavailable as exc:
        log.error("call %s: pending voicemail not kept (%s)", call_sid, exc)


def _answer(document: str) -> Response:
    return Response(document, mimetype="text/xml")


def _url(form: Mapping[str, str]) -> str:
    """Twilio's RecordingUrl, kept for reference only (the agent page fetches the audio
    by the recording's SID, never from a stored URL)."""
    raw = form.get("RecordingUrl", "")
    return raw if RECORDING_URL.fullmatch(raw) else ""


def _store(heard: Heard, raw_from: str) -> bool:
    """Store what a webhook says; False (logged) when it could not be stored."""
    settings = current_app.config["IVR_SETTINGS"]
    try:
        state = store.load(heard.call_sid)
    except StorageUnavailable as exc:
        log.warning(
            "call %s: no call state for voicemail %s: %s", heard.call_sid, heard.recording_sid, exc
        )
        state = None
    known = None if state is not None else pending.recall(heard.call_sid)
    if known is not None:  # the call has ended; its facts were kept when it started recording
        caller = known.caller
    else:
        caller = caller_of(state, raw_from, settings.default_region, settings.secret_key)
    try:
        with db.unavailable_as_storage_error():
            save(db.session(), heard, caller)
    except Exception:  # the caller still hears the goodbye; the SID says which message
        db.session().rollback()
        log.exception("call %s: voicemail %s not stored", heard.call_sid, heard.recording_sid)
        return False
    return True


@bp.errorhandler(Exception)
def _answer_errors(exc: Exception) -> Response | HTTPException:
    """A failure after a message still ends the call politely: never an agent transfer
    (the caller chose to leave a message), never Twilio's "application error"."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc
    raw = request.form.get("CallSid", "")
    call_sid = raw if webhook.CALL_SID.fullmatch(raw) else "-"  # never echo what came
    log.error("call %s: voicemail webhook failed: %s: %s", call_sid, type(exc).__name__, exc)
    if request.endpoint != "voicemail.recorded":
        return _answer(twiml.document())  # a status callback: nothing to say to anyone
    return _answer(_goodbye(call_sid))


def _goodbye(call_sid: str) -> str:
    """The thanks and a hang-up, in the live flow's default language (no call state)."""
    instructions: list[Instruction] = []
    try:
        rt = runtime.get()
        language = rt.flow.default_language
        goodbye = rt.catalog.text(language, GOODBYE)
        instructions.append(Say(goodbye, language, rt.catalog.voice(language)))
    except Exception:  # no prompts to say: end the call anyway
        log.warning("call %s: no %s prompt; hanging up", call_sid, GOODBYE)
    instructions.append(Hangup())
    return twiml.document(*instructions)
