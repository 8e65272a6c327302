"""Every Redis key name the service uses, and nothing else.

Keys of one call share the hash tag `{call:<CallSid>}` and keys of one account
share `{acct:<id>}`, so each group lands in one Redis Cluster slot and can be
used together in a transaction or script.
"""

from __future__ import annotations

PREFIX = "ivr"


def call_state(call_sid: str) -> str:
    """The JSON call state of one call."""
    return f"{PREFIX}:{{call:{call_sid}}}:state"


def call_lock(call_sid: str) -> str:
    """Held (a random token, with a TTL) while one webhook of the call runs its step."""
    return f"{PREFIX}:{{call:{call_sid}}}:lock"


def call_answer(call_sid: str) -> str:
    """The last TwiML answer of a call and the request it answered (JSON, short-lived):
    what a duplicate of that request gets."""
    return f"{PREFIX}:{{call:{call_sid}}}:answer"


def account_pattern(account_id: int) -> str:
    """A SCAN pattern matching every key of one account (codes, limits, pending change)."""
    return f"{PREFIX}:{{acct:{account_id}}}:*"


def account_failures(account_id: int) -> str:
    """Consecutive verification failures of one account (survives new calls)."""
    return f"{PREFIX}:{{acct:{account_id}}}:failures"


def code(account_id: int, purpose: str) -> str:
    """The live one-time code of an account for a purpose (a hash with its HMAC and tries)."""
    return f"{PREFIX}:{{acct:{account_id}}}:code:{purpose}"


def code_sends(account_id: int, purpose: str) -> str:
    """Send times (a sorted set) for a purpose in the rolling window without a successful check."""
    return f"{PREFIX}:{{acct:{account_id}}}:sends:{purpose}"


def code_sends_today(account_id: int, purpose: str, day: str) -> str:
    """Codes sent to an account for a purpose on one UTC day (the daily cap)."""
    return f"{PREFIX}:{{acct:{account_id}}}:sends:{purpose}:{day}"


def callback(callback_id: str) -> str:
    """One outbound call the service placed (JSON), by the opaque id in its webhook URLs."""
    return f"{PREFIX}:{{cb:{callback_id}}}:callback"


def number_change(account_id: int) -> str:
    """The pending change of an account's phone number (JSON), while its call-back runs."""
    return f"{PREFIX}:{{acct:{account_id}}}:number_change"


def lockout(account_id: int) -> str:
    """Present while an account is locked out of code verification."""
    return f"{PREFIX}:{{acct:{account_id}}}:locked"


def live_flow(flow: str) -> str:
    """The version new calls of a flow start on (a short-lived copy of the database's)."""
    return f"{PREFIX}:flows:live:{flow}"
