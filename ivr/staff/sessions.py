"""Server-side staff sessions in Redis: the cookie carries only a random id.

A session is valid while its record exists and is within both limits: `idle` seconds
since the last request and `max_age` seconds since sign-in, checked against the clock
on every request (Redis expiry only tidies up). Each user's sessions are indexed, so
logout, `ivr users disable` and `ivr users signout` end them at once; a copied cookie
is worth nothing after that. Records are keyed by a hash of the id (see `keys`).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from ivr.staff import keys
from ivr.storage.kv import unavailable_as_storage_error


def digest(token: str) -> str:
    """The name a session (or pending sign-in) id is stored and shown under."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class StaffSession:
    """One live session: `ref` is the hashed id (safe to show and log), times are epoch seconds."""

    ref: str
    user_id: int
    created: float
    seen: float


@dataclass(frozen=True)
class Checked:
    """A session check: the session when valid, else why it ended ("idle", "max_age",
    or None when there was no such session) and whose it was."""

    session: StaffSession | None
    ended: str | None = None
    user_id: int | None = None


class SessionStore:
    """Start, check, list and end staff sessions."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        idle: int,
        max_age: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.idle = idle
        self.max_age = max_age
        self.clock = clock

    def start(self, user_id: int) -> str:
        """A new session of this user; returns the id for the cookie (never stored as is)."""
        token = secrets.token_urlsafe(32)
        ref, now = digest(token), self.clock()
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(keys.session(ref), mapping={"user_id": user_id, "created": now, "seen": now})
            pipe.expire(keys.session(ref), self._ttl(now, now))
            pipe.zadd(keys.user_sessions(user_id), {ref: now})
            pipe.expire(keys.user_sessions(user_id), self.max_age)
            pipe.execute()
        return token

    def check(self, token: str) -> Checked:
        """The session of this id if it is still valid (and counts this request as use);
        a session past a limit is ended here."""
        ref, now = digest(token), self.clock()
        with unavailable_as_storage_error():
            found = self._load(ref)
            if found is None:
                return Checked(None)
            if now - found.created >= self.max_age:
                self._end(found)
                return Checked(None, "max_age", found.user_id)
            if now - found.seen >= self.idle:
                self._end(found)
                return Checked(None, "idle", found.user_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(keys.session(ref), "seen", now)
            pipe.expire(keys.session(ref), self._ttl(found.created, now))
            pipe.execute()
        return Checked(StaffSession(ref, found.user_id, found.created, now))

    def end(self, token: str) -> StaffSession | None:
        """End the session of this id (logout); the session it was, if any."""
        with unavailable_as_storage_error():
            found = self._load(digest(token))
            if found is not None:
                self._end(found)
        return found

    def end_all(self, user_id: int) -> int:
        """End every session of a user; how many were live."""
        with unavailable_as_storage_error():
            refs = self._refs(user_id)
            live = self.live(user_id)
            pipe = self.redis.pipeline(transaction=False)
            for ref in refs:
                pipe.delete(keys.session(ref))
            pipe.delete(keys.user_sessions(user_id))
            pipe.execute()
        return len(live)

    def live(self, user_id: int) -> list[StaffSession]:
        """A user's live sessions, oldest first; index entries of dead ones are dropped."""
        now = self.clock()
        with unavailable_as_storage_error():
            refs = self._refs(user_id)
            live: list[StaffSession] = []
            dead: list[str] = []
            for ref in refs:
                found = self._load(ref)
                if (
                    found is not None
                    and found.user_id == user_id
                    and now - found.created < self.max_age
                    and now - found.seen < self.idle
                ):
                    live.append(found)
                else:
                    dead.append(ref)
            if dead:
                self.redis.zrem(keys.user_sessions(user_id), *dead)
        return live

    def _refs(self, user_id: int) -> list[str]:
        found = self.redis.zrange(keys.user_sessions(user_id), 0, -1)
        return [ref.decode() if isinstance(ref, bytes) else str(ref) for ref in found]

    def _load(self, ref: str) -> StaffSession | None:
        raw = self.redis.hgetall(keys.session(ref))
        if not raw:
            return None
        try:
            return StaffSession(
                ref, int(raw[b"user_id"]), float(raw[b"created"]), float(raw[b"seen"])
            )
        except (KeyError, ValueError):
            return None  # not a record we wrote: treated as no session

    def _end(self, found: StaffSession) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(keys.session(found.ref))
        pipe.zrem(keys.user_sessions(found.user_id), found.ref)
        pipe.execute()

    def _ttl(self, created: float, now: float) -> int:
        """Seconds Redis keeps the record: until the nearer limit (the check decides anyway)."""
        left = min(self.idle, self.max_age - (now - created))
        return max(1, math.ceil(left))
