"""The voice webhooks: parse the form, run the engine, store the state, render TwiML.

Every answer is valid TwiML. When anything fails (Redis or the database down, a
lost call state, a bug) the caller hears an apology and goes to an agent,
unverified: verification fails closed, the caller is never left in silence.
A caller holding in a queue is the exception: the waitUrl (ivr.voice.hold, its own
blueprint) runs only hold verbs, so a failure there keeps them holding or takes them
out of the queue (`<Leave/>`), and the queue's action then moves the call on.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from flask import Blueprint, Response, current_app, g, request, url_for
from werkzeug.exceptions import HTTPException

from ivr.agent.whisper import whisper_says
from ivr.calls import runtime, store, timeline_store
from ivr.customers.directory import SqlDirectory
from ivr.errors import CallError, CallStateLost, RedisUnavailable, StorageUnavailable
from ivr.flow import timeline
from ivr.flow.engine import DialResult, Engine, Input, Turn
from ivr.flow.engine.core import Event
from ivr.flow.instructions import Gather, Hangup, Instruction, Record, Say, Transfer
from ivr.flow.model import READ_CODE_PREFIX, Catalog, TransferTarget
from ivr.jobs.calls import call_ended
from ivr.metrics import calls as call_metrics
from ivr.phone import mask
from ivr.queues import claims
from ivr.storage import db, kv
from ivr.versions.store import LoadedFlow
from ivr.voice import handover, services, twiml, webhook
from ivr.voice.signature import require_twilio_signature
from ivr.voicemail import pending as pending_voicemail

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix="/voice")
bp.before_request(require_twilio_signature)

AGENT_LEG_ENDPOINTS = frozenset({"voice.whisper", "voice.whisper_answer", "voice.status"})
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "canceled", "failed"})
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _with_task_attributes(
    instructions: Sequence[Instruction], attributes: Callable[[], dict[str, object]]
) -> list[Instruction]:
    """Workflow transfers get their Task attributes (built only for them), within
    TaskRouter's limit (the fallback's; turns go through handover.prepare)."""
    result = list(instructions)
    for index, item in enumerate(result):
        if isinstance(item, Transfer) and item.target.kind == "workflow":
            result[index] = replace(item, task_attributes=twiml.task_attributes(attributes()))
    return result


def _links() -> twiml.Links:
    return twiml.Links(
        input=lambda step: url_for("voice.input", s=step),
        dial=lambda step: url_for("voice.dial_result", s=step),
        whisper=lambda step: url_for("voice.whisper", s=step),
        wait=lambda step: url_for("hold.wait", s=step),
        recorded=lambda step: url_for("voicemail.recorded", s=step),
        recording_status=lambda step: url_for("voicemail.recording_status", s=step),
    )


def _engine(loaded: LoadedFlow) -> Engine:
    return services.engine(loaded)


def _answer(document: str) -> Response:
    return Response(document, mimetype="text/xml")


def _render(turn: Turn) -> str:
    return twiml.render(handover.prepare(turn.state, turn.instructions), _links())


def _act(held: store.Step, turn: Turn, loaded: LoadedFlow) -> Response:
    """Store the turn's state, its timeline steps and its answer (for a copy of this
    request) in one go; count what the steps say happened (metrics)."""
    document = _render(turn)
    # An answer that reads a code aloud is never stored: codes are never kept in plain.
    answer = None if _speaks_code(turn.instructions, loaded.catalog) else document
    secret = current_app.config["IVR_SETTINGS"].secret_key
    summary = json.dumps(timeline.summary_of(turn.state, secret), separators=(",", ":"))
    for item in turn.instructions:  # a voicemail starts: its caller outlives the call's state
        if isinstance(item, Record):
            pending_voicemail.remember(turn.state, item, secret)  # rides in the save below
    held.save(turn.state, answer, turn.steps, summary)
    call_metrics.observe_steps(turn.steps, loaded.flow.nodes)
    return _answer(document)


def _speaks_code(instructions: Sequence[Instruction], catalog: Catalog) -> bool:
    """Whether any Say of the turn is a read_code prompt (whatever code fills it)."""
    texts = [item.text for item in instructions if isinstance(item, Say)]
    for item in instructions:
        if isinstance(item, Gather):
            texts += [prompt.text for prompt in item.prompts if isinstance(prompt, Say)]
    if not texts:
        return False
    return any(pattern.fullmatch(text) for pattern in _code_patterns(catalog) for text in texts)


# Compiled read_code patterns per loaded catalog (a catalog never changes once loaded; a
# new version is a new catalog). Keyed by id, with the catalog kept to check identity.
_PATTERNS: dict[int, tuple[Catalog, list[re.Pattern[str]]]] = {}
_PATTERNS_KEPT = 64  # catalogs: versions in use at once are far fewer


def _code_patterns(catalog: Catalog) -> list[re.Pattern[str]]:
    cached = _PATTERNS.get(id(catalog))
    if cached is not None and cached[0] is catalog:
        return cached[1]
    patterns = [
        re.compile(".*?".join(re.escape(part) for part in PLACEHOLDER.split(template)), re.S)
        for prompts in catalog.languages.values()
        for key, template in prompts.texts.items()
        if key.startswith(READ_CODE_PREFIX)
    ]
    if len(_PATTERNS) >= _PATTERNS_KEPT:
        _PATTERNS.clear()
    _PATTERNS[id(catalog)] = (catalog, patterns)
    return patterns


@bp.post("/incoming")
def incoming() -> Response:
    """A call comes in: start the flow (or answer a retry as the first time, no second start)."""
    call = webhook.parse(request.form)
    with store.step(call.call_sid, "incoming") as held:
        if held.answered is not None:  # a copy of this request: the same answer
            return _answer(held.answered)
        rt = runtime.get()
        if held.state is not None:  # a retry after the answer's short life: the prompt again
            return _answer(_render(_engine(rt.for_call(held.state)).replay(held.state)))
        if not held.locked:
            raise StorageUnavailable(f"call {call.call_sid} is still starting elsewhere")
        live = rt.live()
        # Open (and dated for the timeline) before the engine runs: a start that fails
        # (the database down at identify) is still closed and shows the failure.
        started = time.time()
        timeline_store.mark_open(call.call_sid, started)
        g.ivr_call_started_at = started
        turn = _engine(live).start(call.call_sid, call.caller, call.stir_verstat)
        log.info(
            "call %s started on %s@%s from %s",
            call.call_sid,
            live.flow.name,
            live.flow.version,
            mask(turn.state.caller),
        )
        return _act(held, turn, live)


@bp.post("/input", endpoint="input")
def caller_input() -> Response:
    """Keys the caller pressed (or nothing, via the Redirect after a Gather)."""
    call = webhook.parse(request.form)
    step = webhook.step(request.args)
    return run_step(
        call.call_sid, f"input:{step}", step, lambda: Input(call.digits, step, call.speech)
    )


@bp.post("/dial")
def dial_result() -> Response:
    """How a transfer ended (DialCallStatus, or QueueResult for a queue)."""
    call = webhook.parse(request.form)
    step = webhook.step(request.args)
    if request.form.get("QueueResult") == "redirected":
        # An agent took this caller out of the queue (ivr.queues.taking): Twilio posts the
        # action for the redirect. Never the unanswered path: the same join, however late.
        joined = claims.redirected_to(kv.client(), call.call_sid)
        if joined is not None:
            return _answer(twiml.redirect_document(joined))
    status = webhook.dial_status(request.form)
    log.debug("call %s transfer ended: %s", call.call_sid, status)  # the timeline has it
    return run_step(call.call_sid, f"dial:{step}", step, lambda: DialResult(status, step))


def run_step(call_sid: str, name: str, step: int, event: Callable[[], Event]) -> Response:
    """One step of a running call, acted on once: a copy of the request that arrives
    while (or shortly after) the first runs gets the first's answer, and one for an
    older step the current prompt, with no side effect and nothing saved."""
    with store.step(call_sid, name) as held:
        if held.answered is not None:
            return _answer(held.answered)
        state = held.state
        if state is None:
            raise CallStateLost(f"no state for call {call_sid}")
        g.ivr_call_started_at = state.started_at  # for the timeline, should the step fail
        loaded = runtime.get().for_call(state)
        engine = _engine(loaded)
        if not held.locked or step != state.step:
            return _answer(_render(engine.replay(state)))
        return _act(held, engine.handle(state, event()), loaded)


@bp.post("/whisper")
def whisper() -> Response:
    """Runs on the agent's leg before bridging: who is calling and how they were verified."""
    call = webhook.parse(request.form)
    return _answer(whisper_document(call.parent_call_sid, url_for("voice.whisper_answer")))


