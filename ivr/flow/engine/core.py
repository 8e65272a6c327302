"""The turn loop: (flow, call state, event) → (new state, instructions).

Pure: no Flask, no Twilio, no storage of its own. Account lookups go through the
`Directory` protocol so node handlers never touch the database directly, and the
caller of the engine decides how to store the state and render the instructions.

A turn runs from node to node until one waits for the caller (a keypad prompt or
a transfer) or the call ends. Each wait gets a new step number; an event carrying
an older step is a replay and only repeats the current prompt, with no side effect.
What each node kind does lives with its family of handlers; the registry says which.

Handlers return the label of the exit they take; the turn loop follows it and
records the call's steps on the turn (`ivr.flow.timeline`): each node entered, each
input by its kind and length, each exit by its label, each verification passed.

A menu with `speech` also listens for words (`ivr.flow.engine.speech`): the option
they choose is handled as if its key had been pressed, and the timeline notes that
the caller spoke, never what they said. Every other prompt listens for keys only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.errors import CallError
from ivr.flow.engine.context import INVALID as UNFIT
from ivr.flow.engine.context import EngineContext, Invalid, Turn
from ivr.flow.engine.registry import BEFORE_ASK, FAILURES, ON_INPUT, ON_RECORDED, REPLAY
from ivr.flow.engine.registry import ENTER as ENTER_HANDLERS
from ivr.flow.engine.speech import choose, hints, listens, option_texts
from ivr.flow.instructions import Gather, Hangup, Pause, Say, Transfer
from ivr.flow.model import (
    CheckAccountDigitsNode,
    CheckCallbackCodeNode,
    CheckCodeNode,
    ChooseLanguageNode,
    CollectDigitsNode,
    CollectNewNumberNode,
    InputNode,
    MenuNode,
    Node,
    TransferNode,
)
from ivr.flow.model.registry import NODE_KIND_OF
from ivr.flow.state import CallState
from ivr.flow.timeline import (
    ACCEPTED,
    CALLBACK_STATUS,
    ENTER,
    EXIT,
    HANGUP,
    INPUT,
    INVALID,
    KEYS,
    LIMIT,
    LOCKED,
    NO_INPUT,
    NONE,
    REPEAT,
    REPROMPT,
    SPEECH,
    START,
    TOO_MANY_TRIES,
    TRANSFER_END,
    VERIFIED,
)
from ivr.phone import normalise_caller_id

MAX_HOPS = 200  # nodes in one turn; validation forbids silent loops, this is a backstop
LIMIT_TRANSFER = "__limit_transfer__"  # pseudo-node: the safe default after too many inputs
DONE_STATUSES = frozenset({"completed", "answered"})


@dataclass(frozen=True)
class Input:
    """Keys the caller pressed for the prompt of `step`; None when they pressed nothing.
    `speech`: what Twilio heard the caller say, at a prompt that listens for speech."""

    digits: str | None
    step: int
    speech: str | None = None


@dataclass(frozen=True)
class DialResult:
    """How the transfer of `step` ended: completed, busy, no-answer, failed, canceled."""

    status: str
    step: int


@dataclass(frozen=True)
class Recorded:
    """The recording asked for at `step` is in: `seconds` long (0: nothing was said)."""

    seconds: int
    step: int


Event = Input | DialResult | Recorded


class Engine(EngineContext):
    """Runs one flow version for one webhook."""

    # ------------------------------------------------------------ entry points

    def start(self, call_sid: str, caller_raw: str | None, stir_verstat: str | None = None) -> Turn:
        """A new call: identify nothing yet, run from the start node."""
        state = CallState(
            call_sid=call_sid,
            flow=self.flow.name,
            version=self.flow.version,
            language=self.flow.default_language,
            node=self.flow.start,
            started_at=self.clock(),
            caller=normalise_caller_id(caller_raw, self.default_region),
            stir_verstat=stir_verstat or None,
        )
        turn = Turn(state)
        self.note(turn, START, flow=state.flow, version=state.version, language=state.language)
        self._advance(turn, self.flow.start)
        return turn

    def handle(self, state: CallState, event: Event) -> Turn:
        """Apply a caller event to the stored state (which is left as it was)."""
        state = state.copy()
        turn = Turn(state)
        if state.ended:
            turn.instructions.append(Hangup())
            return turn
        if event.step != state.step:
            return self.replay(state)  # a replayed or out-of-order webhook
        if state.node == LIMIT_TRANSFER:
            if isinstance(event, DialResult):
                self._after_limit_transfer(turn, event)
                return turn
            return self.replay(state)
        node = self.flow.nodes.get(state.node)
        if isinstance(event, Input) and isinstance(node, InputNode):
            self._on_input(turn, node, event.digits, event.speech)
        elif isinstance(event, DialResult) and isinstance(node, TransferNode):
            self._after_transfer(turn, node, event)
        elif isinstance(event, Recorded) and node is not None and type(node) in ON_RECORDED:
            label = ON_RECORDED[type(node)](self, turn, node, event.seconds)
            if label is not None:
                self._advance(turn, self._exit(turn, node, label))
        else:
            return self.replay(state)
        return turn

    def replay(self, state: CallState) -> Turn:
        """Repeat what the call is waiting on, with no side effect."""
        turn = Turn(state.copy())
        if state.ended:
            turn.instructions.append(Hangup())
        elif state.node == LIMIT_TRANSFER:
            turn.instructions.append(Transfer(self.default_target, state.step))
        else:
            node = self.flow.nodes.get(state.node)
            if isinstance(node, InputNode):
                turn.instructions.append(self._gather(turn, node))
            elif isinstance(node, TransferNode):
                turn.instructions.append(
                    Transfer(node.destination or self.default_target, state.step)
                )
            elif node is not None and type(node) in REPLAY:
                REPLAY[type(node)](self, turn, node)
            else:
                raise CallError(f"call {state.call_sid} waits on {state.node!r}, which cannot wait")
        return turn

    # ------------------------------------------------------------ running nodes

    def _advance(self, turn: Turn, node_id: str) -> None:
        for _ in range(MAX_HOPS):
            node = self.flow.nodes[node_id]
            turn.state.node = node_id
            self.note(turn, ENTER, node=node_id, type=NODE_KIND_OF[type(node)])
            enter = ENTER_HANDLERS.get(type(node))
            if enter is None:  # an input node: ask and wait, unless it lets the call pass
                assert isinstance(node, InputNode)
                before = BEFORE_ASK.get(type(node))
                passed = before(self, turn, node) if before else None
                if passed is None:
                    self._ask(turn, node)
                    return
                node_id = self._exit(turn, node, passed)
                continue
            verified = len(turn.state.methods)
            label = enter(self, turn, node)
            if label is None:
                return
            self._note_verified(turn, verified)
            node_id = self._exit(turn, node, label)
        raise CallError(f"flow {self.flow.name} ran {MAX_HOPS} nodes without waiting")

    def _exit(self, turn: Turn, node: Node, label: str) -> str:
        """Follow the exit `label` of `node` (noting it on the timeline): the next node."""
        field_name, _, key = label.partition(".")
        value = getattr(node, field_name)
        target = value[key] if key else value
        if not isinstance(target, str):
            raise CallError(f"node {node.id!r} has no exit {label!r}")
        self.note(turn, EXIT, node=node.id, exit=label, to=target)
        return target

    def _note_verified(self, turn: Turn, before: int) -> None:
        """Note the verification steps a handler just passed."""
        for method, _at in turn.state.methods[before:]:
            self.note(turn, VERIFIED, method=method)

    def _ask(self, turn: Turn, node: InputNode) -> None:
        state = turn.state
        state.inputs += 1
        if state.inputs > self.flow.max_inputs:
            self._limit_transfer(turn)
            return
        state.step += 1
        turn.instructions.append(self._gather(turn, node))

    def _gather(self, turn: Turn, node: InputNode) -> Gather:
        state = turn.state
        if isinstance(node, ChooseLanguageNode):
            prompts: tuple[Say | Pause, ...] = tuple(
                self.say(turn, node.prompt, language) for language in node.options.values()
            )
        else:
            prompts = (self.say(turn, self._prompt_key(state, node)),)
        code_length = self.verifier.code_length if self.verifier else None
        num_digits, finish_on_key = _keypad(node, code_length)
        if not listens(node):
            return Gather(prompts, state.step, node.timeout, num_digits, finish_on_key)
        assert isinstance(node, MenuNode)
        texts = option_texts(node, self.catalog, state.language)
        return Gather(
            prompts,
            state.step,
            node.timeout,
            num_digits,
            finish_on_key,
            speech_hints=hints(texts.values()),
            speech_language=state.language,
        )

    @staticmethod
    def _prompt_key(state: CallState, node: InputNode) -> str:
        """The prompt for this asking: the first, the retry, or one that fits the moment."""
        retrying = state.tries.get(node.id, 0) > 0
        key = node.retry_prompt if retrying and node.retry_prompt else node.prompt
        if isinstance(node, CollectNewNumberNode) and retrying:
            key = node.problem_prompts.get(state.slots.get("number_problem", ""), key)
        if isinstance(node, CheckCallbackCodeNode) and state.slots.get("callback") == "waiting":
            key = node.waiting_prompt or key
        return key

    def _on_input(
        self, turn: Turn, node: InputNode, digits: str | None, speech: str | None = None
    ) -> None:
        state = turn.state
        state.slots.pop("callback", None)
        # Words count only at a prompt that listened for them (and keys win): anywhere
        # else they are no input, as if Twilio had heard nothing.
        spoken = not digits and bool(speech and speech.strip()) and listens(node)
        if spoken:
            assert speech is not None
            self._on_speech(turn, node, speech)
            return
        if (
            not digits
            and isinstance(node, CheckCallbackCodeNode)
            and self._callback_silence(turn, node)
        ):
            return
        if not digits:
            silences = state.silences[node.id] = state.silences.get(node.id, 0) + 1
            if silences < 2:  # no input repeats the prompt once…
                self._note_input(turn, node, None, REPROMPT)
                self._ask(turn, node)
                return
            self._leave(state, node)  # …then takes the safe default
            state.failure = state.failure or "no_input"
            self._note_input(turn, node, None, NO_INPUT)
            self._advance(turn, self._exit(turn, node, "no_input"))
            return
        if "*" in digits:  # * repeats the prompt anywhere, and costs no try
            self._note_input(turn, node, digits, REPROMPT)
            self._ask(turn, node)
            return
        verified, mark = len(state.methods), len(turn.steps)
        result = ON_INPUT[type(node)](self, turn, node, digits)
        self._after_input(turn, node, result, digits, verified, mark)

    def _on_speech(self, turn: Turn, node: InputNode, speech: str) -> None:
        """Words at a prompt that listens: the one option they choose, as if its key had
        been pressed; none or several is an invalid answer (the node asks again)."""
        state = turn.state
        verified, mark = len(state.methods), len(turn.steps)
        key = choose(node, speech, self.catalog, state.language)
        result = UNFIT if key is None else ON_INPUT[type(node)](self, turn, node, key)
        self._after_input(turn, node, result, None, verified, mark, spoken=True)

    def _after_input(
        self,
        turn: Turn,
        node: InputNode,
        result: str | Invalid,
        digits: str | None,
        verified: int,
        mark: int,
        spoken: bool = False,
    ) -> None:
        """Follow the handler's answer to an input: its exit, or a try used up."""
        state = turn.state
        if isinstance(result, str):
            self._leave(state, node)
            # A handler may take a failure exit itself (digits locked across calls).
            outcome = result if result in (LOCKED, TOO_MANY_TRIES) else ACCEPTED
            self._note_input(turn, node, digits, outcome, mark, spoken)
            self._note_verified(turn, verified)
            self._advance(turn, self._exit(turn, node, result))
            return
        tries = state.tries[node.id] = state.tries.get(node.id, 0) + 1
        if tries >= node.max_tries:
            self._leave(state, node)
            state.failure = FAILURES.get(type(node), "too_many_tries")
            self._note_input(turn, node, digits, TOO_MANY_TRIES, mark, spoken)
            self._advance(turn, self._exit(turn, node, "too_many_tries"))
        else:
            self._note_input(turn, node, digits, INVALID, mark, spoken)
            self._advance(turn, self._exit(turn, node, "invalid"))

    def _note_input(
        self,
        turn: Turn,
        node: InputNode,
        digits: str | None,
        result: str,
        before: int | None = None,
        spoken: bool = False,
    ) -> None:
        """An input on the timeline (its kind and how many keys, never the keys nor the
        words), placed `before` the steps its handler noted (a code check comes after
        the input)."""
        if spoken:
            self.note(turn, INPUT, node=node.id, input=SPEECH, keys=0, result=result)
        elif not digits:
            self.note(turn, INPUT, node=node.id, input=NONE, keys=0, result=result)
        else:
            kind = REPEAT if "*" in digits else KEYS
            self.note(turn, INPUT, node=node.id, input=kind, keys=len(digits), result=result)
        if before is not None:
            moved = turn.steps.pop()
            if before < len(turn.steps):  # dated no later than the steps it now precedes
                moved["at"] = min(moved["at"], turn.steps[before]["at"])
            turn.steps.insert(before, moved)

    def _callback_silence(self, turn: Turn, node: CheckCallbackCodeNode) -> bool:
        """Silence while the call-back runs is waiting, not a failure; once it has ended
        unanswered, busy or failed, say so. True when handled here."""
        state = turn.state
        status = self.number_changer.callback_status(state) if self.number_changer else "failed"
        if status == "waiting":
            state.slots["callback"] = "waiting"
            self._ask(turn, node)
            return True
        if status in ("not_answered", "busy", "failed"):
            self._leave(state, node)
            state.failure = f"callback_{status}"
            self.note(turn, CALLBACK_STATUS, status=status)
            self._advance(turn, self._exit(turn, node, status))
            return True
        return False  # the code was read out: an ordinary silence

    @staticmethod
    def _leave(state: CallState, node: Node) -> None:
        state.tries.pop(node.id, None)
        state.silences.pop(node.id, None)

    def _after_transfer(self, turn: Turn, node: TransferNode, result: DialResult) -> None:
        self.note(turn, TRANSFER_END, node=node.id, status=result.status)
        if result.status in DONE_STATUSES:
            turn.state.ended = True
            turn.instructions.append(Hangup())
        else:
            self._advance(turn, self._exit(turn, node, "unanswered"))

    def _limit_transfer(self, turn: Turn) -> None:
        """Too many prompts in one call: stop asking and hand over to people."""
        state = turn.state
        self.note(turn, LIMIT, node=state.node)
        state.node = LIMIT_TRANSFER
        state.failure = state.failure or "input_limit"
        state.transfer_reason = "error"
        state.step += 1
        self.note_transfer(turn, self.default_target, None, "error")
        turn.instructions.append(Transfer(self.default_target, state.step))

    def _after_limit_transfer(self, turn: Turn, result: DialResult) -> None:
        self.note(turn, TRANSFER_END, status=result.status)
        if result.status not in DONE_STATUSES:
            turn.instructions.append(self.say(turn, "agents_unavailable"))
            self.note(turn, HANGUP)
        turn.state.ended = True
        turn.instructions.append(Hangup())


def _keypad(node: InputNode, code_length: int | None) -> tuple[int | None, str]:
    """How many keys a node collects, and the key that ends collection early."""
    if isinstance(node, (MenuNode, ChooseLanguageNode)):
        return 1, ""
    if isinstance(node, CheckAccountDigitsNode):
        return (4, "#") if node.mode == "last4" else (None, "#")
    if isinstance(node, (CheckCodeNode, CheckCallbackCodeNode)) and code_length is not None:
        return code_length, "#"
    if isinstance(node, CollectDigitsNode):
        fixed = node.min_length == node.max_length
        return (node.max_length if fixed else None), "#"
    return None, "#"  # codes: ended by # or by the timeout
