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
reservation. Any other key, or none, rejects the reservation through the REST API
(`POST /v1/Workspaces/{WS}/Tasks/{WT}/Reservations/{WR}` with
ReservationStatus=rejected) before the leg hangs up, so TaskRouter offers the task
to another worker at once instead of after the Workflow's TaskReservationTimeout.
(With IVR_DELIVERY=outbox nothing goes to Twilio: the reservation is left to time out.)

The `call` instruction needs `to` (Twilio error 40110 without it): the worker's
`contact_uri` attribute. A worker without one gets no instruction (logged as an
error): the reservation times out and TaskRouter offers the task again.

(The `dequeue` instruction has no URL for the worker's leg, so it could not whisper.)

Every request is signed by Twilio like a voice webhook and checked the same way. The
URLs carry only opaque ids (the caller's CallSid, the Workspace, Task and
Reservation SIDs), inside the signed URL.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from flask import Blueprint, Response, request, url_for
from twilio.base.exceptions import TwilioException
from werkzeug.exceptions import HTTPException

from ivr.calls import runtime
from ivr.delivery.twilio_client import DEFAULT_TIMEOUT, TWILIO_API_URL, close, make_client
from ivr.flow.instructions import Hangup
from ivr.voice import twiml, webhook
from ivr.voice.signature import require_twilio_signature
from ivr.voice.views import whisper_document

log = logging.getLogger(__name__)

bp = Blueprint("taskrouter", __name__)
bp.before_request(require_twilio_signature)

RESERVATION_SID = re.compile(r"WR[0-9a-fA-F]{32}")
WORKSPACE_SID = re.compile(r"WS[0-9a-fA-F]{32}")
TASK_SID = re.compile(r"WT[0-9a-fA-F]{32}")
WORKER_SID = re.compile(r"WK[0-9a-fA-F]{32}")


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


def _sid(value: str | None, pattern: re.Pattern[str]) -> str | None:
    return value if value and pattern.fullmatch(value) else None


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
    contact = _json_object(request.form.get("WorkerAttributes")).get("contact_uri")
    if not isinstance(contact, str) or not contact.strip():
        # A call instruction without `to` fails (Twilio error 40110); none at all lets the
        # reservation time out, and TaskRouter offers the task to another worker.
        log.error(
            "reservation %s: worker %s has no contact_uri attribute; no instruction",
            reservation,
            _sid(request.form.get("WorkerSid"), WORKER_SID) or "-",
        )
        return Response("", status=200)
    settings = runtime.get().settings
    whisper_url = url_for(
        "taskrouter.whisper",
        r=reservation,
        c=caller,  # (url_for leaves out a None value: no c= when the task named no caller)
        w=_sid(request.form.get("WorkspaceSid"), WORKSPACE_SID),
        t=_sid(request.form.get("TaskSid"), TASK_SID),
    )
    instruction = {
        "instruction": "call",
        "to": contact.strip(),
        "from": settings.support_number,
        "url": settings.public_url + whisper_url,
    }
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
    answer_url = url_for(
        "taskrouter.answer", r=reservation, w=request.args.get("w"), t=request.args.get("t")
    )
    return _answer(_answer_on_silence(whisper_document(caller, answer_url), answer_url))


def _answer_on_silence(document: str, answer_url: str) -> str:
    """The whisper with its closing `<Hangup/>` (no key pressed) replaced by a `<Redirect>`
    to the answer URL: silence declines like any other key, and rejects the reservation."""
    root = ET.fromstring(document)
    if len(root) and root[-1].tag == "Hangup":
        root.remove(root[-1])
    redirect = ET.SubElement(root, "Redirect", method="POST")
    redirect.text = answer_url
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")


@bp.post("/voice/taskrouter/answer")
def answer() -> Response:
    """The worker's key: 1 bridges the reservation's caller; anything else (or none)
    rejects the reservation, so the task goes to another worker now, and hangs up."""
    reservation = _reservation(request.args.get("r"))
    if reservation is not None and request.form.get("Digits") == "1":
        log.info("reservation %s accepted on worker leg", reservation)
        return _answer(twiml.bridge_reservation(reservation))
    if reservation is not None:
        reject(
            _sid(request.args.get("w"), WORKSPACE_SID),
            _sid(request.args.get("t"), TASK_SID),
            reservation,
        )
    return _answer(twiml.document(Hangup()))


def reject(workspace: str | None, task: str | None, reservation: str) -> bool:
    """Reject the reservation through the REST API; False (logged) when that could not be
    done: the reservation then times out (TaskReservationTimeout) and is offered again."""
    settings = runtime.get().settings
    if workspace is None or task is None:
        log.warning(
            "reservation %s declined; no task to reject it on: left to time out", reservation
        )
        return False
    if settings.delivery != "twilio":
        log.info(
            "reservation %s declined (IVR_DELIVERY=outbox: not rejected at Twilio)", reservation
        )
        return False
    client = make_client(settings, timeout=DEFAULT_TIMEOUT)
    if settings.twilio_api_url != TWILIO_API_URL:
        # The client rebases api.twilio.com only; TaskRouter lives at taskrouter.twilio.com.
        client.taskrouter.base_url = settings.twilio_api_url
    try:
        client.taskrouter.v1.workspaces(workspace).tasks(task).reservations(reservation).update(
            reservation_status="rejected"
        )
    except (TwilioException, OSError) as exc:
        log.error("reservation %s could not be rejected: %s; left to time out", reservation, exc)
        return False
    finally:
        close(client)
    log.info("reservation %s declined by the worker: rejected", reservation)
    return True


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
