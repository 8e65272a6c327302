"""The agent line: staff phone in (`POST /voice/agent/incoming`) to take queued callers,
hearing each caller's whisper before being connected to exactly that caller.

Twilio's `<Queue url>` plays to the *queued caller*, so the whisper cannot ride on a
`<Dial><Queue>`. Instead the agent line reads the queue's members (ivr.queues),
claims the first caller still holding that no other agent is announcing
(ivr.voice.agent_line_offer, ivr.queues.claims), plays that caller's whisper, and on
1 redirects exactly that member (by CallSid) to a join URL that carries only an
opaque id (ivr.queues.taking); caller and agent meet in a conference the agent's leg
starts and ends (the caller waits for it, or goes back to their flow:
ivr.voice.agent_line_caller). The caller's timeline gets TAKEN and a
completed TRANSFER_END under the caller's lock, in the step their `<Enqueue>` action
would run, with the answer for it stored: the action Twilio posts at once when it
dequeues the member (QueueResult=redirected) gets a `<Redirect>` to the same join URL
and never runs the transfer node's unanswered exit.

Who may use it (ivr.voice.agent_line_access): a caller ID on IVR_AGENT_PHONES who keys
a PIN (the PIN of the one account whose line phone that is, or IVR_AGENT_PIN for a
shared line); a Twilio Client identity (From=client:NAME) that is an enabled agent's
or supervisor's configured line phone; or the call the agent page places to the
agent's own phone (`?r=` one-time id; answered, "press 1" comes before any caller is
named, so a voicemail box hears nobody's whisper). Anyone else hears a refusal and is
hung up on, logged masked. Every PIN attempt is counted before it is checked, per
caller ID and over the whole line (ivr.queues.claims). Every later step reloads the
account, and a session ends an hour after sign-in however busy.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request, url_for
from twilio.twiml.voice_response import Dial, VoiceResponse
from werkzeug.exceptions import HTTPException

from ivr.agent import transfers
from ivr.agent.users import AGENT_PAGE_ROLES
from ivr.calls import runtime
from ivr.config import Settings
from ivr.errors import CallError, StorageUnavailable
from ivr.phone import mask, to_e164
from ivr.queues import QueueUnavailable, claims, registry, taking
from ivr.storage import audit, db, kv
from ivr.storage.models import AgentUser
from ivr.voice import agent_line_access as access
from ivr.voice import agent_line_caller as caller_side
from ivr.voice import webhook
from ivr.voice.agent_line_offer import offer, save
from ivr.voice.agent_line_say import answer, hangup, refuse, say
from ivr.voice.signature import require_twilio_signature

log = logging.getLogger(__name__)

bp = Blueprint("agent_line", __name__, url_prefix="/voice/agent")
bp.before_request(require_twilio_signature)

PIN_TIMEOUT = 10  # seconds to key a PIN
READY_TIMEOUT = 10  # seconds to press 1 when the page's ring is answered
MAX_PIN_DIGITS = 12
SHARED = access.SHARED  # who a shared-PIN session is, for the timeline's page note and the audit

# ---------------------------------------------------------------- small helpers


def _settings() -> Settings:
    found: Settings = current_app.config["IVR_SETTINGS"]
    return found


def _public(endpoint: str, **args: Any) -> str:
    return _settings().public_url + url_for(endpoint, **args)


def _redis() -> redis.Redis:
    return kv.client()


def _queue_of(user: AgentUser | None) -> str | None:
    """The queue this agent takes from: their account's target when it is a queue, else
    the service's agent target's (IVR_AGENT_TARGET), when that is a queue."""
    if user is not None and user.target.startswith("queue:"):
        return user.target.removeprefix("queue:")
    target = runtime.get().agent_target
    return target.address if target.kind == "queue" else None


def _start(call_sid: str, user: AgentUser | None, how: str, phone: str | None) -> Response:
    """An authenticated agent: open their session and offer the first caller."""
    token, record = _open(call_sid, user, how, phone)
    if not token:
        return refuse("agent_line_unavailable")
    return offer(token, record)


def _open(
    call_sid: str, user: AgentUser | None, how: str, phone: str | None
) -> tuple[str, dict[str, Any]]:
    """A new session for this agent-line call; ("", {}) when there is no queue to take from."""
    queue = _queue_of(user)
    if queue is None:
        log.warning("agent line call %s: no queue to take from", call_sid)
        return "", {}
    who = user.username if user is not None else SHARED
    record: dict[str, Any] = {
        "agent_call": call_sid,
        "who": who,
        "queue": queue,
        "claim": "",
        "passed": [],
        **access.signed_in(_settings(), user, how, phone),
    }
    token = claims.open_session(_redis(), record, time.time())
    log.info("agent line call %s: %s signed in (%s), queue %s", call_sid, who, how, queue)
    return token, claims.load_session(_redis(), token, time.time()) or record


def _session(call_sid: str) -> tuple[str, dict[str, Any]] | None:
    """The session of this request's `t`, when it belongs to this very call, is not past
    its deadline, and its agent may still take calls (the account reloaded)."""
    token = request.args.get("t", "")
    record = claims.load_session(_redis(), token, time.time())
    if record is None or record.get("agent_call") != call_sid:
        return None
    why = access.still_allowed(_settings(), record)
    if why is not None:
        log.warning("agent line call %s: session of %s ended: %s", call_sid, record["who"], why)
        held = str(record.get("claim") or "")
        if held:
            claims.release(_redis(), held, token)
        _audit_refusal(call_sid, "session_revoked")
        return None
    return token, record


# ---------------------------------------------------------------- signing in


@bp.post("/incoming")
def incoming() -> Response:
    """An agent phones the agent line (or answers the page's ring)."""
    call = webhook.parse(request.form)
    settings = _settings()
    client = _redis()
    ring_id = request.args.get("r", "")
    if ring_id:  # the agent page rang this agent's own phone: signed in already
        user_id = claims.take_ring(client, ring_id)
        user = db.session().get(AgentUser, user_id) if user_id is not None else None
        if user is None or user.disabled or user.role not in AGENT_PAGE_ROLES:
            log.warning(
                "agent line call %s: a ring id that is used, expired or revoked", call.call_sid
            )
            return refuse()
        token, _record = _open(call.call_sid, user, access.PAGE, user.line_phone)
        if not token:
            return refuse("agent_line_unavailable")
        return _ready(token)
    if call.caller.startswith("client:"):
        user = access.client_account(call.caller.removeprefix("client:"))
        if user is None:
            log.warning(
                "agent line call %s refused: client identity is no staff line phone",
                call.call_sid,
            )
            _audit_refusal(call.call_sid, "client_unknown")
            return refuse()
        return _start(call.call_sid, user, access.CLIENT, call.caller)
    number = to_e164(call.caller, settings.default_region) if call.caller else None
    if number is None or number not in settings.line.agent_phones:
        log.warning(
            "agent line call %s refused: caller %s not on IVR_AGENT_PHONES",
            call.call_sid,
            mask(number) if number else "withheld",
        )
        _audit_refusal(call.call_sid, "not_allowed")
        return refuse()
    if claims.pin_locked(client, number):
        log.warning(
            "agent line call %s refused: %s or the line locked after wrong PINs",
            call.call_sid,
            mask(number),
        )
        return refuse("agent_line_locked")
    return _ask_pin(first=True)


def _ready(token: str) -> Response:
    """The page's ring answered: "press 1" before any caller is named (a voicemail box
    that answers hears nobody's whisper, and presses nothing)."""
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        action=url_for("agent_line.ready", t=token),
        method="POST",
        timeout=READY_TIMEOUT,
        num_digits=1,
        finish_on_key="",
    )
    say(gather, "agent_line_ready")
    response.hangup()
    return answer(response)


