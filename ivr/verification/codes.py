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

from ivr.config import Settings
from ivr.storage import keys
from ivr.storage.kv import unavailable_as_storage_error

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
    # A code read out on a call exists only once someone answers and presses a key;
    # until then its reservation lives this much longer than a code (ringing, answering).
    ring_allowance: int = 90


# What a code is for: verifying the caller, or confirming a new phone number (whose
# call-backs security.md limits harder: 3 entries per code, 3 call-backs a day).
VERIFY, CONFIRM_NUMBER = "verify", "confirm_number"


def policy_for(purpose: str, settings: Settings) -> CodePolicy:
    """The policy of a purpose, with the configured code length and lifetime."""
    length, ttl = settings.code_length, settings.code_ttl
    if purpose == CONFIRM_NUMBER:
        return CodePolicy(
            length=length,
            ttl=ttl,
            max_wrong_per_code=3,
            sends_per_window=3,
            sends_per_day=3,
        )
    return CodePolicy(length=length, ttl=ttl)


@dataclass(frozen=True)
class Issued:
    """A new code: hand `code` to the channel, then forget it."""

    code: str
    expires_in: int


@dataclass(frozen=True)
class Refused:
    """No code was issued: `reason` is "rate_limited", "locked" or "replaced"."""

    reason: str


# Outcomes of a check.
OK, WRONG, EXPIRED, LOCKED = "ok", "wrong", "expired", "locked"


