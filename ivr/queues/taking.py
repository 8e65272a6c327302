"""Taking one held caller out of the queue for an agent: exactly that caller, or nobody.

Under the caller's lock, in the request of the step their `<Enqueue>` action would run
(`dial:<step>`, as ivr.voice.views names it): check they are still holding at a
transfer, redirect that member (by CallSid) to their join URL, then run the step that
ends the transfer as completed, with TAKEN first on their timeline. The answer stored
for that request is a `<Redirect>` to the same join URL, so the action Twilio posts at
once for the redirect (QueueResult=redirected) waits for the lock, gets it, and never
runs the transfer node's `unanswered` exit. A caller who left meanwhile (their action
already ran, or Twilio says they are no longer a member) is not taken.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from twilio.twiml.voice_response import VoiceResponse

from ivr.calls import runtime, store
from ivr.flow import timeline
from ivr.flow.engine import DialResult
from ivr.flow.engine.core import LIMIT_TRANSFER
from ivr.flow.model import TransferNode
from ivr.flow.state import CallState
from ivr.metrics import calls as call_metrics
from ivr.queues import NotQueued, QueueSwitch, QueueUnavailable, claims
from ivr.voice import services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Taken:
    """A caller on their way to the agent: the conference room they both join."""

    call_sid: str
    room: str


def take(
    client: redis.Redis,
    switch: QueueSwitch,
    *,
    call_sid: str,
    queue: str,
    token: str,
    join_url: Callable[[str], str],
    secret: str,
    via: str = "agent_line",
) -> Taken | None:
    """Redirect exactly `call_sid` out of `queue` to `join_url(join id)` and mark their
    call transferred (TAKEN `via`); None when they are no longer holding. `token` is
    the agent-line session that claimed them: the claim is kept while they join."""
    state = store.load(call_sid)
    if state is None:
        return None  # not a call of ours, or long over
    with store.step(call_sid, f"dial:{state.step}") as held:
        current = held.state
        if not held.locked or held.answered is not None or current is None:
            return None  # the caller's action already ran (they left) or is running
        if current.step != state.step or current.ended or not holding(current):
            return None
        join_id, room = claims.new_join(
            client, call_sid, queue, token=token, step=current.step, now=time.time()
        )
        url = join_url(join_id)
        claims.note_redirect(client, call_sid, url)  # before: the action may come at once
        if not _redirected(client, switch, queue, call_sid, url, room):
            claims.forget_redirect(client, call_sid)
            return None
        claims.keep_taken(client, call_sid, token)
        loaded = runtime.get().for_call(current)
        turn = services.engine(loaded).handle(current, DialResult("completed", current.step))
        at = max(0, round((time.time() - current.started_at) * 1000))
        steps = [timeline.step(timeline.TAKEN, at, via=via), *turn.steps]
        summary = json.dumps(timeline.summary_of(turn.state, secret), separators=(",", ":"))
        to_join = VoiceResponse()  # should Twilio ever run the action's answer: the same join
        to_join.redirect(url, method="POST")
        held.save(turn.state, str(to_join), steps, summary)
        call_metrics.observe_steps(turn.steps, loaded.flow.nodes)
    return Taken(call_sid, room)


def _redirected(
    client: redis.Redis, switch: QueueSwitch, queue: str, call_sid: str, url: str, room: str
) -> bool:
    """Redirect the member; whether it left the queue for `url`. A redirect whose answer
    is lost (QueueUnavailable: a timeout, a 5xx) may still have happened: the queue is
    read again, and a caller no longer in it is on their way to the join. When even that
    cannot be told, the room is closed (a caller who does arrive goes back to their
    flow) and QueueUnavailable is raised: the agent is told the queue is unavailable."""
    try:
        switch.redirect(queue, call_sid, url)
        return True
    except NotQueued:
        log.info("held call %s was no longer in queue %s", call_sid, queue)
        return False
    except QueueUnavailable as exc:
        log.warning("held call %s: redirect out of %s unknown (%s)", call_sid, queue, exc)
        try:
            still = any(member.call_sid == call_sid for member in switch.members(queue))
        except QueueUnavailable:
            claims.close_room(client, room, "redirect_unknown")
            raise
        if still:
            claims.close_room(client, room, "redirect_failed")
            claims.forget_redirect(client, call_sid)
            raise
        return True


def holding(state: CallState) -> bool:
    """Whether the call waits on a transfer (a transfer node, or the input limit's)."""
    if state.node == LIMIT_TRANSFER:
        return True
    node = runtime.get().for_call(state).flow.nodes.get(state.node)
    return isinstance(node, TransferNode)
