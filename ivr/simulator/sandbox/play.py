"""Plays a script's answers into the real `Simulator`, in the order the call asks for
them, and stops the call where the script runs out (`NeedsAnswer`). What a replay saw
is a `Replay`; one-time codes and the CallSid come from the script's seed, so every
replay of a script agrees with the last."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from ivr.flow.model import Flow
from ivr.flow.model.menus import ChooseLanguageNode
from ivr.phone import mask
from ivr.simulator.player import CalleeBehaviour
from ivr.simulator.sandbox.script import KEY_ACTIONS, RING_ACTIONS, Answer, Script, ScriptError
from ivr.simulator.verbs import Event


@dataclass(frozen=True)
class Turn:
    """What the call waits for now: keys from `who`, or whether the phone called back
    (`number`, masked) is answered."""

    who: str  # caller or callee
    kind: str  # "keys" or "ring"
    listening: str = ""  # how the <Gather> listens, as the simulator describes it
    number: str = ""  # the callee's number, masked


@dataclass(frozen=True)
class Sent:
    """A code that reached someone during the call: in the outbox, or read out."""

    channel: str  # sms, email, or "voice" for a code read out on a call
    to: str  # masked
    code: str


@dataclass
class Replay:
    """What a replay saw: the transcript so far and what happens next."""

    events: list[Event] = field(default_factory=list)
    turn: Turn | None = None  # None: the call is over
    ended_by: str = ""  # how the call ended (when over)
    node: str | None = None  # the node the call is at (or last was)
    sent: list[Sent] = field(default_factory=list)
    placed: list[str] = field(default_factory=list)  # calls placed, to masked numbers
    unused: int = 0  # answers the call never asked for (the flow changed since?)

    @property
    def transfers(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "transfer"]

    @property
    def whisper(self) -> list[str]:
        """What the agent heard before taking the call."""
        return [e.text for e in self.events if e.kind == "say" and e.who == "agent"]

    @property
    def codes(self) -> list[str]:
        return [sent.code for sent in self.sent]


class NeedsAnswer(Exception):
    """The script has no answer for what the call asks now: the replay stops here."""

    def __init__(self, turn: Turn):
        self.turn = turn


class Player:
    """Answers the call's questions from the script, in the order the call asks them."""

    def __init__(
        self, script: Script, flow: Flow, call_sid: str, node_of: Callable[[str], str | None]
    ):
        self.script, self.flow, self.call_sid = script, flow, call_sid
        self.node_of = node_of  # the node a call is at, from its stored state
        self.position = 0
        self.language_pending = bool(script.language)
        self.node: str | None = None
        self.events: list[Event] = []
        self.legs: list[tuple[int, str]] = []  # call-backs rung: (first event, number masked)

    def _next(self, turn: Turn) -> Answer:
        if self.position >= len(self.script.answers):
            raise NeedsAnswer(turn)
        answer = self.script.answers[self.position]
        expected = KEY_ACTIONS if turn.kind == "keys" else RING_ACTIONS
        if answer.who != turn.who or answer.do not in expected:
            raise ScriptError(
                f"answer {self.position + 1} ({answer.who}: {answer.do}) does not fit the call: "
                f"it now asks the {_whose(turn.who)} for "
                + ("keys" if turn.kind == "keys" else "whether to answer")
                + ". The flow may have changed since this call started: start a new call."
            )
        self.position += 1
        return answer

    def keys(self, who: str, listening: str) -> str | None:
        node = self.node_of(self.call_sid)
        if node is not None:
            self.node = node
        if who == "caller" and self.language_pending:
            self.language_pending = False
            key = self._language_key(node)
            if key is not None:
                chosen = f"{self.script.language} chosen for this call: the caller presses {key}"
                self.events.append(Event("note", chosen))
                return key
            self.events.append(
                Event("note", f"no language menu here: {self.script.language} not chosen")
            )
        answer = self._next(Turn(who, "keys", listening))
        if answer.do == "hangup":
            return None
        return answer.keys if answer.do == "keys" else ""

    def _language_key(self, node: str | None) -> str | None:
        """The key that picks the script's language at this language menu, if it is one."""
        menu = self.flow.nodes.get(node or "")
        if not isinstance(menu, ChooseLanguageNode):
            return None
        for key, language in menu.options.items():
            if language == self.script.language:
                return key
        return None

    def callee(self, number: str) -> CalleeBehaviour:
        self.legs.append((len(self.events), mask(number)))  # its leg's events follow
        answer = self._next(Turn("callee", "ring", number=mask(number)))
        if answer.do == "ignore":
            return CalleeBehaviour("no-answer")
        return CalleeBehaviour("answer", ScriptKeypad(self, "callee"))


class ScriptKeypad:
    """One leg's keypad, answering from the script."""

    def __init__(self, player: Player, who: str):
        self.player, self.who = player, who

    def keys(self, listening: str) -> str | None:
        return self.player.keys(self.who, listening)


def _whose(who: str) -> str:
    return "caller" if who == "caller" else "phone called back"


def derived(seed: str, label: str) -> str:
    """A value derived from a script's seed: the same seed always gives the same one."""
    return hmac.new(bytes.fromhex(seed), label.encode(), hashlib.sha256).hexdigest()


class SeededCodes:
    """Codes that depend only on the seed and how many came before (a CodeSource)."""

    def __init__(self, seed: str):
        self.seed = seed
        self.count = 0

    def __call__(self, length: int) -> str:
        self.count += 1
        value = int(derived(self.seed, f"code:{self.count}"), 16)
        return f"{value % 10**length:0{length}d}"
