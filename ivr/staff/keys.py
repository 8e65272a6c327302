"""Redis key names of staff sign-in (sessions, half-way sign-ins, login throttling).

Kept here rather than in ivr.storage.keys so the staff package owns its own names;
all start with ivr.storage.keys.PREFIX. Session ids appear only as a SHA-256 hash, so
a Redis dump holds no cookie that could be replayed.
"""

from __future__ import annotations

from ivr.storage import keys


def session(session_hash: str) -> str:
    """One staff session (a hash: user id, created, last seen), by the hash of its id."""
    return f"{keys.PREFIX}:{{staff-session:{session_hash}}}"


def user_sessions(user_id: int) -> str:
    """The sessions of one staff user (a sorted set: session hash → created), to end them all."""
    return f"{keys.PREFIX}:{{staff-user:{user_id}}}:sessions"


def pending(pending_hash: str) -> str:
    """A sign-in whose password was right and whose second factor is awaited."""
    return f"{keys.PREFIX}:{{staff-pending:{pending_hash}}}"


def login_failures(scope: str, name: str) -> str:
    """Failed sign-in times (a sorted set) of one username, device or client address.

    All share one hash tag: an attempt is counted in every scope in one MULTI, which a
    Redis Cluster runs only on keys of one slot (staff sign-ins are few: no hot slot).
    """
    return f"{keys.PREFIX}:{{staff-login}}:{scope}:{name}:failures"
