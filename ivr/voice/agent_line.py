"""The agent line: staff phone in (`POST /voice/agent/incoming`) to take queued callers,
hearing each caller's whisper before being connected to exactly that caller.

Twilio's `<Queue url>` plays to the *queued caller*, so the whisper cannot ride on a
`<Dial><Queue>`. Instead the agent line reads the queue's members (ivr.queues),
claims the first caller no other agent is announcing (ivr.queues.claims), plays that
caller's whisper, and on 1 redirects exactly that member (by CallSid) to a join URL
that carries only an opaque id (ivr.queues.taking); caller and agent meet in a
conference that ends when the agent leaves. The caller's timeline gets TAKEN and a
completed TRANSFER_END under the caller's lock, in the step their `<Enqueue>` action
would run, with the answer for it stored: the action Twilio posts at once when it
dequeues the member (QueueResult=redirected) gets a `<Redirect>` to the same join URL
and never runs the transfer node's unanswered exit.

Who may use it: a caller ID on IVR_AGENT_PHONES who keys a PIN (a staff account's
own, or IVR_AGENT_PIN for a shared line); a Twilio Client identity (From=client:NAME)
of an enabled agent or supervisor; or the call the agent page places to the agent's
own phone (`?r=` one-time id). Anyone else hears a refusal and is hung up on, logged
masked; wrong PINs lock that caller ID for a while.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request, url_for
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse
from werkzeug.exceptions import HTTPException

from ivr.agent import transfers
from ivr.agent.users import AGENT_PAGE_ROLES, find_user, line_pin_matches, line_users
from ivr.agent.whisper import whisper_says
from ivr.calls import runtime, store
from ivr.config import Settings
from ivr.customers.directory import SqlDirectory
from ivr.errors import CallError, StorageUnavailable
from ivr.flow.instructions import Say
from ivr.flow.state import CallState
from ivr.phone import mask, to_e164
from ivr.queues import QueueSwitch, QueueUnavailable, claims, registry, taking
from ivr.storage import audit, db, kv
from ivr.storage.models import AgentUser
from ivr.voice import webhook
from ivr.voice.signature import require_twilio_signature

log = logging.getLogger(__name__)

bp = Blueprint("agent_line", __name__, url_prefix="/voice/agent")
bp.before_request(require_twilio_signature)

PIN_TIMEOUT = 10  # seconds to key a PIN
CHOICE_TIMEOUT = 8  # seconds to press 1 or 2 after the whisper
EMPTY_TIMEOUT = 15  # seconds to press 1 (check again) when nobody is waiting
MAX_PIN_DIGITS = 12
MAX_PIN_CHECKS = 50  # staff PIN hashes checked per attempt (hashing is deliberately slow)
SHARED = "shared"  # who a shared-PIN session is, for the timeline's page note and the audit

# Said when a prompt key is missing from an older published catalog.
_FALLBACK = {
    "agent_line_refused": "This line is for staff only. Goodbye.",
    "agent_line_pin": "Agent line. Enter your PIN, then press pound.",
    "agent_line_pin_wrong": "That PIN is not right.",
    "agent_line_locked": "Too many wrong PINs. Please try again later. Goodbye.",
    "agent_line_choose": "Press 1 to take this call, or 2 for the next caller.",
    "agent_line_empty": "No callers are waiting. Press 1 to check again, or hang up.",
    "agent_line_gone": "That caller is no longer waiting.",
    "agent_line_connecting": "Connecting you to the caller.",
    "agent_line_unavailable": "The queue cannot be reached right now. Goodbye.",
}


# ---------------------------------------------------------------- small helpers


def _settings() -> Settings:
    found: Settings = current_app.config["IVR_SETTINGS"]
    return found


def _answer(response: VoiceResponse) -> Response:
    return Response(str(response), mimetype="text/xml")


def _public(endpoint: str, **args: Any) -> str:
    return _settings().public_url + url_for(endpoint, **args)


def _say(response: VoiceResponse | Gather, key: str) -> None:
    rt = runtime.get()
    language = rt.flow.default_language
    texts = rt.catalog.languages[language].texts
    response.say(
        texts.get(key) or _FALLBACK[key], voice=rt.catalog.voice(language), language=language
    )


def _said(response: VoiceResponse | Gather, says: list[Say]) -> None:
    for say in says:
        response.say(say.text, voice=say.voice, language=say.language)


def _refuse(key: str = "agent_line_refused") -> Response:
    response = VoiceResponse()
    _say(response, key)
    response.hangup()
    return _answer(response)


def _redis() -> redis.Redis:
    return kv.client()


def _queue_of(user: AgentUser | None) -> str | None:
    """The queue this agent takes from: their account's target when it is a queue, else
    the service's agent target's (IVR_AGENT_TARGET), when that is a queue."""
    if user is not None and user.target.startswith("queue:"):
        return user.target.removeprefix("queue:")
    target = runtime.get().agent_target
    return target.address if target.kind == "queue" else None


def _start(call_sid: str, user: AgentUser | None, how: str) -> Response:
    """An authenticated agent: open their session and offer the first caller."""
    queue = _queue_of(user)
    if queue is None:
        log.warning("agent line call %s: no queue to take from", call_sid)
        return _refuse("agent_line_unavailable")
    who = user.username if user is not None else SHARED
    record: dict[str, Any] = {
        "agent_call": call_sid,
        "user_id": user.id if user is not None else None,
        "who": who,
        "queue": queue,
        "claim": "",
        "passed": [],
    }
    token = claims.open_session(_redis(), record)
    log.info("agent line call %s: %s signed in (%s), queue %s", call_sid, who, how, queue)
    return _offer(token, record)


def _session(call_sid: str) -> tuple[str, dict[str, Any]] | None:
    """The session of this request's `t`, when it belongs to this very call."""
    token = request.args.get("t", "")
    record = claims.load_session(_redis(), token)
    if record is None or record.get("agent_call") != call_sid:
        return None
    return token, record


