"""The flow engine: (flow, call state, event) → (new state, instructions).

Pure: no Flask, no Twilio, no storage of its own. Account lookups go through the
`Directory` protocol so node handlers never touch the database directly, and the
caller of the engine decides how to store the state and render the instructions.

A turn runs from node to node until one waits for the caller (a keypad prompt or
a transfer) or the call ends. Each wait gets a new step number; an event carrying
an older step is a replay and only repeats the current prompt, with no side effect.
"""

from __future__ import annotations

import copy
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ivr.errors import CallError
from ivr.flow.instructions import Gather, Hangup, Instruction, Pause, Say, Transfer
from ivr.flow.model import (
    FACTS,
    FRESH_VERIFICATION,
    NODE_TYPES,
    BranchNode,
    Catalog,
    CheckAccountDigitsNode,
    CheckCallbackCodeNode,
    CheckCodeNode,
    CheckNumberChangeNode,
    ChooseLanguageNode,
    CollectDigitsNode,
    CollectNewNumberNode,
    Flow,
    HangupNode,
    IdentifyCallerNode,
    InputNode,
    MenuNode,
    Node,
    SayNode,
    SendCodeNode,
    StartCallbackNode,
    TransferNode,
    TransferTarget,
)
from ivr.flow.state import MAX_CANDIDATES, CallState
from ivr.phone import normalise_caller_id

MAX_HOPS = 200  # nodes in one turn; validation forbids silent loops, this is a backstop
LIMIT_TRANSFER = "__limit_transfer__"  # pseudo-node: the safe default after too many inputs
DONE_STATUSES = frozenset({"completed", "answered"})


@dataclass(frozen=True)
class AccountView:
    """What the engine may know about an account."""

    id: int
    number: str
    name: str
    phone: str
    email: str | None = None
    phone_changed_at: float | None = None  # when the number on file last changed (epoch s)

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else ""


class Directory(Protocol):
    """Account lookups the engine needs (implemented over the database)."""

    def accounts_for_phone(self, e164: str) -> list[AccountView]: ...

    def accounts_by_ids(self, ids: Sequence[int]) -> list[AccountView]: ...

    def account_by_number(self, number: str) -> AccountView | None: ...


class Verifier(Protocol):
    """One-time codes for the engine (implemented by ivr.verification.verifier)."""

    code_length: int

    def send_code(self, state: CallState, channel: str) -> str:
        """Send a code on file: sent, no_channel, rate_limited, locked or failed."""
        ...

    def check_code(self, state: CallState, entered: str) -> str:
        """Check an entered code: ok, wrong, expired or locked."""
        ...


@dataclass(frozen=True)
class Started:
    """How starting a number-change call-back went; `code` only when it must be read now."""

    outcome: str  # calling, code_read, limited, locked, taken, failed, needs_code
    code: str | None = None


class NumberChanger(Protocol):
    """Changing the phone number on file, confirmed by a code call-back (ivr.numberchange)."""

    def check_number(self, state: CallState, account: AccountView, keyed: str) -> str:
        """ "ok" (kept in state.slots), "taken" (on another account) or a number problem."""
        ...

    def start(self, state: CallState, account: AccountView) -> Started:
        """Place the call-back to the new number, or read the code for one after this call."""
        ...

    def callback_status(self, state: CallState) -> str:
        """waiting (ringing or in progress), read, not_answered, busy or failed."""
        ...

    def confirm(self, state: CallState, entered: str) -> str:
        """Check the code keyed in here: ok (the number changed), wrong, expired, locked,
        conflict (the number changed meanwhile), taken (the new number went to another
        account meanwhile)."""
        ...


COOLING_OFF = (
    7 * 86400
)  # seconds a changed number stays flagged (IVR_NUMBER_CHANGE_COOLING_OFF_DAYS)


@dataclass(frozen=True)
class Input:
    """Keys the caller pressed for the prompt of `step`; None when they pressed nothing."""

    digits: str | None
    step: int


@dataclass(frozen=True)
class DialResult:
    """How the transfer of `step` ended: completed, busy, no-answer, failed, canceled."""

    status: str
    step: int


Event = Input | DialResult


@dataclass
class Turn:
    """The engine's answer: the state to store and what the caller hears next."""

    state: CallState
    instructions: list[Instruction] = field(default_factory=list)


class _Invalid:
    """Marker: the input did not fit the node."""


