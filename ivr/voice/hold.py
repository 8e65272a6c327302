"""While a caller holds in a queue: the `<Enqueue>` waitUrl, a hold that informs.

Twilio requests the waitUrl when the caller joins the queue and again each time the
document it got has finished, posting (besides the usual call fields) `QueueTime`
(seconds this caller has held), `QueuePosition` (1 is next), `CurrentQueueSize`,
`AvgQueueTime` (the average time the calls now in the queue have waited) and
`QueueSid`. The first request says the hold prompt, the caller's place and an
estimated wait; later ones say the place and wait again once `announce_every`
seconds have passed, with hold music in between.

No per-call storage: the state a hold needs travels in the URL. Every answer ends
with a `<Redirect>` back to the waitUrl carrying the step and `a=`, the QueueTime of
the latest announcement (Twilio allows `<Redirect>` in a waitUrl document and the
caller stays in the queue). A request announces when `QueueTime - a >= every`
(`announce_every`, default 60 s), so announcements come `every` seconds apart, or at
the end of the first music track that ends after that: the music is never cut, so
with a track of length L the gap is between every and every + L. Between
announcements the target's hold_music plays, else IVR_HOLD_MUSIC_URL (Twilio's
classical track by default); with that set to "none", silence sized to end when the
next announcement falls due. A request without `a` (the first, or Twilio asking the
plain waitUrl again after a document that had no redirect) announces at 0, every,
2·every… seconds, within ANNOUNCE_GRACE seconds after each.

The target is the transfer node's (or IVR_AGENT_TARGET for a node without one), and
IVR_AGENT_TARGET at the input limit's safe-default transfer (LIMIT_TRANSFER), which
holds like any other.

A TaskRouter workflow holds the call in a voice queue named after the workflow, so
the same fields arrive; but TaskRouter hands tasks out by priority and by which
workers match, not in that queue's order: for a workflow no place and no estimate
are said (they would be wrong), only the hold prompt.

Failures: only hold verbs may run inside a queue, never a `<Dial>`. Storage trouble
keeps the caller holding (a pause; Twilio asks again); anything else takes them out
(`<Leave/>`), and the Enqueue action (QueueResult=leave) moves the call on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from flask import Blueprint, Response, request, url_for
from werkzeug.exceptions import HTTPException

from ivr.calls import queue_callback, runtime, store
from ivr.errors import CallError, CallStateLost, StorageUnavailable
from ivr.flow.engine import LIMIT_TRANSFER
from ivr.flow.instructions import Gather, Instruction, Leave, Pause, Play, Say
from ivr.flow.model import MAX_QUEUE_WAIT, Catalog, TransferNode, TransferTarget
from ivr.flow.model.transfer import DEFAULT_ANNOUNCE_EVERY, HOLD_PLACEHOLDERS
from ivr.flow.state import CallState
from ivr.voice import twiml, webhook
from ivr.voice.signature import require_twilio_signature

log = logging.getLogger(__name__)

bp = Blueprint("hold", __name__, url_prefix="/voice/queue")
bp.before_request(require_twilio_signature)

# Silence while storage is down: Twilio asks again after it.
HOLD_PAUSE = 20
# A request this many seconds after an announcement fell due still announces (the time
# the last announcement took to say, plus Twilio's delay in asking again).
ANNOUNCE_GRACE = 15
# Speaking rate used to size the pause after an announcement (words per second).
WORDS_PER_SECOND = 2.5
# The prompts a hold announcement is made of (system prompts, in every language).
POSITION_NEXT = "queue_position_next"
POSITION = "queue_position"
WAIT_UNDER_A_MINUTE = "queue_wait_under_minute"
WAIT_ONE_MINUTE = "queue_wait_one_minute"
WAIT_MINUTES = "queue_wait_minutes"
HOLD_PROMPTS = (POSITION_NEXT, POSITION, WAIT_UNDER_A_MINUTE, WAIT_ONE_MINUTE, WAIT_MINUTES)
# The call-back offer (a target's callback_offer_prompt replaces it), and how long the
# offer's `<Gather>` waits for the key.
CALLBACK_OFFER = "queue_callback_offer"
OFFER_TIMEOUT = 5


@dataclass(frozen=True)
class QueueFacts:
    """What Twilio told the waitUrl; None where it sent nothing usable."""

    waited: int  # QueueTime: seconds this caller has held
    position: int | None  # QueuePosition: 1 is next
    size: int | None  # CurrentQueueSize
    average: int | None  # AvgQueueTime: seconds the calls now queued have waited, on average

    @classmethod
    def of(cls, form: Mapping[str, str]) -> QueueFacts:
        def positive(name: str) -> int | None:
            value = webhook.ascii_int(form.get(name), 0)
            return value if value > 0 else None

        return cls(
            waited=webhook.queue_time(form),
            position=positive("QueuePosition"),
            size=positive("CurrentQueueSize"),
            average=positive("AvgQueueTime"),
        )


def estimated_wait(facts: QueueFacts) -> int | None:
    """Seconds until the caller is likely taken, or None when nothing sound can be said.

    With the queue served in order, one caller every `s` seconds, the caller at place k
    of n has waited about (n - k)·s, so the average wait of the queue is (n - 1)·s/2:
    s = 2·average/(n - 1), and the caller at place p waits p·s more. A caller alone in
    the queue (n = 1) gives no rate to go by; nor does a queue with no average yet.
    """
    if facts.position is None or facts.average is None:
        return None
    queued = max(facts.size or 0, facts.position)
    if queued < 2:
        return None
    return round(facts.position * 2 * facts.average / (queued - 1))


def wait_minutes(seconds: int) -> int:
    """The estimate as the minutes to say: 0 for under a minute, whole minutes up to 10,
    then rounded to 5 (an estimate; "about 23 minutes" promises too much)."""
    if seconds < 60:
        return 0
    minutes = max(1, math.floor(seconds / 60 + 0.5))
    if minutes > 10:
        minutes = 5 * math.floor(minutes / 5 + 0.5)
    return minutes


@dataclass(frozen=True)
class Announcement:
    """The texts of one announcement, in the caller's language."""

    texts: tuple[str, ...]

    @property
    def seconds(self) -> int:
        """About how long saying it takes."""
        words = sum(len(text.split()) for text in self.texts)
        return math.ceil(words / WORDS_PER_SECOND)