def whisper_document(caller_call_sid: str | None, answer_url: str) -> str:
    """The whisper for the agent taking call `caller_call_sid`: who is calling and how they
    were verified, then "press 1" (the key goes to `answer_url`). Storage trouble or a lost
    state must not stop the agent taking the call: it then says "unverified"."""
    rt = runtime.get()
    catalog, language = rt.catalog, rt.flow.default_language
    state, account = None, None
    try:
        state = store.load(caller_call_sid) if caller_call_sid else None
        if state is not None and state.account_id is not None:
            found = SqlDirectory(db.session(), autocommit=True).accounts_by_ids([state.account_id])
            account = found[0] if found else None
    except StorageUnavailable as exc:
        log.error("whisper for call %s: %s; announcing unverified", caller_call_sid, exc)
        state = None
    if state is None:
        log.warning("whisper for call %s without caller state", caller_call_sid or "-")
    else:
        try:  # in the words of the version the caller heard
            loaded = rt.for_call(state)
            catalog, language = loaded.catalog, loaded.flow.default_language
        except CallError as exc:
            log.warning("whisper for call %s: %s; live prompts used", caller_call_sid, exc)
    says = whisper_says(state, account, catalog, language, time.time())
    # No key within the timeout means no agent: this leg hangs up, and the caller's
    # <Dial> action moves the flow on (a TaskRouter reservation times out instead).
    gather = Gather(
        tuple(says), step=0, timeout=6, num_digits=1, finish_on_key="", retry_on_silence=False
    )
    links = twiml.Links(input=lambda _step: answer_url, dial=lambda _s: "", whisper=None)
    return twiml.render([gather, Hangup()], links)


