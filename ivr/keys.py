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


def account_failures(account_id: int) -> str:
    """Consecutive verification failures of one account (survives new calls)."""
    return f"{PREFIX}:{{acct:{account_id}}}:failures"
