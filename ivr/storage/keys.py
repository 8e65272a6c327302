"""Every Redis key name the service uses, and nothing else.

Keys of one call share the hash tag `{call:<CallSid>}` and keys of one account
share `{acct:<id>}`, so each group lands in one Redis Cluster slot and can be
used together in a transaction or script. Keys used alone (the live-flow pointer, the
job markers) need no tag. Any key built elsewhere (ivr.staff.keys, ivr.jobs.queue,
ivr.verification.digits, ivr.agent.transfers) starts with PREFIX and tags its groups
the same way.

PREFIX comes from IVR_REDIS_PREFIX (default "ivr"), read from the process environment
when this module is first imported: key names are built by plain functions with no app
at hand, and one process serves one deployment. It lets several deployments share one
Redis or Redis Cluster, which has only database 0, and gives each test run its own
keys. ivr.config checks the value at boot: it may not contain braces, which would
become the hash tag of every key.
"""

from __future__ import annotations

import os

DEFAULT_PREFIX = "ivr"
PREFIX = os.environ.get("IVR_REDIS_PREFIX", "").strip() or DEFAULT_PREFIX


def pattern() -> str:
    """A SCAN pattern matching every key of this deployment (and nothing of another)."""
    return f"{PREFIX}:*"


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


def call_timeline(call_sid: str) -> str:
    """The steps of a running call (a list of JSON steps, ivr.flow.timeline), appended
    with each save of its state and written to the database when the call ends."""
    return f"{PREFIX}:{{call:{call_sid}}}:timeline"


def call_summary(call_sid: str) -> str:
    """A copy of a call's summary (masked caller, account, verification), kept with its
    timeline so a call whose status never came can be closed after its state expired."""
    return f"{PREFIX}:{{call:{call_sid}}}:summary"


def open_calls() -> str:
    """Calls started and not yet closed (a sorted set: CallSid by start time), so the
    sweeper can close those whose status callback never came."""
    return f"{PREFIX}:calls:open"


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


def queue_callback_waiting(account_id: int) -> str:
    """The id of an account's waiting call-back chosen on hold (one at a time), so a
    second call of theirs is not offered another; under the account's tag, so erasing
    the customer deletes it with their other keys."""
    return f"{PREFIX}:{{acct:{account_id}}}:queue_callback"


def lockout(account_id: int) -> str:
    """Present while an account is locked out of code verification."""
    return f"{PREFIX}:{{acct:{account_id}}}:locked"


def live_flow(flow: str) -> str:
    """The version new calls of a flow start on (a short-lived copy of the database's)."""
    return f"{PREFIX}:flows:live:{flow}"
