"""Plays a call against the service the way Twilio would, and records what happens.

It follows Twilio's documented behaviour (../shared/docs/twilio.md): `<Gather>`
defaults (timeout 5 s, finishOnKey #, action = the current URL) and its fall-through
to the next verb on no input; `<Redirect>`; `<Dial>` with a whisper leg for each
`<Number|Sip|Client url>` and its action with DialCallStatus; `<Enqueue>` with
QueueResult; `<Pause>`, `<Play>`, `<Hangup>`, `<Reject>`; the fallback URL on an
HTTP error; and a status callback when the call ends.

Calls the service places ("call-backs", stored by the local outbox as channel
"call") are answered too. After every webhook response and status callback the
simulator reads the outbox; each new placed call rings at once, the way `callee`
says that phone behaves. An answered call requests its `url` (Direction
outbound-api, From = the support number) and plays like any leg; then its status
callback is posted with the final CallStatus. The simulator plays one leg at a
time, so a call-back runs to its end before the leg whose webhook placed it goes
on, and a call placed by a call-back leg rings after that leg has ended.

One-time codes are kept in the order they reach the person: a 6-10 digit number
in an outbox message (text or email), or digits read out one by one in a `<Say>`
on any leg. A script's `@code` is the latest of them, however it arrived.

The simulator imports neither Flask nor the service: it speaks only HTTP forms
and TwiML through a Transport, and reads the outbox through a callable.
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin

from ivr.phone import mask
from ivr.simulator.transport import Reply, Transport

if TYPE_CHECKING:
    from ivr.delivery.outbox import OutboxMessage

MAX_REQUESTS = 300  # a flow that needs more webhooks than this is looping
MAX_CALLBACKS = 20  # placed calls one simulator answers; more means the service is looping
VOICEMAIL_SECONDS = 120  # an answering machine records this long, then hangs up

ACCOUNT_SID = "AC" + "0" * 32
API_VERSION = "2010-04-01"

AGENT_BEHAVIOURS = ("accept", "silent", "no-answer", "busy", "failed")
CALLEE_BEHAVIOURS = ("answer", "voicemail", "no-answer", "busy", "failed")
_NOT_CONNECTED = {"no-answer": "no answer", "busy": "busy", "failed": "failed"}

# How a leg ends, by whose leg it is: (its documents ran out, <Hangup/>, hung up at a prompt).
_ENDINGS = {
    "caller": ("ivr", "ivr", "caller-hangup"),
    "agent": ("agent-done", "agent-declined", "agent-declined"),
    "callee": ("ivr", "ivr", "callee-hangup"),
}


@dataclass(frozen=True)
class Event:
    """One thing that happened: `kind` is say, play, pause, keys, transfer, agent or note."""

    kind: str
    text: str
    who: str = "caller"  # whose leg: caller, agent, or callee (a call the service placed)


class Keypad(Protocol):
    def keys(self, listening: str) -> str | None:
        """Keys for one `<Gather>`: "" for silence, None to hang up."""


CODE_ENTRY = "@code"  # a scripted entry standing for "the code I was just given"


class Scripted:
    """Answers gathers from a list; hangs up when the list runs out.

    An entry `@code` (optionally `@code#`) is replaced by what `read_code` returns.
    Without `read_code`, the simulator that plays the keypad supplies its own
    `latest_code`: the latest one-time code delivered by any means.
    """

    def __init__(self, entries: list[str], read_code: Callable[[], str | None] | None = None):
        self.entries = list(entries)
        self.read_code = read_code

    def keys(self, listening: str) -> str | None:
        if not self.entries:
            return None
        entry = self.entries.pop(0)
        if entry.startswith(CODE_ENTRY):
            code = self.read_code() if self.read_code else None
            return (code or "") + entry[len(CODE_ENTRY) :]
        return entry


class _AnsweringMachine:
    """Listens to every prompt and never presses a key."""

    def keys(self, listening: str) -> str | None:
        return ""


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


def every_callee(kind: str = "answer", keypad: Keypad | None = None) -> Callee:
    """The same behaviour for every number rung; answered calls share one keypad (script)."""
    behaviour = CalleeBehaviour(kind, keypad)
    return lambda number: behaviour


# A code read out digit by digit, a comma between each digit ("4, 7, 1, 0, 9, 2"), as the
# service speaks codes. Phone numbers read back are grouped ("4 1 5, 5 5 5, 0 1 9 9")
# and so never mistaken for a code.
_SPOKEN_CODE = re.compile(r"(?<![\d,] )(?<!\d)\d(?:, \d){5,9}(?!\d)(?!, \d)")
_WRITTEN_CODE = re.compile(r"\b(\d{6,10})\b")


def spoken_codes(text: str) -> list[str]:
    """Codes read out digit by digit in `text`: 6-10 single digits, each after a comma."""
    found: list[str] = []
    for run in _SPOKEN_CODE.finditer(text):
        code = "".join(ch for ch in run.group() if ch.isdigit())
        if code not in found:
            found.append(code)
    return found


def written_code(text: str) -> str | None:
    """The first 6-10 digit number in a message body, or None."""
    found = _WRITTEN_CODE.search(text)
    return found.group(1) if found else None


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


class _CallOver(Exception):
    def __init__(self, ended_by: str):
        self.ended_by = ended_by


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


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
        self.codes: list[str] = []  # every code delivered, oldest first
        self._seen: set[str] = set()  # outbox entries already read
        self._read_once = False
        self._pending: list[tuple[OutboxMessage, frozenset[str]]] = []  # with the lines then busy
        self._live: set[str] = set()  # numbers now on a simulated inbound call
        self._answering = False
        self._rung = 0
        self._result: CallResult | None = None

    def latest_code(self) -> str | None:
        """The latest one-time code delivered by any means (sent or heard), or None."""
        self._collect()
        return self.codes[-1] if self.codes else None

    def call(
        self,
        caller: str,
        keypad: Keypad,
        *,
        call_sid: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> CallResult:
        """Place one inbound call from `caller` (any From value) and play it to the end."""
        sid = call_sid or new_call_sid()
        result = CallResult(sid)
        self._result = result
        self._collect()  # codes sent earlier still count; calls placed earlier are not ours
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
        leg = _Leg(self, result, base, self._bound(keypad), who="caller")
        try:
            self._live.add(caller)
            try:
                leg.run(self.public_url + "/voice/incoming", {"CallStatus": "ringing"})
                result.ended_by = "ivr"
            except _CallOver as over:
                result.ended_by = over.ended_by
            finally:
                self._live.discard(caller)  # before the status callback: the line is free
            leg.note(f"call ended ({result.ended_by})")
            status = _status_form(base, "completed", leg.seconds)
            self._post(self.public_url + "/voice/status", status)
        finally:
            self._result = None
        return result

    # ---- what the service sends and places

    def _post(self, url: str, form: dict[str, str]) -> Reply:
        """Post one webhook; then answer any call it placed, as Twilio dials at once."""
        reply = self.transport.post(url, form)
        self._collect()
        self._answer_placed_calls()
        return reply

    def _collect(self) -> None:
        """Read the outbox entries not seen yet: codes sent, and calls placed."""
        if self.outbox is None:
            return
        first_read, self._read_once = not self._read_once, True
        for message in self.outbox():
            if message.id in self._seen:
                continue
            self._seen.add(message.id)
            if message.channel != "call":
                code = written_code(message.body)
                if code:
                    self._deliver(code)
            elif not first_read:  # calls placed before this simulator started are not ours
                self._pending.append((message, frozenset(self._live)))

    def _deliver(self, code: str) -> None:
        self.codes.append(code)
        if self._result is not None:
            self._result.codes.append(code)

    def _emit(self, result: CallResult, event: Event) -> None:
        result.events.append(event)
        if self.echo:
            self.echo(event)

    def _bound(self, keypad: Keypad) -> Keypad:
        """A Scripted keypad without its own code source keys in this simulator's codes."""
        if isinstance(keypad, Scripted) and keypad.read_code is None:
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
            keypad = _AnsweringMachine() if machine else behaviour.keypad or Scripted([])
            leg = _Leg(
                self,
                result,
                base,
                self._bound(keypad),
                who="callee",
                documents=callback.documents,
                fallback=False,
                max_seconds=VOICEMAIL_SECONDS if machine else None,
            )
            try:
                leg.run(urljoin(self.public_url + "/", placed.url))
            except _CallOver as over:
                callback.ended_by = over.ended_by
            note(f"{label} ended ({callback.ended_by})")
            callback.status, seconds = "completed", leg.seconds
        if placed.status_callback:
            self._post(
                urljoin(self.public_url + "/", placed.status_callback),
                _status_form(base, callback.status, seconds),
            )


