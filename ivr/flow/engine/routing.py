"""Node handlers that only steer the call: speak, branch, menus, plain digits,
and the two ways a call leaves the flow (a transfer to people, a hang-up).

None of them touches an account or a code, so a flow built only from these
needs none of the engine's services.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ivr.flow.engine.context import INVALID, EngineContext, Invalid, Turn
from ivr.flow.instructions import Hangup, Transfer
from ivr.flow.model import (
    FACTS,
    BranchNode,
    ChooseLanguageNode,
    CollectDigitsNode,
    HangupNode,
    MenuNode,
    SayNode,
    TransferNode,
)
from ivr.flow.state import CallState

# What a branch node can route on; the loader checks the values against model.FACTS.
FACT_GETTERS: Mapping[str, Callable[[EngineContext, CallState], str]] = {
    "identity": lambda engine, state: state.identity,
    "verification": lambda engine, state: state.verification,
    "caller_id": lambda engine, state: "withheld" if state.caller is None else "present",
    "language": lambda engine, state: state.language,
    "fresh_code": lambda engine, state: "yes" if engine.fresh_code(state) else "no",
}
assert set(FACT_GETTERS) == set(FACTS) | {"language"}, "every branchable fact needs a getter"


def enter_say(engine: EngineContext, turn: Turn, node: SayNode) -> str:
    turn.instructions.append(engine.say(turn, node.prompt))
    return node.next


def enter_branch(engine: EngineContext, turn: Turn, node: BranchNode) -> str:
    value = FACT_GETTERS[node.on](engine, turn.state)
    return node.cases.get(value, node.default)


def enter_transfer(engine: EngineContext, turn: Turn, node: TransferNode) -> None:
    state = turn.state
    state.transfer_reason = node.reason
    if node.prompt:
        turn.instructions.append(engine.say(turn, node.prompt))
    state.step += 1
    turn.instructions.append(Transfer(node.destination or engine.default_target, state.step))
    return None


def enter_hangup(engine: EngineContext, turn: Turn, node: HangupNode) -> None:
    if node.prompt:
        turn.instructions.append(engine.say(turn, node.prompt))
    turn.state.ended = True
    turn.instructions.append(Hangup())
    return None


def input_menu(engine: EngineContext, turn: Turn, node: MenuNode, digits: str) -> str | Invalid:
    return node.options.get(digits, INVALID)


def input_language(
    engine: EngineContext, turn: Turn, node: ChooseLanguageNode, digits: str
) -> str | Invalid:
    language = node.options.get(digits)
    if language is None:
        return INVALID
    turn.state.language = language
    return node.next


def input_collect(
    engine: EngineContext, turn: Turn, node: CollectDigitsNode, digits: str
) -> str | Invalid:
    if not (digits.isascii() and digits.isdigit()) or not (
        node.min_length <= len(digits) <= node.max_length
    ):
        return INVALID
    turn.state.slots[node.save_as] = digits
    return node.next