@bp.post("/ready")
def ready() -> Response:
    """1 after the page's ring: offer the first caller; anything else: goodbye."""
    call = webhook.parse(request.form)
    found = _session(call.call_sid)
    if found is None:
        return refuse()
    if call.digits != "1":
        return hangup()
    return offer(*found)


def _ask_pin(first: bool) -> Response:
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        action=url_for("agent_line.pin"),
        method="POST",
        timeout=PIN_TIMEOUT,
        finish_on_key="#",
        num_digits=MAX_PIN_DIGITS,
    )
    if not first:
        say(gather, "agent_line_pin_wrong")
    say(gather, "agent_line_pin")
    response.hangup()  # no PIN within the timeout: goodbye
    return answer(response)


@bp.post("/pin")
def pin() -> Response:
    """The PIN keyed: counted first (this caller ID, and the whole line), then checked
    against the one account whose line phone this is, and the shared PIN."""
    call = webhook.parse(request.form)
    settings = _settings()
    client = _redis()
    number = to_e164(call.caller, settings.default_region) if call.caller else None
    if number is None or number not in settings.line.agent_phones:
        return refuse()
    locked = claims.pin_attempt(client, number)
    if locked is not None:
        log.warning(
            "agent line call %s: PIN from %s refused, %s locked",
            call.call_sid,
            mask(number),
            "that caller ID" if locked == "caller" else "the line's PIN step",
        )
        return refuse("agent_line_locked")
    user, matched = access.pin_owner(settings, number, call.digits or "")
    if matched:
        claims.pin_right(client, number)
        return _start(call.call_sid, user, access.PIN if user else SHARED, number)
    caller_locked, line_locked = claims.pin_wrong(client, number)
    log.warning(
        "agent line call %s: wrong PIN from %s%s",
        call.call_sid,
        mask(number),
        "; locked" if caller_locked else "",
    )
    _audit_refusal(call.call_sid, "locked" if caller_locked else "wrong_pin")
    if line_locked:
        log.warning(
            "agent line: %d wrong PINs within %d s over all phones; the PIN step is locked"
            " for %d s",
            claims.LINE_FREE,
            claims.PIN_WINDOW,
            claims.LINE_LOCK,
        )
        _audit(
            "agent_line.locked",
            call.call_sid,
            {"wrong_pins": claims.LINE_FREE, "seconds": claims.LINE_LOCK},
        )
    if caller_locked or line_locked:
        return refuse("agent_line_locked")
    return _ask_pin(first=False)


