"""The pending voicemail of a call: who is leaving a message, kept in Redis from the
moment the `voicemail` node starts recording, for the webhooks that may come after
the call's state is gone.

Most callers end a message by hanging up. Twilio then ends the call (its final status
callback, `/voice/status`, takes the call's state and timeline away for its record)
and requests the `<Record>` action afterwards, with `Digits=hangup`, and the recording
status callback later still. Without this record those webhooks would know only the
webhook's `From`: the message would lose its account, verification, language and
flow, and the call's record its voicemail step.

So the step that renders the `<Record>` (`ivr.voice.views._act`) writes it, in the
same round trip as the step's own save (a deferred write; on a Redis Cluster a
pipeline right after it): only calls that reach voicemail pay, and nothing more than
that save. It holds what a message keeps of its caller (masked; the account only for
a verified call, as `store.caller_of` decides) and what the call's record needs for
a late step: the node, when the call started, the node's maximum length. And,
when the action came before the call's record was written, the steps that wait for
it (`late`, see `ivr.voicemail.late`).

It lives `LATE_WINDOW` seconds past the message's longest end, under the call's hash
tag (one slot with the call's own keys); nothing reads it once it expires.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from ivr.errors import StorageUnavailable
from ivr.flow.instructions import Record
from ivr.flow.state import CallState
from ivr.flow.timeline import Step
from ivr.storage import deferred, keys, kv
from ivr.voicemail.store import Caller, caller_of

log = logging.getLogger(__name__)

# Seconds a pending voicemail outlives the message's longest end: the window for the
# action after a hang-up, Twilio's recording status callback (it comes once the audio
# is processed), and a late step waiting for the call's record to be written.
LATE_WINDOW = 3600


def key(call_sid: str) -> str:
    """The pending voicemail of a call (the call's hash tag: the slot of its state)."""
    return f"{keys.PREFIX}:{{call:{call_sid}}}:voicemail"


@dataclass
class Pending:
    """What the recording webhooks need of a call that may have ended."""

    caller: Caller
    node: str
    started_at: float  # the call's start (epoch seconds): dates a late step
    max_length: int
    late: list[Step] = field(default_factory=list)  # steps waiting for the call's record

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Pending:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            caller=Caller(**data["caller"]),
            node=str(data["node"]),
            started_at=float(data["started_at"]),
            max_length=int(data["max_length"]),
            late=list(data.get("late") or []),
        )


def remember(state: CallState, record: Record, secret: str) -> None:
    """Keep the caller's facts of a call whose turn starts recording, with that turn's
    save (a deferred write: no round trip of its own on a single Redis)."""
    pending = Pending(
        caller_of(state, "", "", secret), state.node, state.started_at, record.max_length
    )
    raw, life = pending.to_json(), record.max_length + LATE_WINDOW

    def write(pipe: redis.client.Pipeline) -> None:
        pipe.set(key(state.call_sid), raw, ex=life)

    deferred.later(write)


def recall(call_sid: str) -> Pending | None:
    """The pending voicemail of a call; None when there is none (expired, never written,
    or out of reach: logged, and the webhook goes on with what its form says)."""
    try:
        with kv.unavailable_as_storage_error():
            raw = kv.client().get(key(call_sid))
    except StorageUnavailable as exc:
        log.warning("call %s: pending voicemail out of reach: %s", call_sid, exc)
        return None
    if not raw:
        return None
    try:
        return Pending.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("call %s: pending voicemail unreadable (%s); ignored", call_sid, exc)
        return None


def keep(call_sid: str, pending: Pending) -> None:
    """Store `pending` again (its late steps changed), for another LATE_WINDOW."""
    with kv.unavailable_as_storage_error():
        kv.client().set(key(call_sid), pending.to_json(), ex=LATE_WINDOW)
