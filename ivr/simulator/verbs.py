"""How one call leg plays TwiML, verb by verb, the way Twilio documents it.

A Leg fetches a document, runs its verbs in order and follows where they lead:
`<Say>`, `<Play>`, `<Pause>`; `<Gather>` with Twilio's defaults (timeout 5 s,
finishOnKey #, action = the current URL) and its fall-through to the next verb on
no input; `<Redirect>`; `<Dial>` with a whisper leg for each
`<Number|Sip|Client url>` and its action with DialCallStatus; `<Enqueue>` with
QueueResult, holding as Twilio does: the waitUrl is requested, its document played
and requested again when it ends (following its `<Redirect>`), QueueTime growing by
what was played, in a SimulatedQueue (place, size and AvgQueueTime of a steady
queue) until the caller's turn, when `agent` decides (accept, silent: bridged;
no-answer: leave), or until the document says `<Leave/>`; `<Dial><Conference>` (the
leg joins the room and stays until it ends); `<Hangup>` and `<Reject>`; the fallback
URL on an HTTP error. A leg ends by raising CallOver.

With a queue board (ivr.queues.local) and agents about to phone the agent line,
`<Enqueue>` parks the caller in the simulated queue: it requests the waitUrl (if
any) with QueuePosition, QueueTime, AvgQueueTime and CurrentQueueSize as Twilio
does and plays its hold verbs, lets the agents call while the caller holds, then
follows a redirect the service made of that member (posting the Enqueue action
with QueueResult=redirected first, as Twilio requests it right away, and ignoring
its answer: the call goes to the redirect's URL) — or leaves the queue when nobody
took the caller (QueueResult=leave).

What a leg needs from the call it belongs to (posting webhooks, recording events
and codes, what an agent does) comes through the Switchboard protocol, which the
call loop in `player` provides; this module does not import it.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin

from ivr.simulator.codes import spoken_codes
from ivr.simulator.keypads import Keypad, Scripted
from ivr.simulator.over import CallOver
from ivr.simulator.recording import play_record
from ivr.simulator.transport import Reply

MAX_REQUESTS = 300  # a flow that needs more webhooks than this is looping
MAX_HOLD_ROUNDS = 40  # waitUrl documents one <Enqueue> plays at most
SAY_SECONDS = 3  # how long a <Say> takes, as the simulator counts a hold
TRACK_SECONDS = 30  # how long a <Play> of hold music takes (no audio is fetched)

AGENT_BEHAVIOURS = ("accept", "silent", "no-answer", "busy", "failed")

# How a leg ends, by whose leg it is: (its documents ran out, <Hangup/>, hung up at a prompt).
_ENDINGS = {
    "caller": ("ivr", "ivr", "caller-hangup"),
    "agent": ("agent-done", "agent-declined", "agent-declined"),
    "callee": ("ivr", "ivr", "callee-hangup"),
}


@dataclass(frozen=True)
class Event:
    """One thing that happened: `kind` is say, play, pause, keys, transfer, agent,
    conference (`text` is the room a leg joined) or note."""

    kind: str
    text: str
    who: str = "caller"  # whose leg: caller, agent, or callee (a call the service placed)
    language: str = ""  # a say's language attribute (BCP 47), when the TwiML gives one


def new_call_sid() -> str:
    """A fresh CallSid, as Twilio would give a new leg."""
    return "CA" + secrets.token_hex(16)


class Switchboard(Protocol):
    """What a leg needs from the call it belongs to."""

    public_url: str  # the service's public URL: the fallback and whisper URLs hang off it
    agent: str  # what an agent reached by <Dial> or <Enqueue> does: one of AGENT_BEHAVIOURS
    documents: list[tuple[str, str]]  # the call's (url, TwiML), where agent legs record theirs

    def post(self, url: str, form: dict[str, str]) -> Reply:
        """Post one webhook as Twilio would."""

    def emit(self, event: Event) -> None:
        """Record one event of the call."""

    def deliver(self, code: str) -> None:
        """Note a one-time code the person has just been given."""

    def holding(self) -> QueueBoard | None:
        """The simulated queues, when agents are about to phone the agent line (else
        None: an `<Enqueue>` ends at once, as `agent` says)."""

    def agents_phone_in(self) -> None:
        """Let the agents waiting to call the agent line call now (a caller holds)."""


class QueueBoard(Protocol):
    """The simulator's side of the local queues (ivr.queues.local.LocalQueues)."""

    def join(self, queue: str, call_sid: str) -> int: ...

    def leave(self, queue: str, call_sid: str) -> None: ...

    def take_redirect(self, call_sid: str) -> str | None: ...

    def position(self, queue: str, call_sid: str) -> tuple[int, int]: ...