def _audit_refusal(call_sid: str, reason: str) -> None:
    _audit("agent_line.refused", call_sid, {"reason": reason})


def _audit(action: str, call_sid: str, details: dict[str, Any]) -> None:
    try:
        audit.record(
            db.session(),
            action,
            actor="agent_line",
            details={"call_sid": call_sid, **details},
        )
    except StorageUnavailable as exc:  # the refusal itself must not fail for the audit
        log.error("agent line call %s: %s not audited: %s", call_sid, action, exc)


@bp.post("/next")
def next_caller() -> Response:
    """Look at the queue again (after an empty queue, or after a call)."""
    call = webhook.parse(request.form)
    found = _session(call.call_sid)
    if found is None:
        return refuse()
    token, record = found
    room = str(record.pop("room", "") or "")
    if room:  # the agent's <Dial> into a caller's room ended: that room is over
        claims.close_room(_redis(), room, "the agent left")
    if request.form.get("Digits", "1") not in ("1", ""):
        save(token, record)
        return hangup()
    return offer(token, record)


@bp.post("/choice")
def choice() -> Response:
    """1 takes the announced caller; 2 (or anything else) offers the next one."""
    call = webhook.parse(request.form)
    found = _session(call.call_sid)
    if found is None:
        return refuse()
    token, record = found
    client = _redis()
    held = str(record.get("claim") or "")
    if not held:
        return offer(token, record)
    if call.digits is None:  # nothing pressed: free the caller for others, and goodbye
        claims.release(client, held, token)
        record["claim"] = ""
        save(token, record)
        return hangup()
    if call.digits != "1":
        claims.release(client, held, token)
        record["passed"] = [*(record.get("passed") or []), held]
        record["claim"] = ""
        return offer(token, record)
    if not claims.holds(client, held, token):
        return _gone(token, record, "the claim lapsed")
    try:
        room = _take(token, record, held)
    except QueueUnavailable as exc:  # the caller is still queued, or it cannot be told
        log.error("agent line call %s: held call %s not taken: %s", call.call_sid, held, exc)
        claims.release(client, held, token)
        return refuse("agent_line_unavailable")
    if room is None:
        return _gone(token, record, "the caller left or was taken")
    record["room"] = room
    record["claim"] = ""
    save(token, record)
    response = VoiceResponse()
    say(response, "agent_line_connecting")
    dial = Dial(action=url_for("agent_line.next_caller", t=token), method="POST")
    # The agent's leaving ends the conference, so the caller is never left alone in it.
    dial.conference(
        room, beep=False, start_conference_on_enter=True, end_conference_on_exit=True, wait_url=""
    )
    response.append(dial)
    return answer(response)


def _gone(token: str, record: dict[str, Any], why: str) -> Response:
    """The announced caller is no longer there: say so, and offer the next one."""
    client = _redis()
    held = str(record.get("claim") or "")
    log.info("agent line call %s: held call %s gone (%s)", record["agent_call"], held, why)
    if held:
        claims.release(client, held, token)
        record["passed"] = [*(record.get("passed") or []), held]  # not offered again at once
    record["claim"] = ""
    save(token, record)
    response = VoiceResponse()
    say(response, "agent_line_gone")
    response.redirect(url_for("agent_line.next_caller", t=token), method="POST")
    return answer(response)


# ---------------------------------------------------------------- taking one caller


def _take(token: str, record: dict[str, Any], call_sid: str) -> str | None:
    """Exactly that caller into a new conference (ivr.queues.taking); its room, or None
    when they are no longer holding."""
    taken = taking.take(
        _redis(),
        registry.get(),
        call_sid=call_sid,
        queue=str(record.get("claim_queue") or record["queue"]),
        token=token,
        join_url=lambda join_id: _public("agent_line.join", j=join_id),
        secret=_settings().secret_key,
    )
    if taken is None:
        return None
    _after_take(record, call_sid)
    return taken.room


