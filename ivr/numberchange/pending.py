"""A number change waiting for its code, kept in Redis per account while its call-back runs.

One pending change per account: a newer attempt (on this call or another) replaces
the older, and every step checks the change's id so a stale webhook cannot act on
its successor. The record holds the old and new numbers, never a code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ivr.phone import mask
from ivr.storage import keys, kv

# How ownership of the new number is proven: the caller stays on the line while the
# new phone rings, or (calling from the new phone itself) it is rung after they hang up.
ON_LINE, AFTER_CALL = "callback_on_line", "callback_after_call"
PENDING_TTL = 20 * 60  # past the code's lifetime (at most 10 minutes) and the ringing


@dataclass
class PendingChange:
    """A change waiting for its code: old and new numbers in E.164, never the code."""

    id: str
    account_id: int
    call_sid: str
    old: str
    new: str
    mode: str
    language: str
    created: float
    callback_id: str | None = None
    status: str = "pending"  # pending → calling (call-back placed)
    entries: int = 0  # codes keyed in on the caller's call

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> PendingChange:
        data: dict[str, Any] = json.loads(raw)
        return cls(**data)

    def masked(self) -> dict[str, str]:
        return {"old": mask(self.old), "new": mask(self.new), "mode": self.mode}


def load_pending(account_id: int) -> PendingChange | None:
    with kv.unavailable_as_storage_error():
        raw = kv.client().get(keys.number_change(account_id))
    return PendingChange.from_json(raw) if raw else None


def save_pending(change: PendingChange) -> None:
    with kv.unavailable_as_storage_error():
        kv.client().set(keys.number_change(change.account_id), change.to_json(), ex=PENDING_TTL)


def drop_pending(change: PendingChange) -> None:
    """Forget a change, unless a newer one has replaced it meanwhile."""
    current = load_pending(change.account_id)
    if current is not None and current.id == change.id:
        with kv.unavailable_as_storage_error():
            kv.client().delete(keys.number_change(change.account_id))


def pending_change_for(account_id: int) -> dict[str, Any] | None:
    """The pending change of an account, for operators (`ivr customers show`)."""
    change = load_pending(account_id)
    if change is None:
        return None
    return {
        "new": change.new,
        "mode": change.mode,
        "status": change.status,
        "started_at": datetime.fromtimestamp(change.created, UTC).isoformat(),
        "call_sid": change.call_sid,
    }
