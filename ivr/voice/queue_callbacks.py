"""Call-back instead of holding: the caller's choice on hold, the job's call, its webhooks.

1. `choose` is the action of the offer's `<Gather>` in a hold document (ivr.voice.hold):
   Twilio runs its answer in place of the hold. On "1" from a fully verified caller at
   a transfer that offers it, the call-back is recorded (ivr.calls.queue_callback), its
   job queued for when the caller's turn should come, the call's timeline notes the
   choice (QUEUE_CALLBACK requested) and its state ends, so the `<Enqueue>` action that
   follows the hang-up (QueueResult=hangup) runs no `unanswered` path: "we will call you
   back", `<Hangup/>`. Any other key keeps the caller holding.
2. The job (`place`) rings the number on file, read from the database by account id at
   that moment: never a number keyed in, never the caller ID.
3. `answer`: who is calling (our company; no account data) and "press 1"; `key` on "1":
   the leg gets a call state carrying the caller's verification, flagged "called back
   on the number on file", and joins the queue ahead of new callers: the plain queue's
   `-callbacks` queue (the agent line takes it first), or the workflow with a Task of
   high priority; its hold and the agent's taking then run as for any held caller.
4. `status`: a leg that ended without joining (no answer, busy, failed, no "1") is
   tried once more RETRY_AFTER seconds later; after the last, a text says we tried.

Every step is audited (`queue_callback.requested|placed|answered|joined|failed|texted`),
numbers masked.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, current_app, request, url_for
from werkzeug.exceptions import HTTPException

from ivr.calls import queue_callback, runtime, store, timeline_store
from ivr.calls.queue_callback import QueueCallback
from ivr.customers.directory import SqlDirectory
from ivr.delivery import DeliveryFailed, Outgoing, OutgoingCall
from ivr.delivery import registry as delivery
from ivr.errors import CallError, CallStateLost
from ivr.flow import timeline
from ivr.flow.instructions import Gather, Hangup, Instruction, Say, Transfer
from ivr.jobs.calls import call_ended
from ivr.jobs.deliveries import send_later
from ivr.jobs.queue import QUEUE_CALLBACK, enqueue
from ivr.phone import mask
from ivr.storage import audit, db
from ivr.voice import handover, hold, twiml, webhook
from ivr.voice.signature import require_twilio_signature

log = logging.getLogger(__name__)

bp = Blueprint("queue_callback", __name__, url_prefix="/voice/queue-callback")
bp.before_request(require_twilio_signature)

RING_SECONDS = 30  # then Twilio gives up: no-answer
KEY_TIMEOUT = 10  # seconds to press 1 on the call-back
MACHINES = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax")
ENDED = frozenset({"completed", "busy", "no-answer", "canceled", "failed"})
# Prompts (system prompts, in every language).
CONFIRM = "queue_callback_confirm"
INTRO = "queue_callback_intro"
NO_KEY = "queue_callback_no_key"
EXPIRED = "queue_callback_expired"
MISSED_SMS = "queue_callback_missed_sms"
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def _answer(document: str) -> Response:
    return Response(document, mimetype="text/xml")


def _links() -> twiml.Links:
    """The views' links: the call-back leg holds and is taken like any held call."""
    return twiml.Links(
        input=lambda step: url_for("voice.input", s=step),
        dial=lambda step: url_for("voice.dial_result", s=step),
        whisper=lambda step: url_for("voice.whisper", s=step),
        wait=lambda step: url_for("hold.wait", s=step),
    )


def _say(language: str | None, key: str) -> Say:
    rt = runtime.get()
    catalog = rt.catalog
    if language not in catalog.languages:
        language = rt.flow.default_language
    assert language is not None
    return Say(" ".join(catalog.text(language, key).split()), language, catalog.voice(language))


def _render(instructions: list[Instruction], action: str = "") -> Response:
    links = twiml.Links(input=lambda _step: action, dial=lambda _step: "", whisper=None)
    return _answer(twiml.render(instructions, links))