def _after_take(record: dict[str, Any], call_sid: str) -> None:
    """The agent page's entry for the call (the pop) and the audit: best effort, the
    caller is already on their way to the agent."""
    who = str(record["who"])
    log.info("agent line call %s took held call %s (%s)", record["agent_call"], call_sid, who)
    try:
        transfers.note(_redis(), call_sid, taken_by=who, taken_at=repr(time.time()))
        if record.get("user_id") is not None:
            claims.note_taken(_redis(), int(record["user_id"]), call_sid, time.time())
    except StorageUnavailable as exc:
        log.error("held call %s: the page's note failed: %s", call_sid, exc)
    try:
        audit.record(
            db.session(),
            "agent_line.taken",
            actor=who,
            call_sid=call_sid,
            details={"agent_call": record["agent_call"], "user_id": record.get("user_id")},
        )
    except StorageUnavailable as exc:
        log.error("held call %s: the take was not audited: %s", call_sid, exc)


@bp.post("/status")
def status() -> Response:
    """Status callback of the call the agent page places to an agent: acknowledged (the
    agent line keeps no state of its own calls beyond their session)."""
    call = webhook.parse(request.form)
    log.debug("agent line call %s: %s", call.call_sid, call.call_status)
    return answer(VoiceResponse())


@bp.post("/join")
def join() -> Response:
    """The taken caller's leg, redirected out of the queue: into the agent's conference
    (waiting there until the agent's leg starts it), or back to their flow."""
    call = webhook.parse(request.form)
    join_id = request.args.get("j", "")
    found = claims.load_join(_redis(), join_id)
    if found is None or found.get("call_sid") != call.call_sid:
        log.error("held call %s: join id unknown, expired or not this call's", call.call_sid)
        return _answer_text(caller_side.back_to_flow(call.call_sid, None))
    closed = claims.room_closed(_redis(), str(found["room"]))
    if closed in ("redirect_failed", "redirect_unknown"):  # the agent was told it failed
        log.warning("held call %s: its take failed (%s); back to its flow", call.call_sid, closed)
        return _answer_text(caller_side.back_to_flow(call.call_sid, found))
    return _answer_text(caller_side.join_document(join_id, found))


@bp.post("/wait")
def wait() -> Response:
    """The conference's waitUrl for a taken caller: wait for the agent, or go back."""
    call = webhook.parse(request.form)
    join_id = request.args.get("j", "")
    found = claims.load_join(_redis(), join_id)
    if found is None or found.get("call_sid") != call.call_sid:
        response = VoiceResponse()
        response.pause(length=caller_side.WAIT_PAUSE)
        return answer(response)
    raw = request.args.get("n", "0")
    checks = int(raw) if raw.isdigit() and len(raw) < 6 else 0
    return _answer_text(caller_side.wait_document(join_id, found, checks))


@bp.post("/back")
def back() -> Response:
    """A taken caller the agent never joined, moved here: their transfer again."""
    call = webhook.parse(request.form)
    found = claims.load_join(_redis(), request.args.get("j", ""))
    if found is not None and found.get("call_sid") != call.call_sid:
        found = None
    return _answer_text(caller_side.back_to_flow(call.call_sid, found))


def _answer_text(document: str) -> Response:
    return Response(document, mimetype="text/xml")


# ---------------------------------------------------------------- failures


@bp.errorhandler(Exception)
def answer_errors_with_twiml(exc: Exception) -> Response | HTTPException:
    """Any failure still answers valid TwiML: the agent hears it cannot be done now; a
    caller on their way to the agent goes back into the queue."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc
    call_sid = request.form.get("CallSid", "-")
    log.error(
        "agent line call %s: %s: %s",
        call_sid,
        type(exc).__name__,
        exc,
        exc_info=not isinstance(exc, (CallError, StorageUnavailable, QueueUnavailable)),
    )
    if request.endpoint == "agent_line.wait":  # a conference's wait plays no <Hangup>
        response = VoiceResponse()
        response.pause(length=caller_side.WAIT_PAUSE)
        return answer(response)
    if request.endpoint == "agent_line.join":
        try:  # their own flow again, if their state can be reached at all
            return _answer_text(caller_side.back_to_flow(call_sid, None))
        except Exception:
            log.exception("held call %s: could not go back to its flow", call_sid)
    if request.endpoint in ("agent_line.join", "agent_line.back"):
        return _caller_apology()
    return refuse("agent_line_unavailable")


def _caller_apology() -> Response:
    """A taken caller's step failed outright: sorry, and goodbye (their state could not
    be read or changed, so there is no flow of theirs to run)."""
    response = VoiceResponse()
    rt = runtime.get()
    language = rt.flow.default_language
    response.say(
        rt.catalog.text(language, "agents_unavailable"),
        voice=rt.catalog.voice(language),
        language=language,
    )
    response.hangup()
    return answer(response)
