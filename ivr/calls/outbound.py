"""Outbound calls the service places ("call-backs") and what each one is for.

A call-back is kept in Redis under a random id, the only thing its webhook URLs
carry (security.md: URLs carry opaque ids only). The record says what the call
is for and how it should go:

- READ: the person who answers presses a key, and only then is a code made and
  read out, twice, digit by digit. A voicemail never presses a key, so it never
  hears a code; a code that nobody asked to hear never exists.
- ASK: the person who answers keys in a code they heard earlier (on their own
  call to us, which had to end before this phone could ring).

The record is saved before Twilio is asked to ring, so an answer arriving
faster than `calls.create` returns still finds it.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ivr.delivery import DeliveryFailed, Dialer, OutgoingCall
from ivr.phone import mask
from ivr.storage import keys, kv

log = logging.getLogger(__name__)

READ, ASK = "read", "ask"
RING_SECONDS = 30  # then Twilio gives up: no-answer
RECORD_TTL = 30 * 60  # comfortably past any code's lifetime (at most 10 minutes)
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "canceled", "failed"})


@dataclass
class Callback:
    """One outbound call and its progress; never holds a code."""

    id: str
    purpose: str  # the code purpose: "verify", "confirm_number"
    mode: str  # READ or ASK
    account_id: int
    bound_to: str  # what the code is bound to: the caller's CallSid or a change id
    language: str
    to: str  # E.164
    placed_for: str | None  # the inbound call that asked for it
    created: float
    sid: str | None = None  # Twilio's CallSid of the outbound leg
    answered: bool = False
    revealed: bool = False  # READ: the code was read out
    entries: int = 0  # ASK: codes keyed in on this call
    outcome: str | None = None  # ASK: how the entry ended (confirmed, wrong, expired…)
    status: str = "placing"  # placing, ringing, then Twilio's final CallStatus

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Callback:
        data: dict[str, Any] = json.loads(raw)
        return cls(**data)


def new_id() -> str:
    """An unguessable id for webhook URLs (the signature check guards them as well)."""
    return secrets.token_urlsafe(18)


def new_callback(
    *,
    purpose: str,
    mode: str,
    account_id: int,
    bound_to: str,
    language: str,
    to: str,
    placed_for: str | None,
    clock: Callable[[], float] = time.time,
) -> Callback:
    return Callback(
        id=new_id(),
        purpose=purpose,
        mode=mode,
        account_id=account_id,
        bound_to=bound_to,
        language=language,
        to=to,
        placed_for=placed_for,
        created=clock(),
    )


def load(callback_id: str) -> Callback | None:
    """The call-back with this id, or None (expired, never existed, or a garbled id)."""
    if not callback_id or len(callback_id) > 64:
        return None
    with kv.unavailable_as_storage_error():
        raw = kv.client().get(keys.callback(callback_id))
    return Callback.from_json(raw) if raw else None


def save(callback: Callback) -> None:
    with kv.unavailable_as_storage_error():
        kv.client().set(keys.callback(callback.id), callback.to_json(), ex=RECORD_TTL)


# KEYS: the call-back's record.
# ARGV: the fields to set (a JSON object), the record's TTL, then statuses that leave the
# record as it is (a final status already stored is never overwritten).
# Returns the record (as updated, or as found when its status is one of those), or nil
# when it is gone.
UPDATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local record = cjson.decode(raw)
for i = 3, #ARGV do
  if record['status'] == ARGV[i] then return raw end
end
for name, value in pairs(cjson.decode(ARGV[1])) do record[name] = value end
local updated = cjson.encode(record)
redis.call('SET', KEYS[1], updated, 'EX', ARGV[2])
return updated
"""


def update(
    callback_id: str, *, unless_status: Iterable[str] = (), **fields: Any
) -> Callback | None:
    """Set some fields of a stored call-back atomically (one Lua script, one round trip):
    the answer, key and status webhooks and the placer may write at the same moment,
    and none of their facts may be lost. A record whose status is in `unless_status`
    is returned unchanged. None when the record is gone (or the id is garbled)."""
    if not callback_id or len(callback_id) > 64:
        return None
    client = kv.client()
    with kv.unavailable_as_storage_error():
        raw = client.register_script(UPDATE)(
            keys=[keys.callback(callback_id)],
            args=[json.dumps(fields, separators=(",", ":")), RECORD_TTL, *unless_status],
        )
    return Callback.from_json(raw) if raw else None


def forget(callback_id: str) -> None:
    with kv.unavailable_as_storage_error():
        kv.client().delete(keys.callback(callback_id))


class Placer:
    """Places call-backs through the app's Dialer, with webhook URLs for their id."""

    def __init__(self, dialer: Dialer, urls: Callable[[str], tuple[str, str]]):
        self.dialer = dialer
        self.urls = urls  # id → (answer URL, status callback URL), absolute and public

    def place(self, callback: Callback) -> None:
        """Ring `callback.to`; raise DeliveryFailed (with the record forgotten) if Twilio won't."""
        save(callback)
        answer_url, status_url = self.urls(callback.id)
        try:
            sid = self.dialer.place(
                OutgoingCall(
                    to=callback.to,
                    url=answer_url,
                    status_callback=status_url,
                    ring_seconds=RING_SECONDS,
                    call_sid=callback.placed_for,
                    purpose=callback.purpose,
                )
            )
        except DeliveryFailed:
            forget(callback.id)
            raise
        current = update(callback.id, sid=sid)
        if current is not None and current.status == "placing":
            update(callback.id, status="ringing")  # unless a final status came first
        log.info(
            "call-back %s (%s) to %s placed for call %s",
            sid,
            callback.purpose,
            mask(callback.to),
            callback.placed_for,
        )