def announcement(
    catalog: Catalog, language: str, target: TransferTarget, facts: QueueFacts, *, first: bool
) -> Announcement:
    """The hold prompt (the first time, or whenever there is nothing else to say) with the
    caller's place and estimated wait; a hold prompt using {position} or {minutes} says
    them itself, and one whose value is unknown gives way to `queue_hold`."""
    values: dict[str, str] = {}
    sentences: dict[str, str] = {}
    position = facts.position if target.kind == "queue" else None
    if position is not None:
        values["position"] = str(position)
        key = POSITION_NEXT if position == 1 else POSITION
        sentences["position"] = _text(catalog, language, key, values)
    estimate = estimated_wait(facts) if position is not None else None
    if estimate is not None:
        minutes = wait_minutes(estimate)
        values["minutes"] = str(minutes)
        key = {0: WAIT_UNDER_A_MINUTE, 1: WAIT_ONE_MINUTE}.get(minutes, WAIT_MINUTES)
        sentences["minutes"] = _text(catalog, language, key, values)
    sentences = {name: text for name, text in sentences.items() if text}
    hold_text = catalog.text(language, target.hold_prompt or "queue_hold")
    uses = {name for name in HOLD_PLACEHOLDERS if "{" + name + "}" in hold_text}
    if uses - set(values):  # it needs a fact Twilio did not give: the plain prompt instead
        hold_text, uses = catalog.text(language, "queue_hold"), set()
    texts: list[str] = []
    if first or uses or not sentences:
        texts.append(hold_text.format_map(values) if uses else hold_text)
    texts += [text for name, text in sentences.items() if name not in uses]
    return Announcement(tuple(texts))


