"""TaskRouter: the agent a workflow's reservation picks hears the whisper, then gets the caller.

A `workflow:WW…` target enqueues the caller with Task attributes that carry their
CallSid (ivr.voice.handover). When TaskRouter reserves a worker for the task it
POSTs the Workflow's Assignment Callback URL (`/taskrouter/assignment`: JSON, not
TwiML, so it sits outside /voice); we
answer with the `call` instruction: TaskRouter calls the worker (their
`contact_uri`) from our number, and when they answer Twilio requests our `url`
(`/voice/taskrouter/whisper`), which says who is calling and how they were verified
(the same whisper as a dialled agent's) and asks for 1. On 1,
`<Dial><Queue reservationSid>` bridges exactly that task's caller and accepts the
reservation; anything else hangs up, and the reservation times out (the Workflow's
TaskReservationTimeout) and TaskRouter offers the task to another worker.

(The `dequeue` instruction has no URL for the worker's leg, so it could not whisper.)

Every request is signed by Twilio like a voice webhook and checked the same way. The
URLs carry only opaque ids (the caller's CallSid, the ReservationSid), inside the
signed URL.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping

from flask import Blueprint, Response, request, url_for
from werkzeug.exceptions import HTTPException

from ivr.calls import runtime
from ivr.flow.instructions import Hangup
from ivr.voice import twiml, webhook
from ivr.voice.signature import require_twilio_signature
from ivr.voice.views import whisper_document

log = logging.getLogger(__name__)

bp = Blueprint("taskrouter", __name__)
bp.before_request(require_twilio_signature)

RESERVATION_SID = re.compile(r"WR[0-9a-fA-F]{32}")


def _json_object(raw: str | None) -> Mapping[str, object]:
    """A JSON object TaskRouter posts as text (TaskAttributes, WorkerAttributes); empty when
    absent or not an object."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _caller_sid(value: object) -> str | None:
    return value if isinstance(value, str) and webhook.CALL_SID.fullmatch(value) else None


def _reservation(value: str | None) -> str | None:
    return value if value and RESERVATION_SID.fullmatch(value) else None


@bp.post("/taskrouter/assignment")
def assignment() -> Response:
    """The Workflow's Assignment Callback: call the reserved worker, whisper on their leg."""
    reservation = _reservation(request.form.get("ReservationSid"))
    if reservation is None:
        log.warning("assignment callback without a ReservationSid; no instruction")
        return Response("", status=200)
    caller = _caller_sid(_json_object(request.form.get("TaskAttributes")).get("call_sid"))
    if caller is None:
        log.warning("reservation %s: the task carries no caller CallSid", reservation)
    settings = runtime.get().settings
    instruction: dict[str, object] = {
        "instruction": "call",
        "from": settings.support_number,
        # (url_for leaves out a None value: no c= when the task named no caller)
        "url": settings.public_url + url_for("taskrouter.whisper", r=reservation, c=caller),
    }
    contact = _json_object(request.form.get("WorkerAttributes")).get("contact_uri")
    if isinstance(contact, str) and contact:
        instruction["to"] = contact  # else TaskRouter calls the worker's contact_uri itself
    log.info("reservation %s for call %s: calling the worker", reservation, caller or "-")
    return Response(json.dumps(instruction), mimetype="application/json")


@bp.post("/voice/taskrouter/whisper")
def whisper() -> Response:
    """The worker answered: who is calling and how they were verified, then "press 1"."""
    reservation = _reservation(request.args.get("r"))
    if reservation is None:
        log.warning("worker leg %s without a reservation; hanging up", request.form.get("CallSid"))
        return _answer(twiml.document(Hangup()))
    caller = _caller_sid(request.args.get("c"))
    return _answer(whisper_document(caller, url_for("taskrouter.answer", r=reservation)))


@bp.post("/voice/taskrouter/answer")
def answer() -> Response:
    """The worker's key: 1 bridges the reservation's caller, anything else declines."""
    reservation = _reservation(request.args.get("r"))
    if reservation is not None and request.form.get("Digits") == "1":
        log.info("reservation %s accepted on worker leg", reservation)
        return _answer(twiml.bridge_reservation(reservation))
    return _answer(twiml.document(Hangup()))


def _answer(document: str) -> Response:
    return Response(document, mimetype="text/xml")


@bp.errorhandler(Exception)
def bridge_anyway(exc: Exception) -> Response | HTTPException:
    """A failure here must not cost the caller their agent: a worker leg is bridged
    unannounced (after a whisper that failed) or on its key; an assignment callback
    that fails gives no instruction (the reservation times out and is offered again)."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc  # 403 bad signature, 405 wrong method
    log.error("%s: %s: %s", request.path, type(exc).__name__, exc, exc_info=True)
    if request.endpoint == "taskrouter.assignment":
        return Response("", status=200)
    reservation = _reservation(request.args.get("r"))
    declined = request.endpoint == "taskrouter.answer" and request.form.get("Digits") != "1"
    if reservation is None or declined:
        return _answer(twiml.document(Hangup()))
    return _answer(twiml.bridge_reservation(reservation))
