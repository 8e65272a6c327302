"""The taken caller's side of the agent line: into the agent's conference, waiting there
until the agent's leg starts it, and back to their own flow when the agent never comes.

The caller joins with startConferenceOnEnter=false: they hear the wait prompt (the
conference's waitUrl, ours) until the agent's leg, which starts the conference and
ends it on leaving, is in. Each wait request checks whether the agent still may come:
when the agent's side is over (their `<Dial>` ended, or the take failed) or JOIN_WAIT
seconds passed since the take, the caller is moved (the Call resource) to `back`,
which re-runs their transfer: the same `<Enqueue>` (action, waitUrl) their flow
renders, at a new step, so a later agent can take them — never a bare `<Enqueue>`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import current_app, url_for
from twilio.twiml.voice_response import Dial, VoiceResponse

from ivr.calls import runtime, store
from ivr.config import Settings
from ivr.errors import StorageUnavailable
from ivr.flow import timeline
from ivr.flow.engine import Turn
from ivr.flow.instructions import Transfer
from ivr.flow.state import CallState
from ivr.queues import QueueUnavailable, claims, registry, taking
from ivr.storage import kv
from ivr.voice import handover, services, twiml

log = logging.getLogger(__name__)

JOIN_WAIT = 45  # seconds a taken caller waits for the agent's leg before going back
WAIT_PAUSE = 5  # seconds between two checks while the caller waits
WAIT_SAY_EVERY = 3  # the wait prompt again every this many checks


def _settings() -> Settings:
    found: Settings = current_app.config["IVR_SETTINGS"]
    return found


def _say_to(response: VoiceResponse, state: CallState | None, key: str) -> None:
    """A prompt in the caller's language (of the version they heard, when known)."""
    rt = runtime.get()
    catalog, language = rt.catalog, rt.flow.default_language
    if state is not None:
        loaded = rt.for_call(state)
        catalog, language = loaded.catalog, state.language
    response.say(catalog.text(language, key), voice=catalog.voice(language), language=language)


def join_document(join_id: str, found: dict[str, Any]) -> str:
    """Into the room, without starting it: the agent's leg starts (and ends) it."""
    response = VoiceResponse()
    dial = Dial()
    dial.conference(
        str(found["room"]),
        beep=False,
        start_conference_on_enter=False,
        end_conference_on_exit=False,
        wait_url=url_for("agent_line.wait", j=join_id, n=0),
        wait_method="POST",
    )
    response.append(dial)
    response.hangup()
    return str(response)


def wait_document(join_id: str, found: dict[str, Any], checks: int) -> str:
    """The conference's waitUrl: the wait prompt, a pause, and this again; or, when the
    agent will not come, the caller moved back to their flow."""
    client = kv.client()
    call_sid = str(found["call_sid"])
    closed = claims.room_closed(client, str(found["room"]))
    waited = time.time() - float(found.get("since") or 0)
    response = VoiceResponse()
    if closed is not None or waited > JOIN_WAIT:
        why = closed or "the agent did not join in time"
        back = _settings().public_url + url_for("agent_line.back", j=join_id)
        try:
            registry.mover().move(call_sid, back)
            log.warning(
                "held call %s: the agent never joined (%s); back to its flow", call_sid, why
            )
            response.pause(length=WAIT_PAUSE)
            return str(response)
        except QueueUnavailable as exc:  # try again at the next check
            log.error("held call %s: could not be moved back: %s", call_sid, exc)
    if checks % WAIT_SAY_EVERY == 0:
        _say_to(response, store.load(call_sid), "connecting")
    response.pause(length=WAIT_PAUSE)
    response.redirect(url_for("agent_line.wait", j=join_id, n=checks + 1), method="POST")
    return str(response)


def back_to_flow(call_sid: str, found: dict[str, Any] | None) -> str:
    """A taken caller who cannot be connected: their transfer again (the same `<Enqueue>`
    with action and waitUrl their flow renders), at a new step; the claim is freed."""
    client = kv.client()
    state = store.load(call_sid)
    if state is None:
        return _sorry_goodbye(None)
    taken_at = int(found["step"]) if found else None
    if taken_at is None and claims.redirected_to(client, call_sid) is not None:
        taken_at = state.step  # no join record, but the agent line did take them
    loaded = runtime.get().for_call(state)
    engine = services.engine(loaded)
    with store.step(call_sid, f"agentback:{taken_at}") as held:
        if held.answered is not None:
            return held.answered
        current = held.state
        if not held.locked or current is None:
            raise StorageUnavailable(f"call {call_sid} is busy or lost")
        if taken_at is None or current.step != taken_at or not taking.holding(current):
            return _render(current, engine.replay(current))  # whatever they wait on now
        again = current.copy()
        again.ended = False
        again.step += 1
        turn = engine.replay(again)
        at = max(0, round((time.time() - again.started_at) * 1000))
        steps = [timeline.step(timeline.TRANSFER_END, at, node=again.node, status="failed")]
        for item in turn.instructions:
            if isinstance(item, Transfer):
                named = item.target.address if item.target.kind in ("queue", "workflow") else None
                steps.append(
                    timeline.step(
                        timeline.TRANSFER,
                        at,
                        node=again.node,
                        target=item.target.kind,
                        queue=named,
                        reason=again.transfer_reason,
                    )
                )
        document = _render(again, turn)
        summary = json.dumps(
            timeline.summary_of(again, _settings().secret_key), separators=(",", ":")
        )
        held.save(again, document, steps, summary)
    claims.forget_redirect(client, call_sid)
    claims.drop_claim(client, call_sid)  # free for the next agent
    log.info("held call %s: back to its transfer at step %s", call_sid, again.step)
    return document


def _render(state: CallState, turn: Turn) -> str:
    """As ivr.voice.views renders a turn: the signed context on the transfer, the same
    action, waitUrl and input links."""
    links = twiml.Links(
        input=lambda step: url_for("voice.input", s=step),
        dial=lambda step: url_for("voice.dial_result", s=step),
        whisper=lambda step: url_for("voice.whisper", s=step),
        wait=lambda step: url_for("hold.wait", s=step),
        recorded=lambda step: url_for("voicemail.recorded", s=step),
        recording_status=lambda step: url_for("voicemail.recording_status", s=step),
    )
    return twiml.render(handover.prepare(state, turn.instructions), links)


def _sorry_goodbye(state: CallState | None) -> str:
    """A call with no state of ours: nothing to go back to."""
    response = VoiceResponse()
    _say_to(response, state, "agents_unavailable")
    response.hangup()
    return str(response)