def _audit(
    action: str, callback: QueueCallback, dedupe: str, actor: str = "system", **details: object
) -> None:
    audit.record_alone(
        db.engine(),
        f"queue_callback.{action}",
        actor=actor,
        call_sid=callback.call_sid,
        account_id=callback.account_id,
        details={"callback": callback.id, "attempt": callback.attempts, **details},
        dedupe_key=f"queue_callback.{action}:{callback.id}:{dedupe}",
    )


def number_on_file(account_id: int) -> str | None:
    """The account's phone number, from the database now (it may have changed since).
    None unless it is an E.164 number: an erased account's placeholder (`erased:<id>`)
    is never rung nor texted."""
    found = SqlDirectory(db.session(), autocommit=True).accounts_by_ids([account_id])
    phone = found[0].phone if found else None
    if not phone or not E164.fullmatch(phone):
        return None
    return phone


def _schedule(callback: QueueCallback, attempt: int, seconds: int) -> None:
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    enqueue(
        QUEUE_CALLBACK,
        # The account too: the customer erase finds (and deletes) the waiting job by it.
        {
            "id": callback.id,
            "attempt": attempt,
            "call_sid": callback.call_sid,
            "account_id": callback.account_id,
        },
        key=f"queue_callback:{callback.id}:{attempt}",
        at=at,
    )


# ---------------------------------------------------------------- the choice on hold


@bp.post("/choose", endpoint="choose")
def choose() -> Response:
    """The offer's key, posted while the caller holds: "1" books the call-back and ends
    the call politely; anything else (or a caller it is not for) keeps them holding."""
    call = webhook.parse(request.form)
    step = webhook.step(request.args)
    keep_holding = _answer(twiml.wait_document([], url_for("hold.wait", s=step)))
    if call.digits != "1":
        return keep_holding
    with store.step(call.call_sid, f"queue_callback:{step}") as held:
        if held.answered is not None:
            return _answer(held.answered)
        state = held.state
        if state is None:
            raise CallStateLost(f"no state for call {call.call_sid}")
        target = hold.holding_target(state) if held.locked else None
        if (
            target is None
            or not target.holds
            or target.offer_callback_after is None
            or step != state.step
            or state.ended
            or state.verification != "code"
            or state.account_id is None
            or queue_callback.CALLED_BACK in state.flags
            or queue_callback.REQUESTED in state.flags
        ):
            log.warning("call %s: call-back chosen where none is offered", call.call_sid)
            return keep_holding
        now = time.time()
        callback = queue_callback.from_state(state, now)
        if not queue_callback.claim(callback):
            log.warning("call %s: a call-back of this account waits already", call.call_sid)
            return keep_holding
        queue_callback.save(callback)
        position = webhook.ascii_int(request.args.get("p"), 0) or None
        average = webhook.ascii_int(request.args.get("w"), 0) or None
        wait = queue_callback.delay(position, average)
        _schedule(callback, 1, wait)
        chosen = state.copy()
        chosen.flags.append(queue_callback.REQUESTED)
        chosen.ended = True  # the Enqueue action (hangup) then runs no unanswered path
        at = max(0, round((now - state.started_at) * 1000))
        steps = [
            timeline.step(
                timeline.QUEUE_CALLBACK,
                at,
                node=state.node,
                result=timeline.CALLBACK_REQUESTED,
                position=position,
            )
        ]
        document = twiml.render(
            [_say(state.language, CONFIRM), Hangup()],
            twiml.Links(input=lambda _s: "", dial=lambda _s: "", whisper=None),
        )
        secret = current_app.config["IVR_SETTINGS"].secret_key
        summary = json.dumps(timeline.summary_of(chosen, secret), separators=(",", ":"))
        held.save(chosen, document, steps, summary)
    _audit("requested", callback, "requested", actor="caller", node=state.node, due_in=wait)
    log.info("call %s chose a call-back in about %s s", call.call_sid, wait)
    return _answer(document)


# ---------------------------------------------------------------- the job's call