INVALID = _Invalid()


class Engine:
    """Runs one flow version for one webhook."""

    def __init__(
        self,
        flow: Flow,
        catalog: Catalog,
        directory: Directory,
        default_target: TransferTarget,
        default_region: str,
        clock: Callable[[], float] = time.time,
        verifier: Verifier | None = None,
        number_changer: NumberChanger | None = None,
        cooling_off: int = COOLING_OFF,
    ):
        self.flow = flow
        self.verifier = verifier
        self.number_changer = number_changer
        self.cooling_off = cooling_off
        self.catalog = catalog
        self.directory = directory
        self.default_region = default_region
        self.clock = clock
        self.default_target = default_target

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
        self._advance(turn, self.flow.start)
        return turn

    def handle(self, state: CallState, event: Event) -> Turn:
        """Apply a caller event to the stored state (which is left as it was)."""
        state = copy.deepcopy(state)
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
            self._on_input(turn, node, event.digits)
        elif isinstance(event, DialResult) and isinstance(node, TransferNode):
            self._after_transfer(turn, node, event)
        else:
            return self.replay(state)
        return turn

    def replay(self, state: CallState) -> Turn:
        """Repeat what the call is waiting on, with no side effect."""
        turn = Turn(copy.deepcopy(state))
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
            else:
                raise CallError(f"call {state.call_sid} waits on {state.node!r}, which cannot wait")
        return turn

    # ------------------------------------------------------------ running nodes

    def _advance(self, turn: Turn, node_id: str) -> None:
        for _ in range(MAX_HOPS):
            node = self.flow.nodes[node_id]
            turn.state.node = node_id
            enter = _ENTER.get(type(node))
            if enter is None:  # an input node: ask and wait
                assert isinstance(node, InputNode)
                self._ask(turn, node)
                return
            next_id = enter(self, turn, node)
            if next_id is None:
                return
            node_id = next_id
        raise CallError(f"flow {self.flow.name} ran {MAX_HOPS} nodes without waiting")

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
                self._say(turn, node.prompt, language) for language in node.options.values()
            )
        else:
            prompts = (self._say(turn, self._prompt_key(state, node)),)
        code_length = self.verifier.code_length if self.verifier else None
        num_digits, finish_on_key = _keypad(node, code_length)
        return Gather(prompts, state.step, node.timeout, num_digits, finish_on_key)

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

    def _on_input(self, turn: Turn, node: InputNode, digits: str | None) -> None:
        state = turn.state
        state.slots.pop("callback", None)
        if (
            not digits
            and isinstance(node, CheckCallbackCodeNode)
            and self._callback_silence(turn, node)
        ):
            return
        if not digits:
            silences = state.silences[node.id] = state.silences.get(node.id, 0) + 1
            if silences < 2:  # no input repeats the prompt once…
                self._ask(turn, node)
                return
            self._leave(state, node)  # …then takes the safe default
            state.failure = state.failure or "no_input"
            self._advance(turn, node.no_input)
            return
        if "*" in digits:  # * repeats the prompt anywhere, and costs no try
            self._ask(turn, node)
            return
        result = _ON_INPUT[type(node)](self, turn, node, digits)
        if isinstance(result, str):
            self._leave(state, node)
            self._advance(turn, result)
            return
        tries = state.tries[node.id] = state.tries.get(node.id, 0) + 1
        if tries >= node.max_tries:
            self._leave(state, node)
            state.failure = _FAILURES.get(type(node), "too_many_tries")
            self._advance(turn, node.too_many_tries)
        else:
            self._advance(turn, node.invalid)

    def _callback_silence(self, turn: Turn, node: CheckCallbackCodeNode) -> bool:
        """Silence while the call-back runs is waiting, not a failure; once it has ended
        unanswered, busy or failed, say so. True when handled here."""
        state = turn.state
        status = self.number_changer.callback_status(state) if self.number_changer else "failed"
        if status == "waiting":
            state.slots["callback"] = "waiting"
            self._ask(turn, node)
            return True
        exits = {"not_answered": node.not_answered, "busy": node.busy, "failed": node.failed}
        if status in exits:
            self._leave(state, node)
            state.failure = f"callback_{status}"
            self._advance(turn, exits[status])
            return True
        return False  # the code was read out: an ordinary silence

    def fresh_code(self, state: CallState) -> bool:
        """Full verification on this call — the account digits, and a code passed within
        FRESH_VERIFICATION seconds — whatever path the flow took to get here."""
        now = self.clock()
        has_digits = any(method.startswith("account") for method, _ in state.methods)
        return has_digits and any(
            method.startswith("code") and now - at <= FRESH_VERIFICATION
            for method, at in state.methods
        )

    def may_change_number(self, state: CallState) -> AccountView | None:
        """The account whose number may change now: fresh full verification, and no
        change of the number on file during its cooling-off period. Checked again by
        every number-change node, so no flow path (a re-verification detour, say)
        can skip it; None when it may not."""
        if state.account_id is None or not self.fresh_code(state):
            return None
        accounts = self.directory.accounts_by_ids([state.account_id])
        if not accounts or self.changed_recently(accounts[0]):
            return None
        return accounts[0]

    def changed_recently(self, account: AccountView) -> bool:
        """The account's number changed within the cooling-off period."""
        changed = account.phone_changed_at
        return changed is not None and self.clock() - changed < self.cooling_off

    @staticmethod
    def _leave(state: CallState, node: Node) -> None:
        state.tries.pop(node.id, None)
        state.silences.pop(node.id, None)

    def _after_transfer(self, turn: Turn, node: TransferNode, result: DialResult) -> None:
        if result.status in DONE_STATUSES:
            turn.state.ended = True
            turn.instructions.append(Hangup())
        else:
            self._advance(turn, node.unanswered)

    def _limit_transfer(self, turn: Turn) -> None:
        """Too many prompts in one call: stop asking and hand over to people."""
        state = turn.state
        state.node = LIMIT_TRANSFER
        state.failure = state.failure or "input_limit"
        state.transfer_reason = "error"
        state.step += 1
        turn.instructions.append(Transfer(self.default_target, state.step))

    def _after_limit_transfer(self, turn: Turn, result: DialResult) -> None:
        if result.status not in DONE_STATUSES:
            turn.instructions.append(self._say(turn, "agents_unavailable"))
        turn.state.ended = True
        turn.instructions.append(Hangup())

    # ------------------------------------------------------------ speaking

    def _say(
        self,
        turn: Turn,
        key: str,
        language: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Say:
        lang = language or turn.state.language
        text = self.catalog.text(lang, key)
        if "{" in text:
            values = self._prompt_values(turn.state)
            values.update(extra or {})
            text = text.format_map(_Blank(values))
        return Say(text, lang, self.catalog.voice(lang))

    def _prompt_values(self, state: CallState) -> dict[str, str]:
        """Account facts for prompts — only at full verification (digits and a code).

        Caller ID is spoofable and four digits are guessable, so a name is never
        spoken to a caller who has not also proven possession of the phone.
        """
        if state.verification != "code" or state.account_id is None:
            return {}
        accounts = self.directory.accounts_by_ids([state.account_id])
        if not accounts:
            return {}
        values = {"first_name": accounts[0].first_name}
        if "new_number_spoken" in state.slots:
            values["new_number"] = state.slots["new_number_spoken"]
        return values


class _Blank(dict[str, str]):
    """Placeholders with no value read as nothing rather than failing mid-call."""

    def __missing__(self, key: str) -> str:
        return ""


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


# ---------------------------------------------------------------- node kinds
# Nodes that run without waiting: return the next node id, or None to stop the turn.


def _enter_say(engine: Engine, turn: Turn, node: SayNode) -> str:
    turn.instructions.append(engine._say(turn, node.prompt))
    return node.next


def _enter_branch(engine: Engine, turn: Turn, node: BranchNode) -> str:
    value = _FACTS[node.on](engine, turn.state)
    return node.cases.get(value, node.default)


def _enter_identify(engine: Engine, turn: Turn, node: IdentifyCallerNode) -> str:
    state = turn.state
    if state.caller is None:
        state.identity = "withheld"
        return node.withheld
    accounts = engine.directory.accounts_for_phone(state.caller)
    state.candidates = [account.id for account in accounts][:MAX_CANDIDATES]
    if not accounts:
        state.identity = "unknown_number"
        return node.unknown_number
    state.identity = "one_account" if len(accounts) == 1 else "several_accounts"
    return node.one_account if len(accounts) == 1 else node.several_accounts


def _enter_send_code(engine: Engine, turn: Turn, node: SendCodeNode) -> str:
    state = turn.state
    if engine.verifier is None or state.account_id is None:
        return node.no_channel
    outcome = engine.verifier.send_code(state, node.channel)
    if outcome == "sent":
        if node.channel != "email" and "number_changed_recently" in state.flags:
            _flag(state, "code_to_new_number")  # the agent should know what this code proves
        if node.prompt:
            turn.instructions.append(engine._say(turn, node.prompt))
        return node.sent
    if outcome == "line_in_use":
        return node.line_in_use or node.no_channel
    if outcome in ("rate_limited", "locked"):
        state.failure = "locked" if outcome == "locked" else "code_rate_limited"
        return node.rate_limited
    if outcome == "failed":
        state.failure = f"{node.channel}_failed"
        return node.failed
    return node.no_channel


def _enter_check_number_change(engine: Engine, turn: Turn, node: CheckNumberChangeNode) -> str:
    state = turn.state
    if state.account_id is None or not engine.fresh_code(state):
        return node.needs_code
    accounts = engine.directory.accounts_by_ids([state.account_id])
    if not accounts:
        return node.needs_code
    if engine.changed_recently(accounts[0]):
        state.failure = "number_changed_recently"
        return node.cooling_off
    return node.allowed


def _enter_start_callback(engine: Engine, turn: Turn, node: StartCallbackNode) -> str:
    state = turn.state
    account = engine.may_change_number(state)
    if engine.number_changer is None or account is None:
        return node.needs_code
    started = engine.number_changer.start(state, account)
    if started.outcome == "calling":
        if node.calling_prompt:
            turn.instructions.append(engine._say(turn, node.calling_prompt))
        return node.calling
    if started.outcome == "code_read" and started.code:
        digits = ", ".join(started.code)
        turn.instructions.append(
            engine._say(turn, node.read_code_prompt, extra={"code_digits": digits})
        )
        return node.code_read
    if started.outcome == "locked":
        state.failure = "locked"
        return node.locked or node.limited
    if started.outcome == "limited":
        state.failure = "callback_limited"
        return node.limited
    if started.outcome == "taken":
        state.failure = "recycled_number"
        return node.taken
    if started.outcome == "needs_code":
        return node.needs_code
    state.failure = "callback_failed"
    return node.failed


def _enter_transfer(engine: Engine, turn: Turn, node: TransferNode) -> None:
    state = turn.state
    state.transfer_reason = node.reason
    if node.prompt:
        turn.instructions.append(engine._say(turn, node.prompt))
    state.step += 1
    turn.instructions.append(Transfer(node.destination or engine.default_target, state.step))
    return None


def _enter_hangup(engine: Engine, turn: Turn, node: HangupNode) -> None:
    if node.prompt:
        turn.instructions.append(engine._say(turn, node.prompt))
    turn.state.ended = True
    turn.instructions.append(Hangup())
    return None


_ENTER: Mapping[type[Node], Callable[..., str | None]] = {
    SayNode: _enter_say,
    BranchNode: _enter_branch,
    IdentifyCallerNode: _enter_identify,
    TransferNode: _enter_transfer,
    SendCodeNode: _enter_send_code,
    CheckNumberChangeNode: _enter_check_number_change,
    StartCallbackNode: _enter_start_callback,
    HangupNode: _enter_hangup,
}

# Input nodes: return the next node id, or INVALID.


def _input_menu(engine: Engine, turn: Turn, node: MenuNode, digits: str) -> str | _Invalid:
    return node.options.get(digits, INVALID)


def _input_language(
    engine: Engine, turn: Turn, node: ChooseLanguageNode, digits: str
) -> str | _Invalid:
    language = node.options.get(digits)
    if language is None:
        return INVALID
    turn.state.language = language
    return node.next


def _input_collect(
    engine: Engine, turn: Turn, node: CollectDigitsNode, digits: str
) -> str | _Invalid:
    if not digits.isdigit() or not node.min_length <= len(digits) <= node.max_length:
        return INVALID
    turn.state.slots[node.save_as] = digits
    return node.next


def _input_account_digits(
    engine: Engine, turn: Turn, node: CheckAccountDigitsNode, digits: str
) -> str | _Invalid:
    state = turn.state
    if not digits.isdigit():
        return INVALID
    if node.mode == "last4":
        if len(digits) != 4 or not state.candidates:
            return INVALID
        accounts = engine.directory.accounts_by_ids(state.candidates)
        # Compare against every candidate, in constant time each.
        matches = [
            a for a in accounts if hmac.compare_digest(a.number[-4:].encode(), digits.encode())
        ]
        if len(matches) > 1:
            assert node.ambiguous is not None  # validation requires it in last4 mode
            return node.ambiguous
        if not matches:
            return INVALID
        account, method = matches[0], "account_digits"
    else:
        if not 4 <= len(digits) <= 32:
            return INVALID
        found = engine.directory.account_by_number(digits)
        if found is None:
            return INVALID
        account, method = found, "account_number"
    state.account_id = account.id
    state.failure = None
    state.verify(method, engine.clock())
    if state.caller is not None and account.phone != state.caller:
        _flag(state, "caller_id_mismatch")
    if engine.changed_recently(account):
        _flag(state, "number_changed_recently")
    return node.ok


def _input_code(engine: Engine, turn: Turn, node: CheckCodeNode, digits: str) -> str | _Invalid:
    state = turn.state
    if digits in node.options:  # a single key for another choice: resend, another channel
        return node.options[digits]
    if engine.verifier is None or state.account_id is None:
        return node.expired
    outcome = engine.verifier.check_code(state, digits)
    if outcome == "ok":
        state.failure = None
        return node.ok
    if outcome == "locked":
        state.failure = "locked"
        return node.locked
    if outcome == "expired":
        return node.expired
    return INVALID


def _input_new_number(
    engine: Engine, turn: Turn, node: CollectNewNumberNode, digits: str
) -> str | _Invalid:
    state = turn.state
    account = engine.may_change_number(state)
    if engine.number_changer is None or account is None:
        return node.needs_code
    outcome = engine.number_changer.check_number(state, account, digits)
    if outcome == "ok":
        state.slots.pop("number_problem", None)
        return node.ok
    if outcome == "taken":
        state.failure = "recycled_number"
        return node.taken
    state.slots["number_problem"] = outcome
    return INVALID


def _input_callback_code(
    engine: Engine, turn: Turn, node: CheckCallbackCodeNode, digits: str
) -> str | _Invalid:
    state = turn.state
    if digits in node.options:
        return node.options[digits]
    if engine.number_changer is None:
        return node.expired
    outcome = engine.number_changer.confirm(state, digits)
    exits = {
        "ok": node.ok,
        "conflict": node.conflict,
        "taken": node.taken or node.conflict,
        "expired": node.expired,
        "locked": node.locked,
    }
    if outcome in exits:
        if outcome in ("locked", "taken"):
            state.failure = "locked" if outcome == "locked" else "recycled_number"
        return exits[outcome]
    return INVALID


def _flag(state: CallState, flag: str) -> None:
    if flag not in state.flags:
        state.flags.append(flag)


_ON_INPUT: Mapping[type[Node], Callable[..., str | _Invalid]] = {
    MenuNode: _input_menu,
    ChooseLanguageNode: _input_language,
    CollectDigitsNode: _input_collect,
    CheckAccountDigitsNode: _input_account_digits,
    CheckCodeNode: _input_code,
    CollectNewNumberNode: _input_new_number,
    CheckCallbackCodeNode: _input_callback_code,
}

# Why verification failed, by the node kind that gave up (for the agent).
_FAILURES: Mapping[type[Node], str] = {
    CheckAccountDigitsNode: "digits_failed",
    CheckCodeNode: "code_failed",
    CollectNewNumberNode: "new_number_failed",
    CheckCallbackCodeNode: "callback_code_failed",
}

_FACTS: Mapping[str, Callable[[Engine, CallState], str]] = {
    "identity": lambda engine, state: state.identity,
    "verification": lambda engine, state: state.verification,
    "caller_id": lambda engine, state: "withheld" if state.caller is None else "present",
    "language": lambda engine, state: state.language,
    "fresh_code": lambda engine, state: "yes" if engine.fresh_code(state) else "no",
}
assert set(_FACTS) == set(FACTS) | {"language"}, "every branchable fact needs a getter"
assert all(
    (kind in _ENTER) != (kind in _ON_INPUT) and (kind in _ON_INPUT) == issubclass(kind, InputNode)
    for kind in NODE_TYPES.values()
), "every node kind of the registry needs exactly one behaviour here"