@bp.post("/whisper/answer")
def whisper_answer() -> Response:
    """The agent's key: 1 bridges the call (an empty document), anything else declines."""
    call = webhook.parse(request.form)
    if call.digits == "1":
        log.debug("agent leg %s accepted", call.call_sid)
        return _answer(twiml.document())
    return _answer(twiml.document(Hangup()))


@bp.post("/status")
def status() -> Response:
    """Call status callback: on a final status, audit the call once, queue its after-call
    work and forget its state."""
    call = webhook.parse(request.form)
    if call.call_status not in FINAL_STATUSES:
        return _answer(twiml.document())
    # The audit now (or queued when the database is down) and the after-call work as a
    # job: this webhook never waits on Twilio and loses nothing to an outage.
    first = call_ended(call.call_sid, call.call_status, webhook.call_duration(request.form))
    log.info("call %s ended: %s%s", call.call_sid, call.call_status, "" if first else " (repeat)")
    return _answer(twiml.document())


@bp.post("/fallback")
def fallback() -> Response:
    """Twilio's fallback URL: needs neither Redis nor the database."""
    log.error(
        "fallback for call %s: Twilio error %s on %s",
        request.form.get("CallSid", "-"),
        request.form.get("ErrorCode", "-"),
        request.form.get("ErrorUrl", "-"),
    )
    return _answer(_apology_and_transfer())


@bp.post("/fallback/dial")
def fallback_dial() -> Response:
    """After the fallback's transfer: goodbye if nobody answered."""
    rt = runtime.get()
    if webhook.dial_status(request.form) in ("completed", "answered"):
        return _answer(twiml.document(Hangup()))
    language = rt.flow.default_language
    catalog = rt.catalog
    return _answer(
        twiml.document(
            Say(catalog.text(language, "agents_unavailable"), language, catalog.voice(language)),
            Hangup(),
        )
    )


def _apology_and_transfer() -> str:
    """Sorry, and straight to an agent — unverified, with no state needed."""
    rt = runtime.get()
    language = rt.flow.default_language
    catalog = rt.catalog
    target: TransferTarget = rt.agent_target
    links = twiml.Links(
        input=lambda _s: "", dial=lambda _s: url_for("voice.fallback_dial"), whisper=None
    )
    # No state here (that may be what failed): the task says only which call it is.
    call_sid = request.form.get("CallSid", "")
    attributes: dict[str, object] = {
        "call_sid": call_sid if webhook.CALL_SID.fullmatch(call_sid) else "",
        "verification": "none",
        "transfer_reason": "error",
    }
    instructions: list[Instruction] = [
        Say(catalog.text(language, "error_apology"), language, catalog.voice(language)),
        Transfer(target, step=0),
    ]
    return twiml.render(_with_task_attributes(instructions, lambda: attributes), links)


def _note_apology(call_sid: str, exc: Exception) -> None:
    """Put the failure and the apology's transfer on the call's timeline, when the call's
    state was read before the failure (its start time dates the steps)."""
    started = g.get("ivr_call_started_at")
    if started is None or not webhook.CALL_SID.fullmatch(call_sid):
        return
    if isinstance(exc, RedisUnavailable):
        return  # the steps would only be sent into the same outage
    at = max(0, round((time.time() - started) * 1000))
    target = runtime.get().agent_target
    named = target.address if target.kind in ("queue", "workflow") else None
    kind = "storage" if isinstance(exc, StorageUnavailable) else "failure"
    steps = [
        timeline.step(timeline.ERROR, at, result=kind),
        timeline.step(timeline.TRANSFER, at, target=target.kind, queue=named, reason="error"),
    ]
    timeline_store.append_steps(call_sid, steps, current_app.config["IVR_SETTINGS"].call_state_ttl)


@bp.errorhandler(Exception)
def answer_errors_with_twiml(exc: Exception) -> Response | HTTPException:
    """Any failure mid-call still answers valid TwiML: apology, then an agent."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc  # 403 bad signature, 405 wrong method: not a call to rescue
    call_sid = request.form.get("CallSid", "-")
    if isinstance(exc, StorageUnavailable):
        log.error("call %s: %s; failing closed to an agent", call_sid, exc)
    else:
        # Expected run-time errors get one line; anything else gets its traceback.
        log.error(
            "call %s: %s: %s",
            call_sid,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, CallError),
        )
    if request.endpoint in AGENT_LEG_ENDPOINTS:
        # An agent leg (or a status callback) must never dial the agent target again;
        # an empty document bridges the agent (or just acknowledges).
        return _answer(twiml.document())
    try:
        _note_apology(call_sid, exc)
    except Exception:  # the timeline's note must never cost the caller the apology
        log.exception("call %s: the failure was not noted on the timeline", call_sid)
    try:
        return _answer(_apology_and_transfer())
    except Exception:  # the prompts are in memory; this is a last resort
        log.exception("call %s: could not build the apology", call_sid)
        return _answer('<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>')
