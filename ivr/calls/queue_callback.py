"""Call-backs chosen on hold ("call me back instead of holding"): the record and the timing.

A fully verified caller holding in a queue may press 1 to hang up and keep their place.
What the call-back needs later is kept here, in Redis under a random id (the only thing
its webhook URLs carry): the verification the caller earned (carried over to the
call-back's leg), the flow version and transfer node they held at, and how the
attempts went. Never a phone number: the job reads the number on file from the
database, by account id, when it places the call — never a number keyed in, never the
caller ID.

When: the caller's turn, estimated from what Twilio told the waitUrl (position times
average wait), bounded to [MIN_DELAY, MAX_DELAY]. A call that is not answered (or not
taken with "1") is tried once more RETRY_AFTER seconds later; then a text says we tried.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from ivr.flow.model.transfer import MAX_NAME_LENGTH
from ivr.flow.state import CallState
from ivr.storage import keys, kv

# Bounds of the wait before the call-back rings (seconds), and the guess without facts.
MIN_DELAY, MAX_DELAY, DEFAULT_DELAY = 30, 1800, 120
RETRY_AFTER = 180  # seconds before the second (last) try
ATTEMPTS = 2  # tries in all, then the text
RECORD_TTL = 6 * 3600  # past the longest wait, both tries and the text
PRIORITY_SUFFIX = "-callbacks"
CALLED_BACK = "called_back"  # the flag on the call-back leg (whisper, agent context)
REQUESTED = "callback_requested"  # the flag on the call that chose it
CALLER_ID_MISMATCH = "caller_id_mismatch"  # the original call's flag, not the leg's
# TaskRouter: a call-back's Task goes ahead of new callers' (which have priority 0).
TASK_PRIORITY = 100
# Statuses of a record: waiting → ringing → answered → joined; or failed → texted.
WAITING, RINGING, ANSWERED, JOINED, GAVE_UP, TEXTED = (
    "waiting",
    "ringing",
    "answered",
    "joined",
    "gave_up",
    "texted",
)
FINAL = frozenset({JOINED, GAVE_UP, TEXTED})


def priority_queue(name: str) -> str:
    """The dedicated queue of a plain queue's call-backs, which the agent line takes first
    (cut to Twilio's 64 characters)."""
    return name[: MAX_NAME_LENGTH - len(PRIORITY_SUFFIX)] + PRIORITY_SUFFIX


def delay(position: int | None, average: int | None) -> int:
    """Seconds until the caller's turn: position times average wait, bounded."""
    if position is None or average is None:
        return DEFAULT_DELAY
    return max(MIN_DELAY, min(MAX_DELAY, position * average))


@dataclass
class QueueCallback:
    """One chosen call-back and its progress; holds no number, no digits, no code."""

    id: str
    call_sid: str  # the call that chose it
    account_id: int
    flow: str
    version: str
    language: str
    node: str  # the transfer node the caller held at
    methods: list[tuple[str, float]]
    transfer_reason: str | None
    flags: list[str]
    first_name: str | None
    created: float
    attempts: int = 0
    status: str = WAITING
    leg_sid: str | None = None  # CallSid of the latest call-back leg
    answered: bool = False  # the latest leg was answered
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> QueueCallback:
        data: dict[str, Any] = json.loads(raw)
        data["methods"] = [tuple(item) for item in data.get("methods") or []]
        return cls(**data)

    def leg_state(self, call_sid: str, started_at: float) -> CallState:
        """The call-back leg's call state: the caller's verification carried over, at the
        transfer node they held at, flagged "called back on the number on file"."""
        # Not "caller ID not on file": this leg rang the number on file itself.
        flags = [flag for flag in self.flags if flag not in (REQUESTED, CALLER_ID_MISMATCH)]
        return CallState(
            call_sid=call_sid,
            flow=self.flow,
            version=self.version,
            language=self.language,
            node=self.node,
            started_at=started_at,
            step=1,
            identity="one_account",
            account_id=self.account_id,
            candidates=[self.account_id],
            verification="code",
            methods=list(self.methods),
            transfer_reason=self.transfer_reason,
            flags=[*flags, CALLED_BACK],
            first_name=self.first_name,
        )


def from_state(state: CallState, now: float) -> QueueCallback:
    """A new call-back for a fully verified caller holding at a transfer."""
    if state.account_id is None or state.verification != "code":
        raise ValueError("a call-back is only for a fully verified caller")
    return QueueCallback(
        id=secrets.token_urlsafe(18),
        call_sid=state.call_sid,
        account_id=state.account_id,
        flow=state.flow,
        version=state.version,
        language=state.language,
        node=state.node,
        methods=list(state.methods),
        transfer_reason=state.transfer_reason,
        flags=list(state.flags),
        first_name=state.first_name,
        created=now,
    )


def _key(callback_id: str) -> str:
    return f"{keys.PREFIX}:queue_callback:{callback_id}"


def pattern() -> str:
    """A SCAN pattern matching every call-back record (the customer erase reads them)."""
    return f"{keys.PREFIX}:queue_callback:*"


def claim(callback: QueueCallback) -> bool:
    """Reserve the account's one waiting call-back for `callback`; False when another of
    theirs waits already (a second call of the same customer is not offered one)."""
    with kv.unavailable_as_storage_error():
        taken = kv.client().set(
            keys.queue_callback_waiting(callback.account_id), callback.id, nx=True, ex=RECORD_TTL
        )
    return bool(taken)


def waiting(account_id: int) -> bool:
    """Whether a call-back of this account waits (booked and not yet over)."""
    with kv.unavailable_as_storage_error():
        return bool(kv.client().exists(keys.queue_callback_waiting(account_id)))


def release(callback: QueueCallback) -> None:
    """The call-back is over (joined, given up): the account may book another. Only this
    call-back's reservation is released, never a newer one's."""
    name = keys.queue_callback_waiting(callback.account_id)
    with kv.unavailable_as_storage_error():
        client = kv.client()
        current = client.get(name)
        if (
            current is not None
            and (current.decode() if isinstance(current, bytes) else current) == callback.id
        ):
            client.delete(name)


def save(callback: QueueCallback) -> None:
    with kv.unavailable_as_storage_error():
        kv.client().set(_key(callback.id), callback.to_json(), ex=RECORD_TTL)


def load(callback_id: str) -> QueueCallback | None:
    """The call-back with this id, or None (expired, never existed, or a garbled id)."""
    if not callback_id or len(callback_id) > 64:
        return None
    with kv.unavailable_as_storage_error():
        raw = kv.client().get(_key(callback_id))
    return QueueCallback.from_json(raw) if raw else None