def _text(catalog: Catalog, language: str, key: str, values: Mapping[str, str]) -> str:
    """A hold sentence, filled; empty (said as nothing) when the prompt files lack it."""
    text = catalog.languages[language].texts.get(key)
    if text is None:
        log.warning("hold prompt %r missing in %s; not said", key, language)
        return ""
    return text.format_map(values)


@dataclass(frozen=True)
class Hold:
    """One waitUrl answer: its verbs, and the QueueTime of the latest announcement to
    carry in the `<Redirect>` back to the waitUrl (None: `<Leave/>`, no redirect)."""

    instructions: list[Instruction]
    last: int | None


def announcement_due(waited: int, every: int, last: int | None) -> bool:
    """Whether this request announces. `last` is the QueueTime of the latest announcement,
    carried in our `<Redirect>` (`a=`): due once `every` seconds have passed since it.
    Without it (Twilio's own request of the waitUrl: the first, or after a document that
    had no redirect) announcements fall due at 0, every, 2·every… and a request within
    ANNOUNCE_GRACE seconds after a due time announces."""
    if last is None or last > waited:
        return waited % every < ANNOUNCE_GRACE
    return waited - last >= every


def hold_document(
    catalog: Catalog,
    language: str,
    target: TransferTarget,
    facts: QueueFacts,
    *,
    last: int | None = None,
    music: str | None = None,
    offer: bool = False,
) -> Hold:
    """What the caller hears until the `<Redirect>` asks again, or `<Leave/>` at the
    maximum wait. `music` plays when the target has no hold_music of its own (None:
    silence, sized to end when the next announcement falls due). With `offer`, each
    announcement ends with the call-back offer in a `<Gather>` (one key)."""
    limit = target.max_wait if target.max_wait is not None else MAX_QUEUE_WAIT
    if facts.waited >= limit:
        return Hold([Leave()], None)
    every = target.announce_every or DEFAULT_ANNOUNCE_EVERY
    said: Announcement | None = None
    if announcement_due(facts.waited, every, last):
        first = last is None and facts.waited < every
        said = announcement(catalog, language, target, facts, first=first)
        last = facts.waited
    elif last is None or last > facts.waited:
        last = facts.waited - facts.waited % every  # as if announced when it last fell due
    voice = catalog.voice(language)
    instructions: list[Instruction] = (
        [Say(text, language, voice) for text in said.texts] if said else []
    )
    offered = 0  # seconds the offer and its wait for a key take
    if said and offer:
        text = catalog.text(language, target.callback_offer_prompt or CALLBACK_OFFER)
        instructions.append(
            Gather(
                (Say(text, language, voice),),
                step=0,
                timeout=OFFER_TIMEOUT,
                num_digits=1,
                finish_on_key="",
                retry_on_silence=False,
            )
        )
        offered = Announcement((text,)).seconds + OFFER_TIMEOUT
    track = target.hold_music or music
    if track:
        instructions.append(Play(track))
        return Hold(instructions, last)
    # Silence until the next announcement falls due (and never past the maximum wait).
    spoken = (said.seconds if said else 0) + offered
    pause = min(every - (facts.waited - last) - spoken, limit - facts.waited)
    instructions.append(Pause(max(1, pause)))
    return Hold(instructions, last)


