"""Node handlers that find out who is calling: candidates by caller ID, then an
account proven by its digits.

Caller ID only narrows the search; it is the digits that set the account, and
a mismatch or a recent number change is flagged for the agent rather than
trusted or refused here.
"""

from __future__ import annotations

import hmac

from ivr.flow.engine.context import INVALID, EngineContext, Invalid, Turn, flag
from ivr.flow.model import CheckAccountDigitsNode, IdentifyCallerNode
from ivr.flow.state import MAX_CANDIDATES


def enter_identify(engine: EngineContext, turn: Turn, node: IdentifyCallerNode) -> str:
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


def input_account_digits(
    engine: EngineContext, turn: Turn, node: CheckAccountDigitsNode, digits: str
) -> str | Invalid:
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
        flag(state, "caller_id_mismatch")
    if engine.changed_recently(account):
        flag(state, "number_changed_recently")
    return node.ok
