"""Node handlers for changing the number on file: the gate, the new number, the
call-back to it and the code that call-back reads out.

The steps that act on the account (the new number, the call-back) check again
whether the number may change now, so no path through a flow reaches them
without fresh full verification; whether a keyed code confirms the change is
the NumberChanger's to judge.
"""

from __future__ import annotations

from ivr.flow.engine.context import INVALID, EngineContext, Invalid, Turn
from ivr.flow.model import (
    CheckCallbackCodeNode,
    CheckNumberChangeNode,
    CollectNewNumberNode,
    StartCallbackNode,
)


def enter_check_number_change(
    engine: EngineContext, turn: Turn, node: CheckNumberChangeNode
) -> str:
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


def enter_start_callback(engine: EngineContext, turn: Turn, node: StartCallbackNode) -> str:
    state = turn.state
    account = engine.may_change_number(state)
    if engine.number_changer is None or account is None:
        return node.needs_code
    started = engine.number_changer.start(state, account)
    if started.outcome == "calling":
        if node.calling_prompt:
            turn.instructions.append(engine.say(turn, node.calling_prompt))
        return node.calling
    if started.outcome == "code_read" and started.code:
        digits = ", ".join(started.code)
        turn.instructions.append(
            engine.say(turn, node.read_code_prompt, extra={"code_digits": digits})
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


def input_new_number(
    engine: EngineContext, turn: Turn, node: CollectNewNumberNode, digits: str
) -> str | Invalid:
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


def input_callback_code(
    engine: EngineContext, turn: Turn, node: CheckCallbackCodeNode, digits: str
) -> str | Invalid:
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
