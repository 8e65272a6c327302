"""The call loop: places a simulated call against the service the way Twilio would,
and records what happens.

It places the inbound call, hands each leg to `verbs.Leg` (which plays the TwiML
verb by verb and follows redirects and actions), and posts a status callback when
the call ends. The names the CLI and the tests import from here (keypads, events,
code recognition) are re-exported from their own modules.

Calls the service places ("call-backs", stored by the local outbox as channel
"call") are answered too. After every webhook response and status callback the
simulator reads the outbox; each new placed call rings at once, the way `callee`
says that phone behaves. An answered call requests its `url` (Direction
outbound-api, From = the support number) and plays like any leg; then its status
callback is posted with the final CallStatus. The simulator plays one leg at a
time, so a call-back runs to its end before the leg whose webhook placed it goes
on, and a call placed by a call-back leg rings after that leg has ended.

Queued callers and the agent line: given a queue board (`queues`, the local queues
the service reads when it has no Twilio account) and agents to `call(..., agents=)`,
a caller who reaches `<Enqueue>` holds in the simulated queue while each agent phones
the agent line in turn (a leg "agent": their caller ID, then their keys: PIN, 1 or
2 ...). When the service redirects that caller's member, the caller's leg moves to
the redirect's URL (see `verbs.Leg._hold`). `agent_call` places one agent-line call
on its own, for callers parked on the board by other means. Agent-line calls get no
status callback here (the agent line's number has its own, if any).

One-time codes are kept in the order they reach the person during the call: a
6-10 digit number in an outbox message written during the call for one of its legs
(its CallSid is the inbound call's or a call-back's), or digits read out one by one
in a `<Say>` on any leg. A script's `@code` is the latest of them, however it
arrived; a code left in the outbox by an earlier call never counts.

The simulator imports neither Flask nor the service: it speaks only HTTP forms
and TwiML through a Transport, and reads the outbox through a callable.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from ivr.phone import mask
from ivr.simulator.codes import spoken_codes, written_code
from ivr.simulator.keypads import AnsweringMachine, Keypad, KeysCodes, Scripted
from ivr.simulator.transport import Reply, Transport
from ivr.simulator.verbs import (
    AGENT_BEHAVIOURS,
    MAX_REQUESTS,
    CallOver,
    Event,
    Leg,
    QueueBoard,
    new_call_sid,
)

if TYPE_CHECKING:
    from ivr.delivery.outbox import OutboxMessage

__all__ = [
    "AGENT_BEHAVIOURS",
    "AGENT_LINE",
    "CALLEE_BEHAVIOURS",
    "MAX_CALLBACKS",
    "MAX_REQUESTS",
    "AgentLineCall",
    "CallBack",
    "CallResult",
    "Callee",
    "CalleeBehaviour",
    "Event",
    "Keypad",
    "Scripted",
    "Simulator",
    "every_callee",
    "new_call_sid",
    "spoken_codes",
    "written_code",
]

AFTER_CALL_POLL = 0.2  # seconds between looks at the outbox after the call
MAX_CALLBACKS = 20  # placed calls one simulator answers; more means the service is looping
VOICEMAIL_SECONDS = 120  # an answering machine records this long, then hangs up

ACCOUNT_SID = "AC" + "0" * 32
API_VERSION = "2010-04-01"

CALLEE_BEHAVIOURS = ("answer", "voicemail", "no-answer", "busy", "failed")
AGENT_LINE = "/voice/agent/incoming"
_NOT_CONNECTED = {"no-answer": "no answer", "busy": "busy", "failed": "failed"}


@dataclass(frozen=True)
class CalleeBehaviour:
    """What the phone a placed call rings does.

    `answer`: a person picks up and presses keys from `keypad` (none given: an empty
    script, so they hang up at the first prompt); `voicemail`: an answering machine
    picks up, hears everything and never presses a key; `no-answer`, `busy`,
    `failed`: the call never connects and its `url` is never requested.
    """

    kind: str = "answer"
    keypad: Keypad | None = None

    def __post_init__(self) -> None:
        if self.kind not in CALLEE_BEHAVIOURS:
            raise ValueError(f"callee must be one of {', '.join(CALLEE_BEHAVIOURS)}")


Callee = Callable[[str], CalleeBehaviour]  # the number rung -> what that phone does


@dataclass(frozen=True)
class AgentLineCall:
    """An agent phoning the agent line: caller ID (a number, or client:NAME) and the keys
    they press in turn (their PIN, then 1 to take a caller or 2 for the next ...).
    `path` is what Twilio requests first (the page's ring adds its one-time id)."""

    caller: str
    keypad: Keypad
    path: str = AGENT_LINE


def every_callee(kind: str = "answer", keypad: Keypad | None = None) -> Callee:
    """The same behaviour for every number rung; answered calls share one keypad (script)."""
    behaviour = CalleeBehaviour(kind, keypad)
    return lambda number: behaviour


@dataclass
class CallBack:
    """One call the service placed, as the simulator rang it."""

    to: str
    call_sid: str  # the id the Dialer returned; every request of the call carries it
    behaviour: str = ""  # what the phone did: one of CALLEE_BEHAVIOURS
    status: str = ""  # the final CallStatus: completed, no-answer, busy or failed
    placed_for: str | None = None  # the inbound call it was placed for, if any
    purpose: str = ""
    ended_by: str = ""  # answered calls: ivr, callee-hangup, error
    documents: list[tuple[str, str]] = field(default_factory=list)  # (url, TwiML)


@dataclass
class CallResult:
    call_sid: str
    events: list[Event] = field(default_factory=list)
    documents: list[tuple[str, str]] = field(default_factory=list)  # (url, TwiML), not call-backs'
    ended_by: str = ""  # ivr, caller, agent-connected, error
    codes: list[str] = field(default_factory=list)  # delivered during the call, oldest first
    callbacks: list[CallBack] = field(default_factory=list)

    def heard(self, who: str = "caller") -> list[str]:
        return [e.text for e in self.events if e.kind == "say" and e.who == who]

    @property
    def transcript(self) -> str:
        return "\n".join(self.heard())

    @property
    def transfers(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "transfer"]


def _status_form(base: dict[str, str], status: str, seconds: int) -> dict[str, str]:
    """A final status callback, as Twilio posts it."""
    return {
        **base,
        "CallStatus": status,
        "CallDuration": str(seconds),
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "0",
        "Timestamp": format_datetime(datetime.now(UTC)),
    }


def _digits(number: str) -> str:
    return re.sub(r"\D", "", number)


class Simulator:
    """Places simulated calls through the signed webhooks, and answers the calls they place.

    `outbox` returns what the service's local outbox holds (messages and placed
    calls); without it no call-back is answered and only heard codes are known.
    `callee` says what the phone of each placed call does (default: answer, with
    an empty script). A phone already on the simulated inbound call cannot ring:
    a call to the caller's own number while their call is in progress is busy,
    whatever `callee` says. That is the simulator's simplification of call
    waiting, which a real phone may offer.
    """

    def __init__(
        self,
        transport: Transport,
        public_url: str,
        *,
        agent: str = "accept",
        echo: Callable[[Event], None] | None = None,
        support_number: str = "+15005550006",
        outbox: Callable[[], Sequence[OutboxMessage]] | None = None,
        callee: Callee | None = None,
        after_call_wait: float = 0.0,
        queues: QueueBoard | None = None,
        agent_line_number: str = "+15005550009",
    ):
        if agent not in AGENT_BEHAVIOURS:
            raise ValueError(f"agent must be one of {', '.join(AGENT_BEHAVIOURS)}")
        self.transport = transport
        self.public_url = public_url.rstrip("/")
        self.agent = agent
        self.echo = echo
        self.support_number = support_number
        self.outbox = outbox
        self.callee: Callee = callee or every_callee("answer")
        # Seconds to watch the outbox after the call for calls the service places then
        # (a server runs its jobs in its own time, a little after the status callback).
        self.after_call_wait = after_call_wait
        self.codes: list[str] = []  # the codes delivered on the current (or last) call
        self._seen: set[str] = set()  # outbox entries already read
        self._sids: set[str] = set()  # the current call's legs: inbound and call-backs
        self._pending: list[tuple[OutboxMessage, frozenset[str]]] = []  # with the lines then busy
        self._live: set[str] = set()  # numbers now on a simulated inbound call
        self._answering = False
        self._rung = 0
        self._result: CallResult | None = None
        self.queues = queues  # the simulated queues (None: an <Enqueue> ends at once)
        self.agent_line_number = agent_line_number
        self._agents: list[AgentLineCall] = []  # to phone the agent line while a caller holds

    def latest_code(self) -> str | None:
        """The latest one-time code delivered on this call (sent or heard), or None."""
        self._collect()
        return self.codes[-1] if self.codes else None

    def call(
        self,
        caller: str,
        keypad: Keypad,
        *,
        call_sid: str | None = None,
        extra: dict[str, str] | None = None,
        agents: Sequence[AgentLineCall] = (),
    ) -> CallResult:
        """Place one inbound call from `caller` (any From value) and play it to the end.

        `agents` phone the agent line, in turn, once the caller holds in a queue (needs
        `queues`). A keypad's `@code` with no code given on this call raises
        CodeNotSent, which stops the call where it is.
        """
        if agents and self.queues is None:
            raise ValueError("agents phone the agent line only with simulated queues")
        sid = call_sid or new_call_sid()
        result = CallResult(sid)
        self._result = result
        self._agents = list(agents)
        self._begin(sid)
        base = {
            "CallSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": caller,
            "Caller": caller,
            "To": self.support_number,
            "Called": self.support_number,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": API_VERSION,
            **(extra or {}),
        }
        leg = Leg(_OnCall(self, result), base, self._bound(keypad), who="caller")
        try:
            self._live.add(caller)
            try:
                leg.run(self.public_url + "/voice/incoming", {"CallStatus": "ringing"})
                result.ended_by = "ivr"
            except CallOver as over:
                result.ended_by = over.ended_by
            finally:
                self._live.discard(caller)  # before the status callback: the line is free
            leg.note(f"call ended ({result.ended_by})")
            status = _status_form(base, "completed", leg.seconds)
            self._post(self.public_url + "/voice/status", status)
            self._await_calls_placed_after(time.monotonic() + self.after_call_wait)
        finally:
            self._result = None
            self._agents = []
        return result

    def agent_call(self, agent: AgentLineCall) -> CallResult:
        """One agent-line call on its own (callers already holding on the board)."""
        result = CallResult("")
        previous, self._result = self._result, result
        try:
            result.call_sid = self._agent_leg(result, agent)
        finally:
            self._result = previous
        return result

    def ring_placed(self) -> CallResult:
        """Ring the calls placed since the last call ended (a job that ran later: a
        call-back chosen on hold, placed when the caller's turn comes), as their phones
        behave; what each did is in the result's `callbacks`."""
        result = CallResult("")
        previous, self._result = self._result, result
        try:
            self._collect()
            self._answer_placed_calls()
        finally:
            self._result = previous
        return result

    def _phone_in(self, result: CallResult) -> None:
        """The agents waiting to call the agent line call now, one after another."""
        while self._agents:
            self._agent_leg(result, self._agents.pop(0))

    def _agent_leg(self, result: CallResult, agent: AgentLineCall) -> str:
        sid = new_call_sid()
        base = {
            "CallSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": agent.caller,
            "Caller": agent.caller,
            "To": self.agent_line_number,
            "Called": self.agent_line_number,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": API_VERSION,
        }
        leg = Leg(_OnCall(self, result), base, self._bound(agent.keypad), who="agent")
        try:
            leg.run(urljoin(self.public_url + "/", agent.path), {"CallStatus": "ringing"})
            ended = "agent-done"
        except CallOver as over:
            ended = over.ended_by
        leg.note(f"agent-line call ended ({ended})")
        return sid

    # ---- what the service sends and places

    def _post(self, url: str, form: dict[str, str]) -> Reply:
        """Post one webhook; then answer any call it placed, as Twilio dials at once."""
        reply = self.transport.post(url, form)
        self._collect()
        self._answer_placed_calls()
        return reply

    def _await_calls_placed_after(self, until: float) -> None:
        """Answer the first call placed before `until` (and what it places), if any."""
        while self.outbox is not None and time.monotonic() < until:
            self._collect()
            if self._pending:
                self._answer_placed_calls()
                return
            time.sleep(AFTER_CALL_POLL)

    def _begin(self, call_sid: str) -> None:
        """Start a call: what the outbox already holds (codes, placed calls) is not its."""
        self.codes = []
        self._sids = {call_sid}
        self._pending.clear()
        if self.outbox is not None:
            self._seen.update(message.id for message in self.outbox())

    def _collect(self) -> None:
        """Read the outbox entries not seen yet: codes sent on this call, and calls placed."""
        if self.outbox is None:
            return
        for message in self.outbox():
            if message.id in self._seen:
                continue
            self._seen.add(message.id)
            if message.channel == "call":
                self._pending.append((message, frozenset(self._live)))
            elif message.call_sid in self._sids:  # not another call's, even one going on now
                code = written_code(message.body)
                if code:
                    self._deliver(code)

    def _deliver(self, code: str) -> None:
        self.codes.append(code)
        if self._result is not None:
            self._result.codes.append(code)

    def _emit(self, result: CallResult, event: Event) -> None:
        result.events.append(event)
        if self.echo:
            self.echo(event)

    def _bound(self, keypad: Keypad) -> Keypad:
        """A keypad that keys `@code` and has no code source keys in this call's codes."""
        if isinstance(keypad, KeysCodes) and keypad.read_code is None:
            keypad.read_code = self.latest_code
        return keypad

    def _answer_placed_calls(self) -> None:
        """Ring each call placed and not handled yet; calls placed meanwhile ring after it."""
        result = self._result
        if self._answering or result is None:
            return
        self._answering = True
        try:
            while self._pending:
                placed, busy_lines = self._pending.pop(0)
                callback = CallBack(
                    placed.to, placed.id, placed_for=placed.call_sid, purpose=placed.purpose
                )
                result.callbacks.append(callback)
                self._sids.add(placed.id)  # what the service sends for that leg is this call's
                if self._rung >= MAX_CALLBACKS:  # left with no behaviour and no status
                    text = f"call-back to {mask(placed.to)} not rung: over {MAX_CALLBACKS} placed"
                    self._emit(result, Event("note", text, "callee"))
                    continue
                self._rung += 1
                self._ring_placed(result, placed, callback, busy_lines)
        finally:
            self._answering = False

    def _ring_placed(
        self,
        result: CallResult,
        placed: OutboxMessage,
        callback: CallBack,
        busy_lines: frozenset[str],
    ) -> None:
        """Ring one placed call as its phone behaves; post its status callback."""
        label = f"call-back to {mask(placed.to)}"

        def note(text: str) -> None:
            self._emit(result, Event("note", text, "callee"))

        if not placed.url:
            note(f"{label}: placed without a url, which Twilio refuses")
            callback.status = "failed"
            return
        number = _digits(placed.to)
        on_the_call = bool(number) and number in {_digits(line) for line in busy_lines}
        behaviour = CalleeBehaviour("busy") if on_the_call else self.callee(placed.to)
        callback.behaviour = behaviour.kind
        base = {
            "CallSid": placed.id,
            "AccountSid": ACCOUNT_SID,
            "From": self.support_number,
            "Caller": self.support_number,
            "To": placed.to,
            "Called": placed.to,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
        }
        seconds = 0
        if behaviour.kind in _NOT_CONNECTED:
            reason = " (that phone is on the call)" if on_the_call else ""
            note(f"{label}: {_NOT_CONNECTED[behaviour.kind]}{reason}")
            callback.status = behaviour.kind
        else:
            machine = behaviour.kind == "voicemail"
            note(f"{label}: answered by voicemail" if machine else f"{label}: answered")
            keypad = AnsweringMachine() if machine else behaviour.keypad or Scripted([])
            leg = Leg(
                _OnCall(self, result),
                base,
                self._bound(keypad),
                who="callee",
                documents=callback.documents,
                fallback=False,
                max_seconds=VOICEMAIL_SECONDS if machine else None,
            )
            try:
                leg.run(urljoin(self.public_url + "/", placed.url))
            except CallOver as over:
                callback.ended_by = over.ended_by
            note(f"{label} ended ({callback.ended_by})")
            callback.status, seconds = "completed", leg.seconds
        if placed.status_callback:
            self._post(
                urljoin(self.public_url + "/", placed.status_callback),
                _status_form(base, callback.status, seconds),
            )


class _OnCall:
    """One call as its legs see it (a verbs.Switchboard): the simulator and the result."""

    def __init__(self, sim: Simulator, result: CallResult):
        self.sim, self.result = sim, result
        self.public_url, self.agent = sim.public_url, sim.agent
        self.documents = result.documents

    def post(self, url: str, form: dict[str, str]) -> Reply:
        return self.sim._post(url, form)

    def emit(self, event: Event) -> None:
        self.sim._emit(self.result, event)

    def deliver(self, code: str) -> None:
        self.sim._deliver(code)

    def holding(self) -> QueueBoard | None:
        return self.sim.queues if self.sim._agents else None

    def agents_phone_in(self) -> None:
        self.sim._phone_in(self.result)