class _Leg:
    """One call leg's walk through TwiML documents."""

    def __init__(
        self,
        sim: Simulator,
        result: CallResult,
        base: dict[str, str],
        keypad: Keypad,
        who: str,
        *,
        documents: list[tuple[str, str]] | None = None,
        fallback: bool = True,
        max_seconds: int | None = None,
    ):
        self.sim, self.result, self.base, self.keypad, self.who = sim, result, base, keypad, who
        self.documents = result.documents if documents is None else documents
        self.fallback = fallback  # API-placed calls have no fallback URL unless one is given
        self.max_seconds = max_seconds
        self.ran_out, self.hung_up, self.gave_up = _ENDINGS[who]
        self.requests = 0
        self.seconds = 0

    def emit(self, kind: str, text: str) -> None:
        self.sim._emit(self.result, Event(kind, text, self.who))
        if kind == "say":
            for code in spoken_codes(text):
                self.sim._deliver(code)

    def note(self, text: str) -> None:
        self.emit("note", text)

    def fetch(self, url: str, extra: dict[str, str] | None = None) -> ET.Element:
        self.requests += 1
        if self.requests > MAX_REQUESTS:
            self.note(f"more than {MAX_REQUESTS} webhook requests: the flow is looping")
            raise _CallOver("error")
        form = {**self.base, **(extra or {})}
        reply = self.sim._post(url, form)
        if reply.status != 200:
            if not self.fallback:
                self.note(
                    f"HTTP {reply.status} from {url}: Twilio says an application error has "
                    "occurred and hangs up (error 11200; this call has no fallback URL)"
                )
                raise _CallOver("error")
            self.note(f"HTTP {reply.status} from {url}")
            if url.startswith(self.sim.public_url + "/voice/fallback"):
                raise _CallOver("error")
            # Twilio then requests the number's fallback URL with the error.
            fallback = self.sim.public_url + "/voice/fallback"
            return self.fetch(fallback, {"ErrorCode": "11200", "ErrorUrl": url})
        self.documents.append((url, reply.body))
        try:
            root = ET.fromstring(reply.body)
        except ET.ParseError as exc:
            self.note(f"not XML from {url}: {exc}")
            raise _CallOver("error") from exc
        if root.tag != "Response":
            self.note(f"not TwiML from {url}: root <{root.tag}>")
            raise _CallOver("error")
        return root

    def run(self, url: str, extra: dict[str, str] | None = None) -> None:
        """Fetch and execute documents until the call ends (raises _CallOver)."""
        next_request: tuple[str, dict[str, str]] | None = (url, extra or {})
        while next_request is not None:
            current_url, form = next_request
            document = self.fetch(current_url, form)
            next_request = self.execute(document, current_url)
        raise _CallOver(self.ran_out)

    def execute(self, document: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
        """Run the verbs of one document; return the next request, or None at its end."""
        for verb in document:
            handler = getattr(self, f"_verb_{verb.tag.lower()}", None)
            if handler is None:
                self.note(f"unsupported verb <{verb.tag}> skipped")
                continue
            follow = handler(verb, url)
            if follow is not None:
                return follow
        return None

    # ---- verbs: return (url, form) to request next, or None to go on with the next verb

    def _verb_say(self, verb: ET.Element, url: str) -> None:
        self.emit("say", " ".join((verb.text or "").split()))
        self.seconds += 3

    def _verb_play(self, verb: ET.Element, url: str) -> None:
        self.emit("play", (verb.text or "").strip())

    def _verb_pause(self, verb: ET.Element, url: str) -> None:
        self.emit("pause", f"{verb.get('length', '1')} s")

    def _verb_hangup(self, verb: ET.Element, url: str) -> None:
        raise _CallOver(self.hung_up)

    def _verb_reject(self, verb: ET.Element, url: str) -> None:
        raise _CallOver("rejected")

    def _verb_redirect(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]]:
        return urljoin(url, (verb.text or "").strip()), {}

    def _verb_gather(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
        for child in verb:
            if child.tag in ("Say", "Play", "Pause"):
                getattr(self, f"_verb_{child.tag.lower()}")(child, url)
        num_digits = int(verb.get("numDigits", "0") or 0)
        finish = verb.get("finishOnKey", "#")
        timeout = verb.get("timeout", "5")
        listening = f"{num_digits or 'any'} key(s), ends on {finish or 'nothing'}, {timeout} s"
        if self.max_seconds is not None and self.seconds >= self.max_seconds:
            self.note(f"the answering machine stopped recording after {self.seconds} s")
            raise _CallOver(self.gave_up)
        entry = self.keypad.keys(listening)
        if entry is None:
            raise _CallOver(self.gave_up)
        self.emit("keys", entry or "(silence)")
        action = urljoin(url, verb.get("action") or url)
        if not entry:
            self.seconds += int(timeout)
            if verb.get("actionOnEmptyResult") == "true":
                return action, {"Digits": ""}
            return None  # Twilio does not call the action: it runs the next verb
        digits, finished_on = entry, ""
        if finish and finish in digits:
            digits, finished_on = digits[: digits.index(finish)], finish
        if num_digits:
            digits = digits[:num_digits]
        form = {"Digits": digits}
        if finished_on:
            form["FinishedOnKey"] = finished_on
        return action, form

    def _verb_dial(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
        targets = [child for child in verb if child.tag in ("Number", "Sip", "Client", "Queue")]
        if not targets and (verb.text or "").strip():
            targets = [ET.Element("Number")]
            targets[0].text = verb.text
        status, agent_sid = "failed", ""
        for target in targets:
            address = _address(target)
            self.emit("transfer", f"dial {target.tag.lower()} {address}")
            status, agent_sid = self._ring(target, address)
            if status == "completed":
                break
        self.note(f"dial ended: {status}")
        action = verb.get("action")
        if action:
            form = {"DialCallStatus": status, "DialCallSid": agent_sid}
            if status == "completed":
                form["DialCallDuration"] = "60"
            return urljoin(url, action), form
        return None  # without an action, Twilio goes on with the next verb

    def _ring(self, target: ET.Element, address: str) -> tuple[str, str]:
        behaviour = self.sim.agent
        if behaviour in ("no-answer", "busy", "failed"):
            return behaviour, ""
        agent_sid = new_call_sid()
        whisper_url = target.get("url")
        if not whisper_url:
            self.emit("agent", f"agent at {address} answered")
            return "completed", agent_sid
        agent_keys = Scripted(["1"] if behaviour == "accept" else [""])
        agent_base = {
            **self.base,
            "CallSid": agent_sid,
            "ParentCallSid": self.base["CallSid"],
            "From": self.base.get("To", ""),
            "To": address,
            "Direction": "outbound-dial",
            "CallStatus": "in-progress",
        }
        agent_leg = _Leg(self.sim, self.result, agent_base, agent_keys, who="agent")
        try:
            agent_leg.run(urljoin(self.sim.public_url + "/", whisper_url))
        except _CallOver as over:
            if over.ended_by != "agent-done":
                self.emit("agent", f"agent at {address} did not take the call")
                return "no-answer", agent_sid
        self.emit("agent", f"agent at {address} accepted; caller connected")
        return "completed", agent_sid

    def _verb_enqueue(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
        queue = (verb.text or verb.get("workflowSid") or "").strip()
        self.emit("transfer", f"enqueue {queue}")
        result = {
            "accept": "bridged",
            "silent": "bridged",
            "no-answer": "leave",
            "busy": "queue-full",
            "failed": "error",
        }[self.sim.agent]
        self.note(f"queue result: {result}")
        action = verb.get("action")
        if action:
            return urljoin(url, action), {"QueueResult": result, "QueueTime": "30"}
        if result == "bridged":
            raise _CallOver("agent-connected")
        return None


def _address(target: ET.Element) -> str:
    identity = target.find("Identity")
    if identity is not None and identity.text:
        return identity.text.strip()
    return (target.text or "").strip()