# ---------------------------------------------------------------- signing in


@bp.post("/incoming")
def incoming() -> Response:
    """An agent phones the agent line (or answers the page's ring)."""
    call = webhook.parse(request.form)
    settings = _settings()
    client = _redis()
    session = db.session()
    ring_id = request.args.get("r", "")
    if ring_id:  # the agent page rang this agent's own phone: signed in already
        user_id = claims.take_ring(client, ring_id)
        user = session.get(AgentUser, user_id) if user_id is not None else None
        if user is None or user.disabled or user.role not in AGENT_PAGE_ROLES:
            log.warning(
                "agent line call %s: a ring id that is used, expired or revoked", call.call_sid
            )
            return _refuse()
        return _start(call.call_sid, user, "page")
    if call.caller.startswith("client:"):
        identity = call.caller.removeprefix("client:")
        user = find_user(session, identity)
        if user is None or user.disabled or user.role not in AGENT_PAGE_ROLES:
            log.warning(
                "agent line call %s refused: client identity not a staff account", call.call_sid
            )
            _audit_refusal(call.call_sid, "client_unknown")
            return _refuse()
        return _start(call.call_sid, user, "client")
    number = to_e164(call.caller, settings.default_region) if call.caller else None
    if number is None or number not in settings.line.agent_phones:
        log.warning(
            "agent line call %s refused: caller %s not on IVR_AGENT_PHONES",
            call.call_sid,
            mask(number) if number else "withheld",
        )
        _audit_refusal(call.call_sid, "not_allowed")
        return _refuse()
    if claims.pin_locked(client, number):
        log.warning(
            "agent line call %s refused: %s locked after wrong PINs", call.call_sid, mask(number)
        )
        return _refuse("agent_line_locked")
    return _ask_pin(first=True)


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
        _say(gather, "agent_line_pin_wrong")
    _say(gather, "agent_line_pin")
    response.hangup()  # no PIN within the timeout: goodbye
    return _answer(response)


@bp.post("/pin")
def pin() -> Response:
    """The PIN keyed: a staff account's own (that phone's account first), or the shared one."""
    call = webhook.parse(request.form)
    settings = _settings()
    client = _redis()
    number = to_e164(call.caller, settings.default_region) if call.caller else None
    if number is None or number not in settings.line.agent_phones:
        return _refuse()
    if claims.pin_locked(client, number):
        return _refuse("agent_line_locked")
    digits = call.digits or ""
    user, matched = _pin_owner(number, digits)
    if not matched:
        locked = claims.pin_failed(client, number)
        log.warning(
            "agent line call %s: wrong PIN from %s%s",
            call.call_sid,
            mask(number),
            "; locked" if locked else "",
        )
        _audit_refusal(call.call_sid, "locked" if locked else "wrong_pin")
        return _refuse("agent_line_locked") if locked else _ask_pin(first=False)
    claims.pin_passed(client, number)
    return _start(call.call_sid, user, "pin")


