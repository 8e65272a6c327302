"""One-time codes under the rules of security.md ("One-time codes").

- 6 to 10 digits from `secrets` (a CSPRNG); stored only as an HMAC keyed with the app
  secret and bound to the account, the purpose and the call; compared with
  `hmac.compare_digest`.
- Lifetime IVR_CODE_TTL (default 5 minutes, at most 10); single use; a resend
  replaces the previous code; 5 wrong entries kill a code.
- Per account, so hanging up and calling again resets nothing: at most 5 sends in
  10 minutes without a successful check, a daily cap, and a timed lockout after
  repeated consecutive failures.

pyotp has no replay protection and TOTP does not fit a code sent once, so codes
are random and this module marks them used itself (deleting the key is atomic:
of two concurrent correct entries, exactly one wins).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from ivr import keys
from ivr.store import unavailable_as_storage_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodePolicy:
    """The numbers of security.md; tests and settings may tighten them."""

    length: int = 6
    ttl: int = 300
    max_wrong_per_code: int = 5
    sends_per_window: int = 5
    send_window: int = 600
    sends_per_day: int = 15
    failures_before_lockout: int = 10
    lockout_seconds: int = 900


@dataclass(frozen=True)
class Issued:
    """A new code: hand `code` to the channel, then forget it."""

    code: str
    expires_in: int


@dataclass(frozen=True)
class Refused:
    """No code was issued: `reason` is "rate_limited" or "locked"."""

    reason: str


# Outcomes of a check.
OK, WRONG, EXPIRED, LOCKED = "ok", "wrong", "expired", "locked"


class CodeService:
    """Issues and checks codes; all state lives in Redis under the account's hash tag."""

    def __init__(
        self,
        client: redis.Redis,
        secret: str,
        policy: CodePolicy,
        clock: Callable[[], float] = time.time,
    ):
        self.redis = client
        self.secret = secret.encode()
        self.policy = policy
        self.clock = clock

    # ------------------------------------------------------------ issuing

    def issue(self, account_id: int, purpose: str, call_sid: str) -> Issued | Refused:
        """A fresh code replacing any earlier one, unless the account is limited or locked."""
        now = self.clock()
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline()
            pipe.get(keys.lockout(account_id))
            pipe.zremrangebyscore(keys.code_sends(account_id), 0, now - self.policy.send_window)
            pipe.zcard(keys.code_sends(account_id))
            pipe.get(keys.code_sends_today(account_id, day))
            locked_until, _, recent, today = pipe.execute()
            if _still(locked_until, now):
                return Refused("locked")
            if (
                recent >= self.policy.sends_per_window
                or int(today or 0) >= self.policy.sends_per_day
            ):
                log.warning("account %s: code sends limited", account_id)
                return Refused("rate_limited")
            code = f"{secrets.randbelow(10**self.policy.length):0{self.policy.length}d}"
            pipe = self.redis.pipeline()
            key = keys.code(account_id, purpose)
            pipe.delete(key)  # a resend kills the previous code
            pipe.hset(
                key,
                mapping={
                    "mac": self._mac(account_id, purpose, call_sid, code),
                    "wrong": 0,
                    "expires": now + self.policy.ttl,  # the TTL below only cleans up
                },
            )
            pipe.expire(key, self.policy.ttl)
            pipe.zadd(keys.code_sends(account_id), {f"{now}:{secrets.token_hex(4)}": now})
            pipe.expire(keys.code_sends(account_id), self.policy.send_window)
            pipe.incr(keys.code_sends_today(account_id, day))
            pipe.expire(keys.code_sends_today(account_id, day), 2 * 86400)
            pipe.execute()
        return Issued(code, self.policy.ttl)

    def withdraw(self, account_id: int, purpose: str) -> None:
        """Forget a code that could not be delivered, and its send: nothing half-done."""
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline()
            pipe.delete(keys.code(account_id, purpose))
            pipe.zpopmax(keys.code_sends(account_id))
            pipe.execute()

    # ------------------------------------------------------------ checking

    def check(self, account_id: int, purpose: str, call_sid: str, entered: str) -> str:
        """OK (and the code is used up), WRONG, EXPIRED (none live) or LOCKED."""
        key = keys.code(account_id, purpose)
        now = self.clock()
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline()
            pipe.get(keys.lockout(account_id))
            pipe.hmget(key, ["mac", "expires"])
            locked_until, (stored, expires) = pipe.execute()
            if _still(locked_until, now):
                return LOCKED
            if stored is None or not _still(expires, now):  # expired, used, killed, never sent
                return EXPIRED
            expected = stored.decode() if isinstance(stored, bytes) else str(stored)
            digits = entered if entered.isdigit() else ""
            candidate = self._mac(account_id, purpose, call_sid, digits)
            if hmac.compare_digest(candidate, expected):
                # Single use: of concurrent correct entries only the one that deletes wins.
                if self.redis.delete(key) == 1:
                    self._succeeded(account_id)
                    return OK
                return EXPIRED
            return self._wrong(account_id, key, now)

    def _wrong(self, account_id: int, key: str, now: float) -> str:
        pipe = self.redis.pipeline()
        pipe.hincrby(key, "wrong", 1)
        pipe.expire(key, self.policy.ttl, nx=True)  # a key recreated by a race still expires
        pipe.incr(keys.account_failures(account_id))
        pipe.expire(keys.account_failures(account_id), 86400)
        wrong, _, failures, _ = pipe.execute()
        if wrong >= self.policy.max_wrong_per_code:
            self.redis.delete(key)  # the code is dead
        if failures >= self.policy.failures_before_lockout:
            until = now + self.policy.lockout_seconds
            self.redis.set(keys.lockout(account_id), until, ex=self.policy.lockout_seconds)
            self.redis.delete(keys.account_failures(account_id))
            log.warning(
                "account %s locked out of code verification for %s s after %s failures",
                account_id,
                self.policy.lockout_seconds,
                failures,
            )
            return LOCKED
        return WRONG

    def _succeeded(self, account_id: int) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(keys.account_failures(account_id))
        pipe.delete(keys.code_sends(account_id))  # the window counts sends *without* success
        pipe.execute()

    def is_locked(self, account_id: int) -> bool:
        """Whether the account is in a lockout now."""
        with unavailable_as_storage_error():
            return _still(self.redis.get(keys.lockout(account_id)), self.clock())

    def _mac(self, account_id: int, purpose: str, call_sid: str, code: str) -> str:
        """The keyed hash that is all we store: bound to account, purpose and call."""
        message = f"{account_id}:{purpose}:{call_sid}:{code}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def _still(deadline: bytes | str | None, now: float) -> bool:
    """Whether a stored deadline (seconds since the epoch) is still ahead of `now`."""
    if deadline is None:
        return False
    try:
        return float(deadline) > now
    except ValueError:
        return False
