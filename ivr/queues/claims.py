"""The agent line's short-lived records in Redis: who is on the line (a session behind an
opaque id), which held caller each agent is announcing (a claim), where a taken caller
goes (a join), the page's one-time "ring me" ids, and wrong-PIN counts.

A claim is `SET NX` under the caller's hash tag with a short life: several agents
taking calls at once never announce the same caller, and an agent who hangs up
mid-whisper frees the caller within CLAIM_TTL. URLs carry only these opaque ids.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import redis

from ivr.storage.keys import PREFIX
from ivr.storage.kv import unavailable_as_storage_error

SESSION_TTL = 3600  # seconds an agent-line call may last (one shift's call is far shorter)
CLAIM_TTL = 60  # seconds a caller stays set aside for the agent hearing their whisper
JOIN_TTL = 600  # seconds a taken caller's join id works
RING_TTL = 120  # seconds the page's "take next call" ring id works (once)
PIN_WINDOW = 900  # seconds wrong PINs count ...
PIN_FREE = 5  # ... and how many lock that caller ID for the rest of the window


def session_key(token: str) -> str:
    return f"{PREFIX}:agentline:session:{token}"


def claim_key(call_sid: str) -> str:
    """Under the caller's hash tag, beside their state."""
    return f"{PREFIX}:{{call:{call_sid}}}:agentline:claim"


def join_key(join_id: str) -> str:
    return f"{PREFIX}:agentline:join:{join_id}"


def ring_key(ring_id: str) -> str:
    return f"{PREFIX}:agentline:ring:{ring_id}"


def pin_key(caller: str) -> str:
    """Wrong PINs of one caller ID (hashed: no phone number in key names)."""
    return f"{PREFIX}:agentline:pin:{hashlib.sha256(caller.encode()).hexdigest()[:32]}"


def _new_id() -> str:
    return secrets.token_urlsafe(18)


# ---------------------------------------------------------------- sessions


def open_session(client: redis.Redis, record: dict[str, Any]) -> str:
    """Store an agent-line session; its opaque id."""
    token = _new_id()
    with unavailable_as_storage_error():
        client.set(session_key(token), json.dumps(record), ex=SESSION_TTL)
    return token


def load_session(client: redis.Redis, token: str) -> dict[str, Any] | None:
    if not token:
        return None
    with unavailable_as_storage_error():
        raw = client.get(session_key(token))
    return json.loads(raw) if raw else None


def save_session(client: redis.Redis, token: str, record: dict[str, Any]) -> None:
    with unavailable_as_storage_error():
        client.set(session_key(token), json.dumps(record), ex=SESSION_TTL)


# ---------------------------------------------------------------- claims


def claim(client: redis.Redis, call_sid: str, token: str) -> bool:
    """Set the caller aside for the session `token`; False when another agent has them."""
    with unavailable_as_storage_error():
        if client.set(claim_key(call_sid), token, nx=True, ex=CLAIM_TTL):
            return True
        held = client.get(claim_key(call_sid))
    return _text(held) == token


def holds(client: redis.Redis, call_sid: str, token: str) -> bool:
    """Whether the session `token` still holds its claim on the caller."""
    with unavailable_as_storage_error():
        return _text(client.get(claim_key(call_sid))) == token


def release(client: redis.Redis, call_sid: str, token: str) -> None:
    """Give a claim back (only one's own; a lapsed claim someone else took stays theirs)."""
    key = claim_key(call_sid)
    with unavailable_as_storage_error(), client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            if _text(pipe.get(key)) == token:
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
        except redis.WatchError:
            pass


def keep_taken(client: redis.Redis, call_sid: str, token: str) -> None:
    """A taken caller stays claimed until their join id lapses: nobody announces them again."""
    with unavailable_as_storage_error():
        client.set(claim_key(call_sid), token, ex=JOIN_TTL)


# ---------------------------------------------------------------- joins and rings


def new_join(client: redis.Redis, call_sid: str, queue: str) -> tuple[str, str]:
    """(join id, conference room) for a caller about to be redirected out of `queue`."""
    join_id, room = _new_id(), "ivr-" + secrets.token_hex(10)
    record = {"call_sid": call_sid, "room": room, "queue": queue}
    with unavailable_as_storage_error():
        client.set(join_key(join_id), json.dumps(record), ex=JOIN_TTL)
    return join_id, room


def load_join(client: redis.Redis, join_id: str) -> dict[str, Any] | None:
    if not join_id:
        return None
    with unavailable_as_storage_error():
        raw = client.get(join_key(join_id))
    return json.loads(raw) if raw else None


def new_ring(client: redis.Redis, user_id: int) -> str:
    """A one-time id for the call the agent page places to the agent's own phone."""
    ring_id = _new_id()
    with unavailable_as_storage_error():
        client.set(ring_key(ring_id), json.dumps({"user_id": user_id}), ex=RING_TTL)
    return ring_id


def take_ring(client: redis.Redis, ring_id: str) -> int | None:
    """The account a ring id was made for, once (it is deleted as it is read)."""
    if not ring_id:
        return None
    with unavailable_as_storage_error(), client.pipeline(transaction=True) as pipe:
        pipe.get(ring_key(ring_id))
        pipe.delete(ring_key(ring_id))
        raw, _ = pipe.execute()
    return int(json.loads(raw)["user_id"]) if raw else None


# ---------------------------------------------------------------- wrong PINs


def pin_locked(client: redis.Redis, caller: str) -> bool:
    with unavailable_as_storage_error():
        count = client.get(pin_key(caller))
    return int(count or 0) >= PIN_FREE


def pin_failed(client: redis.Redis, caller: str) -> bool:
    """Count a wrong PIN; True when that caller ID is now locked out for the window."""
    key = pin_key(caller)
    with unavailable_as_storage_error(), client.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, PIN_WINDOW, nx=True)
        count, _ = pipe.execute()
    return int(count) >= PIN_FREE


def pin_passed(client: redis.Redis, caller: str) -> None:
    with unavailable_as_storage_error():
        client.delete(pin_key(caller))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


# ---------------------------------------------------------------- the page's pop


TAKEN_TTL = 3600  # seconds the agent page pops the caller an agent last took


def taken_key(user_id: int) -> str:
    return f"{PREFIX}:agentline:taken:{user_id}"


def note_taken(client: redis.Redis, user_id: int, call_sid: str, at: float) -> None:
    """Remember the caller this agent took last (the agent page pops them)."""
    with unavailable_as_storage_error():
        client.set(taken_key(user_id), json.dumps({"call_sid": call_sid, "at": at}), ex=TAKEN_TTL)


def last_taken(client: redis.Redis, user_id: int) -> tuple[str, float] | None:
    """(CallSid, when) of the caller this agent took last over the agent line, if any."""
    with unavailable_as_storage_error():
        raw = client.get(taken_key(user_id))
    if not raw:
        return None
    record = json.loads(raw)
    return str(record["call_sid"]), float(record["at"])
