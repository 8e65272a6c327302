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
from ivr.flow.timeline import CALLBACK, CALLBACK_CODE


def enter_check_number_change(
    engine: EngineContext, turn: Turn, node: CheckNumberChangeNode
) -> str:
    state = turn.state
    if state.account_id is None or not engine.fresh_code(state):
        return "needs_code"
    accounts = engine.directory.accounts_by_ids([state.account_id])
    if not accounts:
        return "needs_code"
    if engine.changed_recently(accounts[0]):
        state.failure = "number_changed_recently"
        return "cooling_off"
    return "allowed"


def enter_start_callback(engine: EngineContext, turn: Turn, node: StartCallbackNode) -> str:
    state = turn.state
    account = engine.may_change_number(state)
    if engine.number_changer is None or account is None:
        return "needs_code"
    started = engine.number_changer.start(state, account)
    engine.note(turn, CALLBACK, result=started.outcome)
    if started.outcome == "calling":
        if node.calling_prompt:
            turn.instructions.append(engine.say(turn, node.calling_prompt))
        return "calling"
    if started.outcome == "code_read" and started.code:
        digits = ", ".join(started.code)
        turn.instructions.append(
            engine.say(turn, node.read_code_prompt, extra={"code_digits": digits})
        )
        return "code_read"
    if started.outcome == "locked":
        state.failure = "locked"
        return "locked" if node.locked else "limited"
    if started.outcome == "limited":
        state.failure = "callback_limited"
        return "limited"
    if started.outcome == "taken":
        state.failure = "recycled_number"
        return "taken"
    if started.outcome == "needs_code":
        return "needs_code"
    state.failure = "callback_failed"
    return "failed"


def input_new_number(
    engine: EngineContext, turn: Turn, node: CollectNewNumberNode, digits: str
) -> str | Invalid:
    state = turn.state
    account = engine.may_change_number(state)
    if engine.number_changer is None or account is None:
        return "needs_code"
    outcome = engine.number_changer.check_number(state, account, digits)
    if outcome == "ok":
        state.slots.pop("number_problem", None)
        return "ok"
    if outcome == "taken":
        state.failure = "recycled_number"
        return "taken"
    state.slots["number_problem"] = outcome
    return INVALID


def input_callback_code(
    engine: EngineContext, turn: Turn, node: CheckCallbackCodeNode, digits: str
) -> str | Invalid:
    state = turn.state
    if digits in node.options:
        return f"options.{digits}"
    if engine.number_changer is None:
        return "expired"
    outcome = engine.number_changer.confirm(state, digits)
    exits = {
        "ok": "ok",
        "conflict": "conflict",
        "taken": "taken" if node.taken else "conflict",
        "expired": "expired",
        "locked": "locked",
    }
    engine.note(turn, CALLBACK_CODE, result=outcome if outcome in exits else "wrong")
    if outcome in exits:
        if outcome in ("locked", "taken"):
            state.failure = "locked" if outcome == "locked" else "recycled_number"
        return exits[outcome]
    return INVALID
