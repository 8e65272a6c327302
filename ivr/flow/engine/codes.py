"""Node handlers for one-time codes: sending one to a channel on file, and
checking the one the caller keys in.

The codes themselves (generation, attempts, lockout) belong to the Verifier;
these handlers only turn its outcomes into the flow's exits and the failure
reason the agent will hear.
"""

from __future__ import annotations

from ivr.flow.engine.context import INVALID, EngineContext, Invalid, Turn, flag
from ivr.flow.model import CheckCodeNode, SendCodeNode
from ivr.flow.timeline import CODE_CHECKED, CODE_SENT

# Said after the "sent" prompt when the provider took the send without answering in
# time: the code may still arrive, and stays valid. Prompt files published before this
# prompt existed lack it; the call then goes on without it.
MAY_TAKE_A_MOMENT = "code_may_take_a_moment"


def enter_send_code(engine: EngineContext, turn: Turn, node: SendCodeNode) -> str:
    state = turn.state
    if engine.verifier is None or state.account_id is None:
        engine.note(turn, CODE_SENT, channel=node.channel, result="no_account")
        return "no_channel"
    outcome = engine.verifier.send_code(state, node.channel)
    engine.note(turn, CODE_SENT, channel=node.channel, result=outcome)
    if outcome in ("sent", "sent_uncertain"):
        if node.channel != "email" and "number_changed_recently" in state.flags:
            flag(state, "code_to_new_number")  # the agent should know what this code proves
        if node.prompt:
            turn.instructions.append(engine.say(turn, node.prompt))
        texts = engine.catalog.languages[state.language].texts
        if outcome == "sent_uncertain" and MAY_TAKE_A_MOMENT in texts:
            turn.instructions.append(engine.say(turn, MAY_TAKE_A_MOMENT))
        return "sent"
    if outcome == "line_in_use":
        return "line_in_use" if node.line_in_use else "no_channel"
    if outcome in ("rate_limited", "locked"):
        state.failure = "locked" if outcome == "locked" else "code_rate_limited"
        return "rate_limited"
    if outcome == "failed":
        state.failure = f"{node.channel}_failed"
        return "failed"
    return "no_channel"


def input_code(
    engine: EngineContext, turn: Turn, node: CheckCodeNode, digits: str
) -> str | Invalid:
    state = turn.state
    if digits in node.options:  # a single key for another choice: resend, another channel
        return f"options.{digits}"
    if engine.verifier is None or state.account_id is None:
        return "expired"
    outcome = engine.verifier.check_code(state, digits)
    engine.note(turn, CODE_CHECKED, result=outcome if outcome != "invalid" else "wrong")
    if outcome == "ok":
        state.failure = None
        return "ok"
    if outcome == "locked":
        state.failure = "locked"
        return "locked"
    if outcome == "expired":
        return "expired"
    return INVALID