class CodeService:
    """Issues and checks codes; all state lives in Redis under the account's hash tag.

    `bound_to` names what a code is for within its purpose: the CallSid of the call
    that must enter it, or the id of a pending number change. A code entered on any
    other call (or for another purpose, or account) never matches.
    """

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

    def issue(self, account_id: int, purpose: str, bound_to: str) -> Issued | Refused:
        """A fresh code replacing any earlier one, unless the account is limited or locked."""
        now = self.clock()
        with unavailable_as_storage_error():
            refused = self._count_send(account_id, purpose, now)
            if refused is not None:
                return refused
            code = self._new_code()
            key = keys.code(account_id, purpose)
            pipe = self.redis.pipeline()
            pipe.delete(key)  # a resend kills the previous code
            pipe.hset(
                key,
                mapping={
                    "mac": self._mac(account_id, purpose, bound_to, code),
                    "wrong": 0,
                    "expires": now + self.policy.ttl,  # the TTL below only cleans up
                },
            )
            pipe.expire(key, self.policy.ttl)
            pipe.execute()
        return Issued(code, self.policy.ttl)

    def reserve(self, account_id: int, purpose: str, ticket: str) -> Refused | None:
        """Count a send and hold the place of a code that a call will read out later.

        The code itself is made only by `reveal`, when the person who answered
        presses a key: until then there is nothing to steal (not even encrypted),
        and a voicemail that never presses a key never gets one. The reservation
        replaces any earlier code, as any resend does.
        """
        now = self.clock()
        lifetime = self.policy.ttl + self.policy.ring_allowance
        with unavailable_as_storage_error():
            refused = self._count_send(account_id, purpose, now)
            if refused is not None:
                return refused
            key = keys.code(account_id, purpose)
            pipe = self.redis.pipeline()
            pipe.delete(key)
            pipe.hset(key, mapping={"ticket": ticket, "wrong": 0, "expires": now + lifetime})
            pipe.expire(key, lifetime)
            pipe.execute()
        return None

    def reveal(self, account_id: int, purpose: str, ticket: str, bound_to: str) -> Issued | Refused:
        """Make the reserved code now, once: Refused("replaced") if a newer send, a use,
        an expiry or an earlier reveal got there first; Refused("locked") in a lockout."""
        now = self.clock()
        key = keys.code(account_id, purpose)
        with unavailable_as_storage_error():
            if _still(self.redis.get(keys.lockout(account_id)), now):
                return Refused("locked")
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    held, expires = pipe.hmget(key, ["ticket", "expires"])
                    if _text(held) != ticket or not _still(expires, now):
                        return Refused("replaced")
                    code = self._new_code()
                    pipe.multi()
                    pipe.hdel(key, "ticket")  # a second key press reveals nothing
                    pipe.hset(
                        key,
                        mapping={
                            "mac": self._mac(account_id, purpose, bound_to, code),
                            "expires": now + self.policy.ttl,
                        },
                    )
                    pipe.expire(key, self.policy.ttl)
                    pipe.execute()
                except redis.WatchError:  # something else changed the code meanwhile
                    return Refused("replaced")
        return Issued(code, self.policy.ttl)

    def withdraw(self, account_id: int, purpose: str) -> None:
        """Forget a code that could not be delivered, and its send: nothing half-done."""
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline()
            pipe.delete(keys.code(account_id, purpose))
            pipe.zpopmax(keys.code_sends(account_id, purpose))
            pipe.execute()

    def withdraw_code(self, account_id: int, purpose: str) -> None:
        """Kill the live code (or reservation) of a purpose; its send still counts."""
        with unavailable_as_storage_error():
            self.redis.delete(keys.code(account_id, purpose))

    def _count_send(self, account_id: int, purpose: str, now: float) -> Refused | None:
        """Refuse during a lockout or over the send limits; otherwise count this send."""
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        sends = keys.code_sends(account_id, purpose)
        today_key = keys.code_sends_today(account_id, purpose, day)
        pipe = self.redis.pipeline()
        pipe.get(keys.lockout(account_id))
        pipe.zremrangebyscore(sends, 0, now - self.policy.send_window)
        pipe.zcard(sends)
        pipe.get(today_key)
        locked_until, _, recent, today = pipe.execute()
        if _still(locked_until, now):
            return Refused("locked")
        if recent >= self.policy.sends_per_window or int(today or 0) >= self.policy.sends_per_day:
            log.warning("account %s: %s code sends limited", account_id, purpose)
            return Refused("rate_limited")
        pipe = self.redis.pipeline()
        pipe.zadd(sends, {f"{now}:{secrets.token_hex(4)}": now})
        pipe.expire(sends, self.policy.send_window)
        pipe.incr(today_key)
        pipe.expire(today_key, 2 * 86400)
        pipe.execute()
        return None

    def _new_code(self) -> str:
        return f"{secrets.randbelow(10**self.policy.length):0{self.policy.length}d}"

    # ------------------------------------------------------------ checking

    def check(self, account_id: int, purpose: str, bound_to: str, entered: str) -> str:
        """OK (and the code is used up), WRONG, EXPIRED (none live) or LOCKED."""
        key = keys.code(account_id, purpose)
        now = self.clock()
        with unavailable_as_storage_error():
            pipe = self.redis.pipeline()
            pipe.get(keys.lockout(account_id))
            pipe.hmget(key, ["mac", "expires", "ticket"])
            locked_until, (stored, expires, ticket) = pipe.execute()
            if _still(locked_until, now):
                return LOCKED
            if not _still(expires, now) or (stored is None and ticket is None):
                return EXPIRED  # expired, used, killed or never sent
            if stored is None:  # reserved for a call that has not read it yet: a guess
                return self._wrong(account_id, purpose, key, now)
            digits = entered if entered.isascii() and entered.isdigit() else ""
            candidate = self._mac(account_id, purpose, bound_to, digits)
            if hmac.compare_digest(candidate, _text(stored)):
                return OK if self._use(account_id, purpose, key, stored) else EXPIRED
            return self._wrong(account_id, purpose, key, now)

    def _use(self, account_id: int, purpose: str, key: str, stored: bytes | str) -> bool:
        """Delete the code if it is still the one that matched (compare-and-delete): of
        concurrent correct entries only one wins, and a code replaced in between by a
        resend is not consumed by an entry of the old one."""
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.hget(key, "mac") != stored:
                    return False
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
            except redis.WatchError:
                return False
        self._succeeded(account_id, purpose)
        return True

    def _wrong(self, account_id: int, purpose: str, key: str, now: float) -> str:
        pipe = self.redis.pipeline()
        pipe.hincrby(key, "wrong", 1)
        pipe.expire(key, self.policy.ttl + self.policy.ring_allowance, nx=True)
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

    def _succeeded(self, account_id: int, purpose: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(keys.account_failures(account_id))
        pipe.delete(
            keys.code_sends(account_id, purpose)
        )  # the window counts sends *without* success
        pipe.execute()

    def is_locked(self, account_id: int) -> bool:
        """Whether the account is in a lockout now."""
        with unavailable_as_storage_error():
            return _still(self.redis.get(keys.lockout(account_id)), self.clock())

    def _mac(self, account_id: int, purpose: str, bound_to: str, code: str) -> str:
        """The keyed hash that is all we store: bound to account, purpose and call."""
        message = f"{account_id}:{purpose}:{bound_to}:{code}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _still(deadline: bytes | str | None, now: float) -> bool:
    """Whether a stored deadline (seconds since the epoch) is still ahead of `now`."""
    if deadline is None:
        return False
    try:
        return float(deadline) > now
    except ValueError:
        return False