class Leg:
    """One call leg's walk through TwiML documents."""

    def __init__(
        self,
        call: Switchboard,
        base: dict[str, str],
        keypad: Keypad,
        who: str,
        *,
        documents: list[tuple[str, str]] | None = None,
        fallback: bool = True,
        max_seconds: int | None = None,
    ):
        self.call, self.base, self.keypad, self.who = call, base, keypad, who
        self.documents = call.documents if documents is None else documents
        self.fallback = fallback  # API-placed calls have no fallback URL unless one is given
        self.max_seconds = max_seconds
        self.ran_out, self.hung_up, self.gave_up = _ENDINGS[who]
        self.requests = 0
        self.seconds = 0

    def emit(self, kind: str, text: str, language: str = "") -> None:
        self.call.emit(Event(kind, text, self.who, language))
        if kind == "say":
            for code in spoken_codes(text):
                self.call.deliver(code)

    def note(self, text: str) -> None:
        self.emit("note", text)

    def fetch(self, url: str, extra: dict[str, str] | None = None) -> ET.Element:
        self.requests += 1
        if self.requests > MAX_REQUESTS:
            self.note(f"more than {MAX_REQUESTS} webhook requests: the flow is looping")
            raise CallOver("error")
        form = {**self.base, **(extra or {})}
        reply = self.call.post(url, form)
        if reply.status != 200:
            if not self.fallback:
                self.note(
                    f"HTTP {reply.status} from {url}: Twilio says an application error has "
                    "occurred and hangs up (error 11200; this call has no fallback URL)"
                )
                raise CallOver("error")
            self.note(f"HTTP {reply.status} from {url}")
            if url.startswith(self.call.public_url + "/voice/fallback"):
                raise CallOver("error")
            # Twilio then requests the number's fallback URL with the error.
            fallback = self.call.public_url + "/voice/fallback"
            return self.fetch(fallback, {"ErrorCode": "11200", "ErrorUrl": url})
        self.documents.append((url, reply.body))
        try:
            root = ET.fromstring(reply.body)
        except ET.ParseError as exc:
            self.note(f"not XML from {url}: {exc}")
            raise CallOver("error") from exc
        if root.tag != "Response":
            self.note(f"not TwiML from {url}: root <{root.tag}>")
            raise CallOver("error")
        return root

    def run(self, url: str, extra: dict[str, str] | None = None) -> None:
        """Fetch and execute documents until the call ends (raises CallOver)."""
        next_request: tuple[str, dict[str, str]] | None = (url, extra or {})
        while next_request is not None:
            current_url, form = next_request
            document = self.fetch(current_url, form)
            next_request = self.execute(document, current_url)
        raise CallOver(self.ran_out)

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
        self.emit("say", " ".join((verb.text or "").split()), verb.get("language", ""))
        self.seconds += 3

    def _verb_play(self, verb: ET.Element, url: str) -> None:
        self.emit("play", (verb.text or "").strip())

    def _verb_pause(self, verb: ET.Element, url: str) -> None:
        self.emit("pause", f"{verb.get('length', '1')} s")

    def _verb_hangup(self, verb: ET.Element, url: str) -> None:
        raise CallOver(self.hung_up)

    def _verb_reject(self, verb: ET.Element, url: str) -> None:
        raise CallOver("rejected")

    def _verb_redirect(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]]:
        return urljoin(url, (verb.text or "").strip()), {}

    def _verb_gather(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
        # (imported here: the rest of this module is being edited in parallel; hoist later)
        from ivr.simulator.keypads import SPEECH_CONFIDENCE, SPEECH_ENTRY, spoken

        for child in verb:
            if child.tag in ("Say", "Play", "Pause"):
                getattr(self, f"_verb_{child.tag.lower()}")(child, url)
        num_digits = int(verb.get("numDigits", "0") or 0)
        finish = verb.get("finishOnKey", "#")
        timeout = verb.get("timeout", "5")
        speech = "speech" in (verb.get("input") or "dtmf").split()
        listening = f"{num_digits or 'any'} key(s), ends on {finish or 'nothing'}, {timeout} s"
        if speech:
            listening += f", or words ({SPEECH_ENTRY}...)"
        if self.max_seconds is not None and self.seconds >= self.max_seconds:
            self.note(f"the answering machine stopped recording after {self.seconds} s")
            raise CallOver(self.gave_up)
        entry = self.keypad.keys(listening)
        if entry is None:
            raise CallOver(self.gave_up)
        self.emit("keys", entry or "(silence)")
        action = urljoin(url, verb.get("action") or url)
        words = spoken(entry)
        if words is not None and not speech:
            self.note("this prompt listens for keys only: the words are not heard")
            entry = ""  # Twilio hears nothing at a dtmf-only Gather
        if not entry or words == "":
            self.seconds += int(timeout)
            if verb.get("actionOnEmptyResult") == "true":
                return action, {"Digits": ""}
            return None  # Twilio does not call the action: it runs the next verb
        if words is not None:
            return action, {"SpeechResult": words, "Confidence": SPEECH_CONFIDENCE}
        digits, finished_on = entry, ""
        if finish and finish in digits:
            digits, finished_on = digits[: digits.index(finish)], finish
        if num_digits:
            digits = digits[:num_digits]
        form = {"Digits": digits}
        if finished_on:
            form["FinishedOnKey"] = finished_on
        return action, form

    def _verb_record(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
        return play_record(self, verb, url)

    def _verb_dial(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
        rooms = [child for child in verb if child.tag == "Conference"]
        if rooms:
            return self._conference(verb, url, (rooms[0].text or "").strip())
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
        behaviour = self.call.agent
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
        agent_leg = Leg(self.call, agent_base, agent_keys, who="agent")
        try:
            agent_leg.run(urljoin(self.call.public_url + "/", whisper_url))
        except CallOver as over:
            if over.ended_by != "agent-done":
                self.emit("agent", f"agent at {address} did not take the call")
                return "no-answer", agent_sid
        self.emit("agent", f"agent at {address} accepted; caller connected")
        return "completed", agent_sid

    def _conference(
        self, verb: ET.Element, url: str, room: str
    ) -> tuple[str, dict[str, str]] | None:
        """Join the room; the simulator plays one leg at a time, so the leg is in it (as the
        events record) until the conference ends, then the Dial's action as completed."""
        self.emit("conference", room)
        self.note(f"in conference {room} until it ends")
        action = verb.get("action")
        if action:
            form = {"DialCallStatus": "completed", "DialCallDuration": "60"}
            return urljoin(url, action), form
        return None

    def _verb_enqueue(self, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
        queue = (verb.text or verb.get("workflowSid") or "").strip()
        self.emit("transfer", f"enqueue {queue}")
        board = self.call.holding()
        if board is not None:
            return self._hold(board, verb, url, queue)
        result = {
            "accept": "bridged",
            "silent": "bridged",
            "no-answer": "leave",
            "busy": "queue-full",
            "failed": "error",
        }[self.call.agent]
        held = 30
        wait_url = verb.get("waitUrl")
        if wait_url and result in ("bridged", "leave"):  # (queue-full, error: never queued)
            held, left = self._hold_rounds(urljoin(url, wait_url), SimulatedQueue())
            if left:
                result = "leave"
            elif result == "bridged":
                self.emit("agent", f"an agent took the call from queue {queue} after {held} s")
            else:
                self.note("nobody took the call at the caller's turn: out of the queue")
        self.note(f"queue result: {result}")
        action = verb.get("action")
        if action:
            return urljoin(url, action), {"QueueResult": result, "QueueTime": str(held)}
        if result == "bridged":
            raise CallOver("agent-connected")
        return None

    def _hold_rounds(self, wait_url: str, queue: SimulatedQueue) -> tuple[int, bool]:
        """Hold as Twilio does: request the waitUrl, play the document, and when it ends
        request it again (or the URL its `<Redirect>` names), QueueTime growing by what
        was played; until the caller's turn comes (`queue.taken_at`), `<Leave/>`, or
        MAX_HOLD_ROUNDS documents. The seconds held, and whether the caller left."""
        held, next_url = 0, wait_url
        for _ in range(MAX_HOLD_ROUNDS):
            if held >= queue.taken_at:
                return held, False
            document = self.fetch(next_url, queue.form(held))
            played = _hold_document(self, document, next_url)
            held += played.seconds
            self.seconds += played.seconds
            if played.left:
                return held, True
            next_url = played.redirect or wait_url
        self.note(f"still holding after {MAX_HOLD_ROUNDS} hold documents")
        return held, False

    def _hold(
        self, board: QueueBoard, verb: ET.Element, url: str, queue: str
    ) -> tuple[str, dict[str, str]] | None:
        """Park the caller in the simulated queue while the agents phone the agent line."""
        sid = self.base["CallSid"]
        position = board.join(queue, sid)
        self.note(f"holding in queue {queue} at position {position}")
        action = verb.get("action")
        wait_url = verb.get("waitUrl")
        left = False
        if wait_url:
            document = self.fetch(urljoin(url, wait_url), _queue_form(board, queue, sid, 0))
            left = _hold_verbs(self, document, url)
        if not left:
            self.call.agents_phone_in()
        redirect = board.take_redirect(sid)
        if redirect is not None:
            self.note("redirected out of the queue")
            if action:  # Twilio requests it at once; the call then runs the redirect's URL
                form = {**self.base, "QueueResult": "redirected", "QueueTime": "30"}
                self.call.post(urljoin(url, action), form)
            return urljoin(self.call.public_url + "/", redirect), {}
        board.leave(queue, sid)
        self.note("queue result: leave (nobody took the call)")
        if action:
            return urljoin(url, action), {"QueueResult": "leave", "QueueTime": "30"}
        return None


def _address(target: ET.Element) -> str:
    identity = target.find("Identity")
    if identity is not None and identity.text:
        return identity.text.strip()
    return (target.text or "").strip()


def _queue_form(board: QueueBoard, queue: str, call_sid: str, held: int) -> dict[str, str]:
    """What Twilio adds to a waitUrl request."""
    position, size = board.position(queue, call_sid)
    return {
        "QueueSid": "QU" + "0" * 32,
        "QueuePosition": str(position),
        "QueueTime": str(held),
        "AvgQueueTime": "0",
        "CurrentQueueSize": str(size),
    }


@dataclass(frozen=True)
class SimulatedQueue:
    """The queue a caller holds in when no agent line is simulated: a steady queue of
    `size` callers, one taken every `pace` seconds and another joining behind. The caller
    joins at the back and is taken once `size`·`pace` seconds have passed; the callers
    ahead joined `pace` seconds apart, so the average wait is pace·(size-1)/2 plus the
    time since the last one was taken (what Twilio sends as AvgQueueTime)."""

    size: int = 3
    pace: int = 60

    @property
    def taken_at(self) -> int:
        return self.size * self.pace

    def form(self, held: int) -> dict[str, str]:
        """What Twilio adds to a waitUrl request after `held` seconds."""
        position = max(1, self.size - held // self.pace)
        average = self.pace * (self.size - 1) // 2 + held % self.pace
        return {
            "QueueSid": "QU" + "0" * 32,
            "QueuePosition": str(position),
            "QueueTime": str(held),
            "AvgQueueTime": str(average),
            "CurrentQueueSize": str(self.size),
            "MaxQueueSize": "100",
        }


@dataclass(frozen=True)
class Played:
    """One hold document played: seconds it took, `<Leave/>`, where its `<Redirect>` goes."""

    seconds: int
    left: bool = False
    redirect: str | None = None


def _hold_document(leg: Leg, document: ET.Element, url: str) -> Played:
    """Play a hold document's verbs once, timing them: a `<Say>` SAY_SECONDS, a `<Play>`
    TRACK_SECONDS (the simulator fetches no audio), a `<Pause>` its length."""
    seconds = 0
    for verb in document:
        if verb.tag == "Leave":
            return Played(seconds, left=True)
        if verb.tag == "Redirect":
            return Played(seconds, redirect=urljoin(url, (verb.text or "").strip()))
        if verb.tag in ("Say", "Play", "Pause"):
            getattr(leg, f"_verb_{verb.tag.lower()}")(verb, url)
            if verb.tag == "Pause":
                seconds += int(verb.get("length", "1") or 1)
            else:
                seconds += SAY_SECONDS if verb.tag == "Say" else TRACK_SECONDS
        elif verb.tag == "Hangup":
            raise CallOver(leg.hung_up)
        elif verb.tag == "Gather":
            # An offer while holding (a call-back): a scripted caller with keys left
            # presses the next; with none left (any keypad with a list of `entries`),
            # they keep holding, silent, rather than hang up.
            if getattr(leg.keypad, "entries", None) == []:
                for child in verb:
                    if child.tag in ("Say", "Play", "Pause"):
                        getattr(leg, f"_verb_{child.tag.lower()}")(child, url)
                leg.emit("keys", "(silence)")
                seconds += SAY_SECONDS + int(verb.get("timeout", "5") or 5)
                continue
            pressed = leg._verb_gather(verb, url)
            seconds += SAY_SECONDS
            if pressed is not None:
                # Twilio runs the action's answer in place of the hold document.
                action, form = pressed
                answer = leg.fetch(action, form)
                then = _hold_document(leg, answer, action)
                return Played(seconds + then.seconds, then.left, then.redirect)
        else:
            leg.note(f"<{verb.tag}> while holding: not played by the simulator")
    return Played(seconds)


def _hold_verbs(leg: Leg, document: ET.Element, url: str) -> bool:
    """Play a hold document's verbs once; True when it says `<Leave/>`."""
    return _hold_document(leg, document, url).left
