"""Plays a call against the service the way Twilio would, and records what happens.

It follows Twilio's documented behaviour (../shared/docs/twilio.md): `<Gather>`
defaults (timeout 5 s, finishOnKey #, action = the current URL) and its fall-through
to the next verb on no input; `<Redirect>`; `<Dial>` with a whisper leg for each
`<Number|Sip|Client url>` and its action with DialCallStatus; `<Enqueue>` with
QueueResult; `<Pause>`, `<Play>`, `<Hangup>`, `<Reject>`; the fallback URL on an
HTTP error; and a status callback when the call ends.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urljoin

from ivr.simulator.transport import Transport

MAX_REQUESTS = 300  # a flow that needs more webhooks than this is looping

AGENT_BEHAVIOURS = ("accept", "silent", "no-answer", "busy", "failed")


@dataclass(frozen=True)
class Event:
    """One thing that happened: `kind` is say, play, pause, keys, transfer, agent or note."""

    kind: str
    text: str
    who: str = "caller"  # whose leg: caller or agent


class Keypad(Protocol):
    def keys(self, listening: str) -> str | None:
        """Keys for one `<Gather>`: "" for silence, None to hang up."""


CODE_ENTRY = "@code"  # a scripted entry standing for "the code I was just sent"


class Scripted:
    """Answers gathers from a list; hangs up when the list runs out.

    An entry `@code` (optionally `@code#`) is replaced by what `read_code` returns:
    the latest one-time code delivered to the caller (from the local outbox).
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


@dataclass
class CallResult:
    call_sid: str
    events: list[Event] = field(default_factory=list)
    documents: list[tuple[str, str]] = field(default_factory=list)  # (url, TwiML)
    ended_by: str = ""  # ivr, caller, agent-connected, error

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


class Simulator:
    """Places simulated calls through the signed webhooks."""

    def __init__(
        self,
        transport: Transport,
        public_url: str,
        *,
        agent: str = "accept",
        echo: Callable[[Event], None] | None = None,
        support_number: str = "+15005550006",
    ):
        if agent not in AGENT_BEHAVIOURS:
            raise ValueError(f"agent must be one of {', '.join(AGENT_BEHAVIOURS)}")
        self.transport = transport
        self.public_url = public_url.rstrip("/")
        self.agent = agent
        self.echo = echo
        self.support_number = support_number

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
        base = {
            "CallSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": caller,
            "Caller": caller,
            "To": self.support_number,
            "Called": self.support_number,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            **(extra or {}),
        }
        leg = _Leg(self, result, base, keypad, who="caller")
        try:
            leg.run(self.public_url + "/voice/incoming", {"CallStatus": "ringing"})
            result.ended_by = "ivr"
        except _CallOver as over:
            result.ended_by = over.ended_by
        leg.note(f"call ended ({result.ended_by})")
        self.transport.post(
            self.public_url + "/voice/status",
            {**base, "CallStatus": "completed", "CallDuration": str(leg.seconds)},
        )
        return result


class _Leg:
    """One call leg's walk through TwiML documents."""

    def __init__(
        self, sim: Simulator, result: CallResult, base: dict[str, str], keypad: Keypad, who: str
    ):
        self.sim, self.result, self.base, self.keypad, self.who = sim, result, base, keypad, who
        self.requests = 0
        self.seconds = 0

    def emit(self, kind: str, text: str) -> None:
        event = Event(kind, text, self.who)
        self.result.events.append(event)
        if self.sim.echo:
            self.sim.echo(event)

    def note(self, text: str) -> None:
        self.emit("note", text)

    def fetch(self, url: str, extra: dict[str, str] | None = None) -> ET.Element:
        self.requests += 1
        if self.requests > MAX_REQUESTS:
            self.note(f"more than {MAX_REQUESTS} webhook requests: the flow is looping")
            raise _CallOver("error")
        form = {**self.base, **(extra or {})}
        reply = self.sim.transport.post(url, form)
        if reply.status != 200:
            self.note(f"HTTP {reply.status} from {url}")
            if url.startswith(self.sim.public_url + "/voice/fallback"):
                raise _CallOver("error")
            # Twilio then requests the number's fallback URL with the error.
            fallback = self.sim.public_url + "/voice/fallback"
            return self.fetch(fallback, {"ErrorCode": "11200", "ErrorUrl": url})
        self.result.documents.append((url, reply.body))
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
        raise _CallOver((self.who == "caller" and "ivr") or "agent-done")

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
        raise _CallOver("ivr" if self.who == "caller" else "agent-declined")

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
        entry = self.keypad.keys(listening)
        if entry is None:
            raise _CallOver("caller-hangup" if self.who == "caller" else "agent-declined")
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