def _pin_owner(number: str, digits: str) -> tuple[AgentUser | None, bool]:
    """(the account whose PIN this is, or None for the shared PIN; whether it matched)."""
    if not digits:
        return None, False
    accounts = [user for user in line_users(db.session()) if user.line_pin_hash]
    # The account whose phone this is first: usually the only hash checked.
    accounts.sort(key=lambda user: user.line_phone != number)
    for user in accounts[:MAX_PIN_CHECKS]:
        if line_pin_matches(user, digits):
            return user, True
    shared = _settings().line.agent_pin
    if shared and hmac.compare_digest(shared.encode(), digits.encode()):
        return None, True
    return None, False


def _audit_refusal(call_sid: str, reason: str) -> None:
    try:
        audit.record(
            db.session(),
            "agent_line.refused",
            actor="agent_line",
            details={"call_sid": call_sid, "reason": reason},
        )
    except StorageUnavailable as exc:  # the refusal itself must not fail for the audit
        log.error("agent line call %s: refusal not audited: %s", call_sid, exc)


# ---------------------------------------------------------------- offering callers


def _offer(token: str, record: dict[str, Any]) -> Response:
    """Claim the first held caller nobody else is announcing and play their whisper."""
    client = _redis()
    queue = str(record["queue"])
    switch: QueueSwitch = registry.get()
    try:
        members = switch.members(queue)
    except QueueUnavailable as exc:
        log.error("agent line: queue %s unreadable: %s", queue, exc)
        return _refuse("agent_line_unavailable")
    passed = set(record.get("passed") or [])
    waiting = [member for member in members if member.call_sid not in passed]
    if not waiting and passed:  # every caller was passed over once: start again from the front
        record["passed"] = []
    chosen = next(
        (member for member in waiting if claims.claim(client, member.call_sid, token)), None
    )
    if chosen is None:
        record["claim"] = ""
        claims.save_session(client, token, record)
        return _empty(token)
    record["claim"] = chosen.call_sid
    claims.save_session(client, token, record)
    state = _state_or_none(chosen.call_sid)
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        action=url_for("agent_line.choice", t=token),
        method="POST",
        timeout=CHOICE_TIMEOUT,
        num_digits=1,
        finish_on_key="",
    )
    says = _whisper(state)
    _said(gather, says[:-1])  # who is calling; "press 1 to accept" is ours instead
    _say(gather, "agent_line_choose")
    response.redirect(url_for("agent_line.choice", t=token), method="POST")
    log.info("agent line call %s offered held call %s", record["agent_call"], chosen.call_sid)
    return _answer(response)


def _empty(token: str) -> Response:
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        action=url_for("agent_line.next_caller", t=token),
        method="POST",
        timeout=EMPTY_TIMEOUT,
        num_digits=1,
        finish_on_key="",
    )
    _say(gather, "agent_line_empty")
    response.hangup()
    return _answer(response)


def _state_or_none(call_sid: str) -> CallState | None:
    try:
        return store.load(call_sid)
    except StorageUnavailable as exc:
        log.error("agent line: state of %s unreadable (%s); announcing unverified", call_sid, exc)
        return None


def _whisper(state: CallState | None) -> list[Say]:
    """The caller's whisper, in the words of the version they heard (as /voice/whisper)."""
    rt = runtime.get()
    catalog, language = rt.catalog, rt.flow.default_language
    account = None
    if state is not None:
        try:
            loaded = rt.for_call(state)
            catalog, language = loaded.catalog, loaded.flow.default_language
        except CallError as exc:
            log.warning("whisper for held call %s: %s; live prompts used", state.call_sid, exc)
        if state.account_id is not None:
            try:
                found = SqlDirectory(db.session(), autocommit=True).accounts_by_ids(
                    [state.account_id]
                )
                account = found[0] if found else None
            except StorageUnavailable as exc:
                log.error(
                    "whisper for held call %s: %s; announcing unverified", state.call_sid, exc
                )
                state = None
    return whisper_says(state, account, catalog, language, time.time())


