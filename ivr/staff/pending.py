"""A sign-in half done: the password was right, the second factor is awaited.

Kept server-side like sessions (the cookie carries a random id only), for
`LIFETIME` seconds and `MAX_TRIES` wrong codes; after either, the sign-in starts
again from the password. A pending sign-in is never a session: it opens nothing.
"""

from __future__ import annotations

import secrets

import redis

from ivr.staff import keys
from ivr.staff.sessions import digest
from ivr.storage.kv import unavailable_as_storage_error

LIFETIME = 300  # seconds to type the code
MAX_TRIES = 5  # wrong codes before the password is asked again


def start(client: redis.Redis, user_id: int) -> str:
    """Remember that this user's password was right; returns the id for the cookie."""
    token = secrets.token_urlsafe(32)
    with unavailable_as_storage_error():
        client.set(keys.pending(digest(token)), user_id, ex=LIFETIME)
    return token


def user_of(client: redis.Redis, token: str) -> int | None:
    """The user awaiting a second factor under this id, or None (expired, used, unknown)."""
    with unavailable_as_storage_error():
        raw = client.get(keys.pending(digest(token)))
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def wrong_code(client: redis.Redis, token: str) -> bool:
    """Count a wrong code; True when the sign-in is now over (too many)."""
    key = keys.pending(digest(token)) + ":tries"
    with unavailable_as_storage_error():
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, LIFETIME)
        tries = int(pipe.execute()[0])
    if tries >= MAX_TRIES:
        finish(client, token)
        return True
    return False


def finish(client: redis.Redis, token: str) -> None:
    """Forget the pending sign-in (done, or given up)."""
    key = keys.pending(digest(token))
    with unavailable_as_storage_error():
        client.delete(key, key + ":tries")