def holding_target(state: CallState) -> TransferTarget | None:
    """The target the call holds for: its transfer node's (or the configured one), or the
    configured one at the input limit's safe-default transfer; None when not transferring."""
    rt = runtime.get()
    if state.node == LIMIT_TRANSFER:
        return rt.agent_target
    node = rt.for_call(state).flow.nodes.get(state.node)
    if isinstance(node, TransferNode):
        if node.destination is not None:
            return node.destination
        if rt.agent_target.holds and node.offer_callback_after is not None:
            # The configured target, with the node's call-back offer.
            return replace(
                rt.agent_target,
                offer_callback_after=node.offer_callback_after,
                callback_offer_prompt=node.callback_offer_prompt,
            )
        return rt.agent_target
    return None


def offers_callback(state: CallState, target: TransferTarget, facts: QueueFacts) -> bool:
    """Whether this hold offers a call-back: the target offers one, the caller has held
    that long, is fully verified (digits and a code) with an account, and is not itself
    a call-back, nor chose one already."""
    after = target.offer_callback_after
    return (
        after is not None
        and facts.waited >= after
        and state.verification == "code"
        and state.account_id is not None
        and queue_callback.CALLED_BACK not in state.flags
        and queue_callback.REQUESTED not in state.flags
        # One waiting call-back per account: another call of theirs is not offered one.
        and not queue_callback.waiting(state.account_id)
    )


@bp.post("/wait", endpoint="wait")
def queue_wait() -> Response:
    """The `<Enqueue>` waitUrl: the hold announcements and music, until the maximum wait
    (then `<Leave/>`: the Enqueue action reports QueueResult=leave and the transfer's
    `unanswered` exit runs). Each answer ends with a `<Redirect>` back here carrying the
    step and the QueueTime of the latest announcement (`a=`)."""
    call = webhook.parse(request.form)
    facts = QueueFacts.of(request.form)
    state = store.load(call.call_sid)
    if state is None:
        raise CallStateLost(f"no state for call {call.call_sid}")
    step = webhook.step(request.args)
    target = holding_target(state)
    if target is None or not target.holds or step != state.step or state.ended:
        log.warning("call %s: hold request for a transfer it is not in; leaving", call.call_sid)
        return _answer(twiml.document(Leave()))
    loaded = runtime.get().for_call(state)
    raw_last = webhook.ascii_int(request.args.get("a"), -1)
    hold = hold_document(
        loaded.catalog,
        state.language,
        target,
        facts,
        last=raw_last if raw_last >= 0 else None,
        music=runtime.get().settings.line.hold_music,
        offer=offers_callback(state, target, facts),
    )
    # The offer's key goes to the call-back view with what it needs to time the call.
    chosen = url_for(
        "queue_callback.choose",
        s=step,
        p=facts.position or 0,
        w=facts.average or 0,
    )
    if hold.last is None:
        log.info("call %s leaves the queue after holding %s s", call.call_sid, facts.waited)
        return _answer(twiml.wait_document(hold.instructions, None, chosen))
    again = url_for("hold.wait", s=step, a=hold.last)
    return _answer(twiml.wait_document(hold.instructions, again, chosen))


def _answer(document: str) -> Response:
    return Response(document, mimetype="text/xml")


@bp.errorhandler(Exception)
def keep_holding_or_leave(exc: Exception) -> Response | HTTPException:
    """Only hold verbs run in a queue: storage trouble keeps the caller holding (Twilio
    asks again after the pause); anything else takes them out, and the Enqueue action
    (QueueResult=leave) moves the call on."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc  # 403 bad signature, 405 wrong method: not a call to rescue
    call_sid = request.form.get("CallSid", "-")
    waited = webhook.queue_time(request.form)
    if isinstance(exc, StorageUnavailable) and waited < MAX_QUEUE_WAIT:
        log.error("call %s holding: %s; keeps holding", call_sid, exc)
        return _answer(twiml.document(Pause(HOLD_PAUSE)))
    log.error(
        "call %s holding: %s: %s; leaving the queue",
        call_sid,
        type(exc).__name__,
        exc,
        exc_info=not isinstance(exc, CallError),
    )
    return _answer(twiml.document(Leave()))
