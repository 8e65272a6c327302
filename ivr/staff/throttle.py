"""Login throttling per username (or trusted device) and per client address: a sliding
window of failures in Redis, and a delay that doubles with each failure past a free
allowance.

Never a hard lock: a throttled attempt is refused without being counted (so hammering
does not extend the wait), and the wait is capped. A client spraying many usernames is
slowed by its own count; a username guessed from many clients by the username's.

A named agent cannot be kept out by someone guessing their password: a browser that
has signed in as that user before carries a device cookie (`ivr.staff.devices`), and
its attempts are counted against that device instead of the username (OWASP's device
cookies). An attacker's failures slow the username for every *other* browser, but
never the agent's own.

Every attempt is reserved before the password or code is checked — added to the
window and counted in the same MULTI — and only undone when it succeeds. So fifty
guesses fired at once get the free allowance between them, not fifty checks.

| scope | failures free in `WINDOW` | then waits (doubling from the last failure) |
|---|---|---|
| username (a browser without their device cookie) | 5 | 30 s, 60 s, 120 s, 240 s, then 300 s |
| device (a browser that signed in as that user before) | 5 | the same |
| client address (IPv6: its /64) | 10 | 30 s, 60 s, … up to 900 s |
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from ivr.staff import keys
from ivr.storage.kv import unavailable_as_storage_error

WINDOW = 900  # seconds of failures that count (a sliding window)
KEEP = 64  # failures kept per key: far past any cap, bounded memory under attack


@dataclass(frozen=True)
class Policy:
    """How many failures are free in the window, the first wait after them, and the cap."""

    scope: str
    free: int
    first_wait: float
    cap: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after the latest of `failures` failures (0: no wait)."""
        if failures < self.free:
            return 0.0
        return float(min(self.first_wait * 2 ** min(failures - self.free, 32), self.cap))


USERNAME = Policy("username", free=5, first_wait=30, cap=300)
DEVICE = Policy("device", free=5, first_wait=30, cap=300)
CLIENT = Policy("client", free=10, first_wait=30, cap=900)


@dataclass(frozen=True)
class Scope:
    """One thing attempts are counted against: a username, a device or a client."""

    policy: Policy
    name: str

    @property
    def key(self) -> str:
        return keys.login_failures(self.policy.scope, _bounded(self.name))


def scopes_for(username: str, client: str, device: str | None = None) -> list[Scope]:
    """What an attempt counts against: the user's device when the browser is one they
    signed in from before, else the username; and always the client address."""
    who = Scope(DEVICE, device) if device else Scope(USERNAME, username)
    return [who, Scope(CLIENT, client)]


@dataclass(frozen=True)
class Wait:
    """A refusal to try now: seconds left (rounded up) and which scope is throttled."""

    seconds: int
    scope: str


@dataclass(frozen=True)
class Attempt:
    """An attempt counted in its scopes: a failure unless `LoginThrottle.succeeded` undoes it."""

    scopes: tuple[Scope, ...]
    member: str


class LoginThrottle:
    """Failed sign-ins counted per username or device and per client, with backoff."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.clock = clock

    def attempt(self, scopes: Sequence[Scope]) -> Attempt | Wait:
        """Count an attempt in every scope at once, or refuse it (uncounted) while one of
        them must still wait after its earlier failures."""
        now = self.clock()
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline(transaction=True)
            for scope in scopes:
                pipe.zremrangebyscore(scope.key, "-inf", now - WINDOW)
                pipe.zadd(scope.key, {member: now})
                pipe.zremrangebyrank(scope.key, 0, -KEEP - 1)
                pipe.expire(scope.key, WINDOW)
                pipe.zrange(scope.key, -2, -1, withscores=True)
                pipe.zcard(scope.key)
            replies = pipe.execute()
        worst: Wait | None = None
        for index, scope in enumerate(scopes):
            last_two, count = replies[6 * index + 4], int(replies[6 * index + 5])
            earlier = [score for name, score in last_two if _text(name) != member]
            if not earlier:
                continue
            delay = scope.policy.delay(count - 1)
            if delay <= 0:
                # Within the free allowance: no wait, whatever the clocks say (an attempt
                # counted just before this one may carry a timestamp a hair later).
                continue
            # The attempts before this one (any that arrived at the same moment included).
            left = earlier[-1] + delay - now
            if left > 0 and (worst is None or left > worst.seconds):
                worst = Wait(math.ceil(left), scope.policy.scope)
        if worst is not None:
            self._undo(scopes, member)
            return worst
        return Attempt(tuple(scopes), member)

    def succeeded(self, attempt: Attempt, forget: Sequence[Scope] = ()) -> None:
        """The attempt was right: it is no failure; the `forget` scopes (the user's own
        username or device) lose their failures too. The client's earlier failures stay:
        a sprayer who owns one account must not wipe its count by signing in to it."""
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline(transaction=False)
            for scope in attempt.scopes:
                pipe.zrem(scope.key, attempt.member)
            for scope in forget:
                pipe.delete(scope.key)
            pipe.execute()

    def _undo(self, scopes: Sequence[Scope], member: str) -> None:
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline(transaction=False)
            for scope in scopes:
                pipe.zrem(scope.key, member)
            pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bounded(name: str) -> str:
    """Key material from input: lower case, at most 64 characters, no braces (hash tags)."""
    return name.strip().lower()[:64].replace("{", "(").replace("}", ")") or "(blank)"