@bp.post("/next")
def next_caller() -> Response:
    """Look at the queue again (after an empty queue, or after a call)."""
    call = webhook.parse(request.form)
    found = _session(call.call_sid)
    if found is None:
        return _refuse()
    token, record = found
    if request.form.get("Digits", "1") not in ("1", ""):
        return _hangup()
    return _offer(token, record)


def _hangup() -> Response:
    response = VoiceResponse()
    response.hangup()
    return _answer(response)


@bp.post("/choice")
def choice() -> Response:
    """1 takes the announced caller; 2 (or anything else) offers the next one."""
    call = webhook.parse(request.form)
    found = _session(call.call_sid)
    if found is None:
        return _refuse()
    token, record = found
    client = _redis()
    held = str(record.get("claim") or "")
    if not held:
        return _offer(token, record)
    if call.digits is None:  # nothing pressed: free the caller for others, and goodbye
        claims.release(client, held, token)
        record["claim"] = ""
        claims.save_session(client, token, record)
        return _hangup()
    if call.digits != "1":
        claims.release(client, held, token)
        record["passed"] = [*(record.get("passed") or []), held]
        record["claim"] = ""
        return _offer(token, record)
    if not claims.holds(client, held, token):
        return _gone(token, record, "the claim lapsed")
    room = _take(token, record, held)
    if room is None:
        return _gone(token, record, "the caller left or was taken")
    response = VoiceResponse()
    _say(response, "agent_line_connecting")
    dial = Dial(action=url_for("agent_line.next_caller", t=token), method="POST")
    # The agent's leaving ends the conference, so the caller is never left alone in it.
    dial.conference(
        room, beep=False, start_conference_on_enter=True, end_conference_on_exit=True, wait_url=""
    )
    response.append(dial)
    return _answer(response)


def _gone(token: str, record: dict[str, Any], why: str) -> Response:
    """The announced caller is no longer there: say so, and offer the next one."""
    client = _redis()
    held = str(record.get("claim") or "")
    log.info("agent line call %s: held call %s gone (%s)", record["agent_call"], held, why)
    if held:
        claims.release(client, held, token)
    record["claim"] = ""
    claims.save_session(client, token, record)
    response = VoiceResponse()
    _say(response, "agent_line_gone")
    response.redirect(url_for("agent_line.next_caller", t=token), method="POST")
    return _answer(response)


# ---------------------------------------------------------------- taking one caller


def _take(token: str, record: dict[str, Any], call_sid: str) -> str | None:
    """Exactly that caller into a new conference (ivr.queues.taking); its room, or None
    when they are no longer holding."""
    taken = taking.take(
        _redis(),
        registry.get(),
        call_sid=call_sid,
        queue=str(record["queue"]),
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
    return _answer(VoiceResponse())


@bp.post("/join")
def join() -> Response:
    """The taken caller's leg, redirected out of the queue: into the agent's conference."""
    call = webhook.parse(request.form)
    found = claims.load_join(_redis(), request.args.get("j", ""))
    if found is None or found.get("call_sid") != call.call_sid:
        log.error("held call %s: join id unknown, expired or not this call's", call.call_sid)
        return _back_to_queue(found)
    response = VoiceResponse()
    dial = Dial()
    dial.conference(
        str(found["room"]),
        beep=False,
        start_conference_on_enter=True,
        end_conference_on_exit=False,
        wait_url="",
    )
    response.append(dial)
    response.hangup()
    return _answer(response)


def _back_to_queue(found: dict[str, Any] | None) -> Response:
    """A caller we took out of the queue and cannot connect: sorry, and back in line."""
    response = VoiceResponse()
    _say_caller(response, "error_apology")
    queue = str(found["queue"]) if found else _queue_of(None)
    if queue:
        response.enqueue(queue)
    response.hangup()
    return _answer(response)


def _say_caller(response: VoiceResponse, key: str) -> None:
    rt = runtime.get()
    language = rt.flow.default_language
    response.say(
        rt.catalog.text(language, key), voice=rt.catalog.voice(language), language=language
    )


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
    if request.endpoint == "agent_line.join":
        return _back_to_queue(None)
    return _refuse("agent_line_unavailable")