def place(callback_id: str, attempt: int) -> None:
    """Ring the number on file for try `attempt` (the job ivr.jobs.tasks runs); a try
    already made, or a call-back already over, is left alone."""
    callback = queue_callback.load(callback_id)
    if callback is None or callback.status in queue_callback.FINAL:
        return
    if callback.attempts >= attempt:
        return  # this try was made already
    phone = number_on_file(callback.account_id)
    callback.attempts = attempt
    if phone is None:
        _audit("failed", callback, f"{attempt}", reason="no_number_on_file")
        _give_up(callback, None)
        return
    callback.status = queue_callback.RINGING
    callback.answered = False
    callback.leg_sid = None
    queue_callback.save(callback)
    base = runtime.get().settings.public_url
    try:
        sid = delivery.get_dialer(background=True).place(
            OutgoingCall(
                to=phone,
                url=base + url_for("queue_callback.answer", o=callback.id),
                status_callback=base + url_for("queue_callback.status", o=callback.id),
                ring_seconds=RING_SECONDS,
                call_sid=callback.call_sid,
                purpose="queue_callback",
            )
        )
    except DeliveryFailed as exc:
        log.warning("call-back %s try %s not placed: %s", callback.id, attempt, exc)
        _audit("failed", callback, f"{attempt}", reason="not_placed", to=mask(phone))
        _next_try(callback)
        return
    current = queue_callback.load(callback.id) or callback
    if current.leg_sid is None:
        current.leg_sid = sid
        queue_callback.save(current)
    _audit("placed", current, f"{attempt}", to=mask(phone))
    log.info("call-back %s try %s placed to %s", callback.id, attempt, mask(phone))


def _next_try(callback: QueueCallback) -> None:
    """One more try a few minutes later, or (after the last) the text saying we tried."""
    if callback.attempts < queue_callback.ATTEMPTS:
        callback.status = queue_callback.WAITING
        queue_callback.save(callback)
        _schedule(callback, callback.attempts + 1, queue_callback.RETRY_AFTER)
        return
    _give_up(callback, number_on_file(callback.account_id))


def _give_up(callback: QueueCallback, phone: str | None) -> None:
    """No more tries: text the number on file that we tried (when there is one)."""
    callback.status = queue_callback.GAVE_UP
    queue_callback.release(callback)
    if phone is not None:
        language = callback.language
        text = _say(language, MISSED_SMS).text
        send_later(
            Outgoing(
                channel="sms",
                to=phone,
                body=text,
                call_sid=callback.call_sid,
                purpose="queue_callback",
            ),
            key=f"queue_callback:{callback.id}:text",
            account_id=callback.account_id,
        )
        callback.status = queue_callback.TEXTED
        _audit("texted", callback, "texted", to=mask(phone))
    queue_callback.save(callback)


# ---------------------------------------------------------------- the call-back's webhooks


@bp.post("/answer", endpoint="answer")
def answer() -> Response:
    """The number on file answered: say who is calling (no account data) and ask for 1."""
    call = webhook.parse(request.form)
    callback = queue_callback.load(request.args.get("o", ""))
    if callback is None or callback.status in queue_callback.FINAL:
        return _render([_say(None, EXPIRED), Hangup()])
    if request.form.get("AnsweredBy", "") in MACHINES:
        log.info("call-back %s reached a machine; nothing said", callback.id)
        return _render([Hangup()])
    callback.answered = True
    callback.status = queue_callback.ANSWERED
    callback.leg_sid = callback.leg_sid or call.call_sid
    queue_callback.save(callback)
    _audit("answered", callback, call.call_sid, actor="twilio")
    gather = Gather(
        (_say(callback.language, INTRO),),
        step=0,
        timeout=KEY_TIMEOUT,
        num_digits=1,
        finish_on_key="",
        retry_on_silence=False,
    )
    action = url_for("queue_callback.key", o=callback.id)
    return _render([gather, _say(callback.language, NO_KEY), Hangup()], action)


