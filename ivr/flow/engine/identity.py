"""Node handlers that find out who is calling: candidates by caller ID, then an
account proven by its digits.

Caller ID only narrows the search; it is the digits that set the account, and
a mismatch or a recent number change is flagged for the agent rather than
trusted or refused here.

Wrong digits are also counted across calls (the engine's DigitLimits): a call
whose accounts took too many is not asked for digits at all, and an entry made
after the limit was reached (on another call meanwhile) is not compared.
"""

from __future__ import annotations

import hmac

from ivr.flow.engine.context import INVALID, EngineContext, Invalid, Turn, flag
from ivr.flow.engine.ports import DigitAttempt
from ivr.flow.model import CheckAccountDigitsNode, IdentifyCallerNode
from ivr.flow.state import MAX_CANDIDATES, CallState


def enter_identify(engine: EngineContext, turn: Turn, node: IdentifyCallerNode) -> str:
    state = turn.state
    if state.caller is None:
        state.identity = "withheld"
        return "withheld"
    accounts = engine.directory.accounts_for_phone(state.caller)
    state.candidates = [account.id for account in accounts][:MAX_CANDIDATES]
    if not accounts:
        state.identity = "unknown_number"
        return "unknown_number"
    state.identity = "one_account" if len(accounts) == 1 else "several_accounts"
    return state.identity


def before_account_digits(
    engine: EngineContext, turn: Turn, node: CheckAccountDigitsNode
) -> str | None:
    """Before asking: a call whose accounts (or, in full mode, whose number) are locked
    goes on to the locked exit without hearing the digits prompt; None asks as usual."""
    if _is_locked(engine, turn.state, node):
        return _locked(turn.state, node)
    return None


def input_account_digits(
    engine: EngineContext, turn: Turn, node: CheckAccountDigitsNode, digits: str
) -> str | Invalid:
    state = turn.state
    if not (digits.isascii() and digits.isdigit()):
        return INVALID
    limits = engine.digit_limits
    if node.mode == "last4":
        if len(digits) != 4 or not state.candidates:
            return INVALID
        accounts = engine.directory.accounts_by_ids(state.candidates)
        ids = [a.id for a in accounts]
        # Reserved before comparing: calls made at the same moment cannot all get a
        # guess at the last try (locked by another call meanwhile: not compared).
        attempt = limits.attempt(ids, state.caller) if limits else None
        if attempt is not None and attempt.refused:
            return _locked(state, node)
        # Compare against every candidate, in constant time each.
        matches = [
            a for a in accounts if hmac.compare_digest(a.number[-4:].encode(), digits.encode())
        ]
        if matches and attempt is not None:
            attempt.matched()  # right (or ambiguous): no failure
        if len(matches) > 1:
            assert node.ambiguous is not None  # validation requires it in last4 mode
            return "ambiguous"
        if not matches:
            return _wrong(attempt, state, node)
        account, method = matches[0], "account_digits"
    else:
        if not 4 <= len(digits) <= 32:
            return INVALID
        found = engine.directory.account_by_number(digits)
        if found is None:
            # A number that matches nothing counts against the calling number.
            attempt = limits.attempt([], state.caller) if limits else None
            if attempt is not None and attempt.refused:
                return _locked(state, node)
            return _wrong(attempt, state, node)
        # A right number is no failure: nothing to reserve, but a locked account (or a
        # calling number locked for wrong numbers) takes no digits now.
        if limits is not None and limits.locked([found.id], state.caller):
            return _locked(state, node)
        account, method = found, "account_number"
    # Kept for prompts after full verification (spoken only then), so the steps that
    # follow need no lookup; replaced with the account, never another account's name.
    state.first_name = account.first_name
    state.account_id = account.id
    state.failure = None
    state.verify(method, engine.clock())
    if state.caller is not None and account.phone != state.caller:
        flag(state, "caller_id_mismatch")
    if engine.changed_recently(account):
        flag(state, "number_changed_recently")
    return "ok"


def _is_locked(engine: EngineContext, state: CallState, node: CheckAccountDigitsNode) -> bool:
    """Whether this node's digits would be checked against a locked account or number."""
    limits = engine.digit_limits
    if limits is None:
        return False
    if node.mode == "last4":
        return bool(state.candidates) and limits.locked(state.candidates, None)
    return limits.locked([], state.caller)


def _wrong(
    attempt: DigitAttempt | None, state: CallState, node: CheckAccountDigitsNode
) -> str | Invalid:
    """A well-formed entry that matched nothing: its reservation stays, counted (against
    the accounts compared, or else the calling number); at the limit, the locked exit."""
    mode = "last4" if node.mode == "last4" else "account_number"
    if attempt is not None and attempt.wrong(state.call_sid, mode):
        return _locked(state, node)
    return INVALID


def _locked(state: CallState, node: CheckAccountDigitsNode) -> str:
    state.failure = "digits_locked"
    flag(state, "digits_locked")
    return node.locked_exit_label
