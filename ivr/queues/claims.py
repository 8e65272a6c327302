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

SESSION_TTL = 3600  # seconds an agent-line session lasts from sign-in, however busy
CLAIM_TTL = 60  # seconds a caller stays set aside for the agent hearing their whisper
JOIN_TTL = 600  # seconds a taken caller's join id works
RING_TTL = 120  # seconds the page's "take next call" ring id works (once)
PIN_WINDOW = 900  # seconds PIN attempts count, from the last one (a sliding window) ...
PIN_FREE = 5  # ... and how many wrong ones lock that caller ID
LINE_FREE = 20  # wrong PINs within PIN_WINDOW, over all phones, that lock the PIN step ...
LINE_LOCK = 900  # ... for this many seconds


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
    """PIN attempts of one caller ID (hashed: no phone number in key names)."""
    return f"{PREFIX}:agentline:pin:{hashlib.sha256(caller.encode()).hexdigest()[:32]}"


LINE_PIN_KEY = f"{PREFIX}:agentline:pin:line"  # wrong PINs over every allowed phone
LINE_LOCK_KEY = f"{PREFIX}:agentline:pin:line-locked"


def _new_id() -> str:
    return secrets.token_urlsafe(18)


# ---------------------------------------------------------------- sessions


def open_session(client: redis.Redis, record: dict[str, Any], now: float) -> str:
    """Store an agent-line session; its opaque id. It lasts SESSION_TTL from `now` (its
    `created`), however often it is saved: a session is never extended."""
    token = _new_id()
    record = {**record, "created": now, "deadline": now + SESSION_TTL}
    with unavailable_as_storage_error():
        client.set(session_key(token), json.dumps(record), ex=SESSION_TTL)
    return token


def load_session(client: redis.Redis, token: str, now: float) -> dict[str, Any] | None:
    """The session behind `token`; None when unknown or past its deadline."""
    if not token:
        return None
    with unavailable_as_storage_error():
        raw = client.get(session_key(token))
    if not raw:
        return None
    record: dict[str, Any] = json.loads(raw)
    if float(record.get("deadline") or 0) <= now:
        return None
    return record


def save_session(client: redis.Redis, token: str, record: dict[str, Any], now: float) -> None:
    """Save a session's changes, keeping its deadline (never a new SESSION_TTL)."""
    left = int(float(record.get("deadline") or 0) - now)
    if left <= 0:
        return  # over: the next load refuses it
    with unavailable_as_storage_error():
        client.set(session_key(token), json.dumps(record), ex=left)


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


def drop_claim(client: redis.Redis, call_sid: str) -> None:
    """Free a taken caller who went back to their flow, whoever had claimed them."""
    with unavailable_as_storage_error():
        client.delete(claim_key(call_sid))


def keep_taken(client: redis.Redis, call_sid: str, token: str) -> None:
    """A taken caller stays claimed until their join id lapses: nobody announces them again."""
    with unavailable_as_storage_error():
        client.set(claim_key(call_sid), token, ex=JOIN_TTL)


# ---------------------------------------------------------------- joins and rings


def new_join(
    client: redis.Redis, call_sid: str, queue: str, *, token: str, step: int, now: float
) -> tuple[str, str]:
    """(join id, conference room) for a caller about to be redirected out of `queue` by the
    agent-line session `token`, at the caller's step `step`."""
    join_id, room = _new_id(), "ivr-" + secrets.token_hex(10)
    record = {
        "call_sid": call_sid,
        "room": room,
        "queue": queue,
        "token": token,
        "step": step,
        "since": now,
    }
    with unavailable_as_storage_error():
        client.set(join_key(join_id), json.dumps(record), ex=JOIN_TTL)
    return join_id, room


def room_key(room: str) -> str:
    return f"{PREFIX}:agentline:room-closed:{room}"


def close_room(client: redis.Redis, room: str, why: str) -> None:
    """The agent's side of `room` is over (their `<Dial>` ended, or the take failed): a
    caller still waiting in it goes back to their flow."""
    with unavailable_as_storage_error():
        client.set(room_key(room), why, ex=JOIN_TTL)