@bp.post("/key", endpoint="key")
def key() -> Response:
    """The key 1 on the call-back: the leg joins the queue ahead of new callers, carrying the
    caller's verification, flagged "called back on the number on file"."""
    call = webhook.parse(request.form)
    callback = queue_callback.load(request.args.get("o", ""))
    if callback is None or callback.status in queue_callback.FINAL:
        return _render([_say(None, EXPIRED), Hangup()])
    if call.digits != "1":
        return _render([_say(callback.language, NO_KEY), Hangup()])
    state = callback.leg_state(call.call_sid, time.time())
    target = hold.holding_target(state)
    if target is None or not target.holds:
        raise CallError(f"call-back {callback.id}: its transfer no longer holds callers")
    if target.kind == "queue":
        transfer = Transfer(
            replace(target, address=queue_callback.priority_queue(target.address)), state.step
        )
    else:
        transfer = Transfer(target, state.step, priority=queue_callback.TASK_PRIORITY)
    prepared = handover.prepare(state, [transfer])
    document = twiml.render(prepared, _links())
    steps = [
        timeline.step(timeline.START, 0, flow=state.flow, version=state.version),
        timeline.step(timeline.QUEUE_CALLBACK, 0, node=state.node, result="joined"),
        timeline.step(
            timeline.TRANSFER,
            0,
            node=state.node,
            target=transfer.target.kind,
            queue=transfer.target.address,
            reason=state.transfer_reason,
        ),
    ]
    secret = current_app.config["IVR_SETTINGS"].secret_key
    summary = json.dumps(timeline.summary_of(state, secret), separators=(",", ":"))
    with store.step(call.call_sid, "queue_callback:join") as held:
        if held.answered is not None:
            return _answer(held.answered)
        if not held.locked:
            raise CallError(f"call-back leg {call.call_sid}: its lock is held elsewhere")
        # Open like any started call: its status callback records it, the sweeper closes
        # it if that never comes, and an erase sees it in progress.
        timeline_store.mark_open(call.call_sid, state.started_at)
        held.save(state, document, steps, summary)
    callback.status = queue_callback.JOINED
    callback.leg_sid = call.call_sid
    queue_callback.save(callback)
    queue_callback.release(callback)
    _audit("joined", callback, "joined", actor="caller", queue=transfer.target.address)
    log.info("call-back %s joined %s", callback.id, transfer.target.address)
    return _answer(document)


@bp.post("/status", endpoint="status")
def status() -> Response:
    """A call-back leg ended: one that joined the queue is a call like any other (its
    record written as /voice/status writes one); one that never joined is a failed try."""
    call = webhook.parse(request.form)
    if call.call_status not in ENDED:
        return _answer(twiml.document())
    callback = queue_callback.load(request.args.get("o", ""))
    joined = (
        callback is not None
        and callback.status == queue_callback.JOINED
        and callback.leg_sid == call.call_sid
    )
    if joined or store.load(call.call_sid) is not None:
        # The leg joined the queue (`key` gave it a call state): record its end (once).
        call_ended(call.call_sid, call.call_status, webhook.call_duration(request.form))
        return _answer(twiml.document())
    if callback is None or callback.status in queue_callback.FINAL:
        return _answer(twiml.document())
    if callback.leg_sid is not None and callback.leg_sid != call.call_sid:
        return _answer(twiml.document())  # an earlier try's late report
    if callback.status == queue_callback.WAITING:
        return _answer(twiml.document())  # already counted (a repeat of this report)
    _audit("failed", callback, f"{callback.attempts}", actor="twilio", status=call.call_status)
    _next_try(callback)
    return _answer(twiml.document())


@bp.errorhandler(Exception)
def end_politely(exc: Exception) -> Response | HTTPException:
    """Storage down or a bug: say sorry and hang up; never an HTTP 500."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc
    log.error(
        "queue call-back webhook %s failed: %s: %s",
        request.path,
        type(exc).__name__,
        exc,
        exc_info=not isinstance(exc, CallError),
    )
    if request.endpoint in ("queue_callback.status",):
        return _answer(twiml.document())
    if request.endpoint == "queue_callback.choose":
        step = webhook.step(request.args)
        return _answer(twiml.wait_document([], url_for("hold.wait", s=step)))
    try:
        return _render([_say(None, "callback_trouble"), Hangup()])
    except Exception:
        return _answer(twiml.document(Hangup()))
