"""Node handlers that only steer the call: speak, branch, menus, plain digits,
and the two ways a call leaves the flow (a transfer to people, a hang-up).

Like every handler, they return the label of the exit taken ("next", "options.1",
"cases.unknown_number", "default"): the engine follows it and records it on the
call's timeline, so the funnel counts each exit even when two lead to one node.

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
from ivr.flow.timeline import HANGUP

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
    return "next"


def enter_branch(engine: EngineContext, turn: Turn, node: BranchNode) -> str:
    value = FACT_GETTERS[node.on](engine, turn.state)
    return f"cases.{value}" if value in node.cases else "default"


def enter_transfer(engine: EngineContext, turn: Turn, node: TransferNode) -> None:
    state = turn.state
    state.transfer_reason = node.reason
    if node.prompt:
        turn.instructions.append(engine.say(turn, node.prompt))
    state.step += 1
    target = node.destination or engine.default_target
    engine.note_transfer(turn, target, node.id, node.reason)
    turn.instructions.append(Transfer(target, state.step))
    return None


def enter_hangup(engine: EngineContext, turn: Turn, node: HangupNode) -> None:
    if node.prompt:
        turn.instructions.append(engine.say(turn, node.prompt))
    turn.state.ended = True
    engine.note(turn, HANGUP, node=node.id)
    turn.instructions.append(Hangup())
    return None


def input_menu(engine: EngineContext, turn: Turn, node: MenuNode, digits: str) -> str | Invalid:
    return f"options.{digits}" if digits in node.options else INVALID


def input_language(
    engine: EngineContext, turn: Turn, node: ChooseLanguageNode, digits: str
) -> str | Invalid:
    language = node.options.get(digits)
    if language is None:
        return INVALID
    turn.state.language = language
    return "next"


def input_collect(
    engine: EngineContext, turn: Turn, node: CollectDigitsNode, digits: str
) -> str | Invalid:
    if not (digits.isascii() and digits.isdigit()) or not (
        node.min_length <= len(digits) <= node.max_length
    ):
        return INVALID
    turn.state.slots[node.save_as] = digits
    return "next"
