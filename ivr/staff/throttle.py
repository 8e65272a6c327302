"""Login throttling per username and per client address: a sliding window of failures
in Redis, and a delay that doubles with each failure past a free allowance.

Never a hard lock: a throttled attempt is refused without being counted (so hammering
does not extend the wait), and the wait is capped, so the right password (and code)
is accepted as soon as it has passed. A client spraying many usernames is slowed by
its own count; a username guessed from many clients by the username's.

| scope | failures free in `WINDOW` | then waits (doubling from the last failure) |
|---|---|---|
| username | 5 | 30 s, 60 s, 120 s, 240 s, then 300 s |
| client address | 10 | 30 s, 60 s, … up to 900 s |
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
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
CLIENT = Policy("client", free=10, first_wait=30, cap=900)


@dataclass(frozen=True)
class Wait:
    """A refusal to try now: seconds left (rounded up) and which scope is throttled."""

    seconds: int
    scope: str


class LoginThrottle:
    """Failed sign-ins counted per username and per client, with backoff."""

    def __init__(
        self,
        client: redis.Redis,
        clock: Callable[[], float] = time.time,
        policies: tuple[Policy, Policy] = (USERNAME, CLIENT),
    ) -> None:
        self.redis = client
        self.clock = clock
        self.username_policy, self.client_policy = policies

    def wait(self, username: str, client: str) -> Wait | None:
        """How long this username or client must wait before its next attempt (None: go)."""
        now = self.clock()
        worst: Wait | None = None
        for policy, key in self._keys(username, client):
            with unavailable_as_storage_error():
                pipe = self.redis.pipeline(transaction=False)
                pipe.zremrangebyscore(key, "-inf", now - WINDOW)
                pipe.zrange(key, -1, -1, withscores=True)
                pipe.zcard(key)
                _, last, count = pipe.execute()
            if not last:
                continue
            left = last[0][1] + policy.delay(int(count)) - now
            if left > 0 and (worst is None or left > worst.seconds):
                worst = Wait(math.ceil(left), policy.scope)
        return worst

    def failed(self, username: str, client: str) -> None:
        """Count one failed sign-in against both the username and the client."""
        now = self.clock()
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline(transaction=False)
            for _policy, key in self._keys(username, client):
                pipe.zadd(key, {f"{now:.6f}:{secrets.token_hex(4)}": now})
                pipe.zremrangebyrank(key, 0, -KEEP - 1)
                pipe.expire(key, WINDOW)
            pipe.execute()

    def succeeded(self, username: str) -> None:
        """Forget a username's failures after it signed in. The client's stay: a sprayer
        who owns one account must not wipe its count by signing in to it."""
        with unavailable_as_storage_error():
            self.redis.delete(keys.login_failures("username", _bounded(username)))

    def _keys(self, username: str, client: str) -> list[tuple[Policy, str]]:
        return [
            (self.username_policy, keys.login_failures("username", _bounded(username))),
            (self.client_policy, keys.login_failures("client", _bounded(client))),
        ]


def _bounded(name: str) -> str:
    """Key material from input: lower case, at most 64 characters, no braces (hash tags)."""
    return name.strip().lower()[:64].replace("{", "(").replace("}", ")") or "(blank)"