def room_closed(client: redis.Redis, room: str) -> str | None:
    """Why `room` was closed, or None while the agent may still come."""
    with unavailable_as_storage_error():
        return _text(client.get(room_key(room)))


def redirect_key(call_sid: str) -> str:
    return f"{PREFIX}:agent_line:redirected:{call_sid}"


def note_redirect(client: redis.Redis, call_sid: str, url: str) -> None:
    """Where a taken caller was redirected: their `<Enqueue>` action, which Twilio posts
    for the redirect (QueueResult=redirected), answers with the same join, however late."""
    with unavailable_as_storage_error():
        client.set(redirect_key(call_sid), url, ex=JOIN_TTL)


def redirected_to(client: redis.Redis, call_sid: str) -> str | None:
    """The join URL a taken caller was redirected to, or None (not taken by an agent)."""
    with unavailable_as_storage_error():
        return _text(client.get(redirect_key(call_sid)))


def forget_redirect(client: redis.Redis, call_sid: str) -> None:
    """The caller is back in their flow: a later redirect is not ours."""
    with unavailable_as_storage_error():
        client.delete(redirect_key(call_sid))


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


# Lowers a count only while it lives: a DECR on a lapsed key would leave -1 forever.
_UNCOUNT = """
if redis.call('exists', KEYS[1]) == 1 then return redis.call('decr', KEYS[1]) end
return 0
"""


def pin_locked(client: redis.Redis, caller: str) -> bool:
    """Whether the PIN step refuses this caller ID now (it, or the whole line, locked)."""
    with unavailable_as_storage_error():
        count = client.get(pin_key(caller))
        line = client.exists(LINE_LOCK_KEY)
    return bool(line) or int(count or 0) >= PIN_FREE


def line_locked(client: redis.Redis) -> bool:
    with unavailable_as_storage_error():
        return bool(client.exists(LINE_LOCK_KEY))


def pin_attempt(client: redis.Redis, caller: str) -> str | None:
    """Count one PIN attempt BEFORE it is checked (an atomic INCR, so concurrent attempts
    each count); None when it may be checked, else what is locked: "caller" (this
    caller ID: PIN_FREE attempts within PIN_WINDOW of each other) or "line"."""
    with unavailable_as_storage_error():
        if client.exists(LINE_LOCK_KEY):
            return "line"
        count = _count(client, pin_key(caller))
        if count > PIN_FREE:
            return "caller"
        if _count(client, LINE_PIN_KEY) > LINE_FREE:
            _uncount(client, pin_key(caller))  # not checked: only the line's lock holds it
            return "line"
    return None


def pin_right(client: redis.Redis, caller: str) -> None:
    """The attempt was right: it no longer counts (the wrong ones before it still do)."""
    with unavailable_as_storage_error():
        _uncount(client, pin_key(caller))
        _uncount(client, LINE_PIN_KEY)


def pin_wrong(client: redis.Redis, caller: str) -> tuple[bool, bool]:
    """The attempt (counted already) was wrong: (this caller ID is now locked, the whole
    line's PIN step was locked just now — True once per lock, for the warning and audit)."""
    with unavailable_as_storage_error():
        caller_count = int(client.get(pin_key(caller)) or 0)
        line_count = int(client.get(LINE_PIN_KEY) or 0)
        newly = False
        if line_count >= LINE_FREE:
            newly = bool(client.set(LINE_LOCK_KEY, "1", nx=True, ex=LINE_LOCK))
    return caller_count >= PIN_FREE, newly


def _count(client: redis.Redis, key: str) -> int:
    with client.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, PIN_WINDOW)  # sliding: quiet for PIN_WINDOW before it forgets
        count, _ = pipe.execute()
    return int(count)


def _uncount(client: redis.Redis, key: str) -> None:
    client.eval(_UNCOUNT, 1, key)


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
