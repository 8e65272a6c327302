"""Wrong account-digit entries counted across calls: the engine's DigitLimits, on Redis.

Three tries per call is no limit by itself: a caller who spoofs a customer's caller
ID can redial. So every wrong entry is also counted here, in a sliding window of
24 hours (WINDOW), and once IVR_DIGITS_MAX_FAILURES wrong entries fall inside it the
call is not asked for digits at all: it goes to an agent, unverified, flagged
"digits_locked". With at most that many guesses a day, four digits hold out for
years. The lock lifts by itself as the oldest counted entries leave the window.

What a wrong entry counts against:

- last4 mode: every account of the caller ID (the candidates the digits were
  compared with). Spoofing a customer's caller ID is exactly the threat, so each
  candidate pays for each wrong guess; a call whose candidates include any locked
  account is not asked (the same four digits are compared with all of them).
- full account number: a number that matches no account belongs to nobody, so the
  entry counts against the calling number (kept as a keyed hash in the key name:
  no phone number in Redis key names). Counting by the entered number would stop
  nothing, since a guesser never enters the same wrong number twice. A withheld
  caller ID has nothing to count against: the entry is audited, not counted (the
  whole account number must be guessed, and a one-time code passed after it). A
  correct number of a locked account is refused like a wrong one is never asked.

Nothing resets a counter but time: not a correct entry (an attacker who knows the
digits of one account behind a shared number would reset the others), and not a
full verification either (the owner's successful call must not hand an attacker
who is guessing at the same account a fresh budget).

Every wrong entry writes one audit record, `verification.digits_failed`, or
`verification.digits_locked` for the entry that reached the limit: the call, the
account when there is exactly one (with several, their ids and counts in the
details), the masked caller and the count so far. Never the digits.

Keys follow ivr.storage.keys: an account's under its `{acct:<id>}` hash tag (so an
account's erase finds them), a calling number's under `{caller:<hash>}`. Redis
unreachable raises StorageUnavailable: the call fails closed to an agent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy.orm import Session

from ivr.phone import mask
from ivr.storage import audit, db
from ivr.storage.keys import PREFIX
from ivr.storage.kv import unavailable_as_storage_error

log = logging.getLogger(__name__)

WINDOW = 86400  # seconds: wrong entries older than a day no longer count
FAILED, LOCKED = "verification.digits_failed", "verification.digits_locked"


def account_key(account_id: int) -> str:
    """Times of an account's wrong digit entries (a sorted set scored by time)."""
    return f"{PREFIX}:{{acct:{account_id}}}:digit_failures"


def caller_key(secret: bytes, caller: str) -> str:
    """Times of a calling number's wrong account numbers; the number only as a keyed hash."""
    digest = hmac.new(secret, f"caller:{caller}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{PREFIX}:{{caller:{digest}}}:digit_failures"


class DigitFailures:
    """Implements the engine's DigitLimits protocol over Redis, auditing through SQL."""

    def __init__(
        self,
        client: redis.Redis,
        session: Session,
        secret: str,
        max_failures: int,
        clock: Callable[[], float] = time.time,
        defer: Callable[[Callable[[redis.client.Pipeline], None]], None] | None = None,
    ):
        self.redis = client
        self.session = session
        self.secret = secret.encode()
        self.max_failures = max_failures
        self.clock = clock
        # Where a give-back may wait for the call's save (`storage.deferred.later`).
        # None: sent at once. Give-backs still waiting are sent first by any count
        # read later in the same request (a flow may ask for digits again at once).
        self.defer = defer
        self.waiting: list[tuple[list[str], str]] = []  # (keys, member) given back

    def _keys(self, account_ids: Sequence[int], caller: str | None) -> list[str]:
        found = [account_key(account_id) for account_id in dict.fromkeys(account_ids)]
        if caller is not None:
            found.append(caller_key(self.secret, caller))
        return found

    def counts(self, account_ids: Sequence[int], caller: str | None) -> list[int]:
        """Wrong entries within the window, per account (in order), then the caller's."""
        keys = self._keys(account_ids, caller)
        if not keys:
            return []
        since = self.clock() - WINDOW
        with unavailable_as_storage_error():
            # Keys of several accounts lie in different cluster slots: no transaction.
            pipe = self.redis.pipeline(transaction=False)
            waiting = self._take_waiting(pipe)  # ahead of the counts, same round trip
            for key in keys:
                pipe.zcount(key, f"({since}", "+inf")
            return [int(count) for count in pipe.execute()[waiting:]]

    def _take_waiting(self, pipe: redis.client.Pipeline) -> int:
        """Add the give-backs still waiting for the save to `pipe`; how many commands.
        (The deferred copy repeats them later: removing a member twice is harmless.)"""
        added = 0
        for keys, member in self.waiting:
            for key in keys:
                pipe.zrem(key, member)
                added += 1
        self.waiting.clear()
        return added

    def locked(self, account_ids: Sequence[int], caller: str | None) -> bool:
        """Whether any of the accounts, or the calling number, takes no more digit attempts."""
        return any(count >= self.max_failures for count in self.counts(account_ids, caller))

    def attempt(self, account_ids: Sequence[int], caller: str | None) -> Attempt:
        """Reserve one entry before it is compared: add it to each counter and read the
        counts in one round trip. Refused (and given back) when any counter already held
        the limit without it, so entries made at the same moment on several calls get no
        more guesses between them than one call would. (Of entries racing at the limit,
        one may be refused that came in just below it: the safe side.)"""
        ids = list(dict.fromkeys(account_ids))
        keys = self._keys(ids, None if ids else caller)
        now = self.clock()
        attempt = Attempt(self, ids, caller, keys, f"{now}:{secrets.token_hex(4)}")
        if keys:
            with unavailable_as_storage_error():
                # Keys of several accounts lie in different cluster slots: no transaction.
                # Each counter is added to before it is read, so of two entries the later
                # one's count holds the earlier's reservation.
                pipe = self.redis.pipeline(transaction=False)
                waiting = self._take_waiting(pipe)
                for key in keys:
                    pipe.zremrangebyscore(key, "-inf", now - WINDOW)
                    pipe.zadd(key, {attempt.member: now})
                    pipe.zcard(key)
                    pipe.expire(key, WINDOW)
                results = pipe.execute()[waiting:]
            attempt.counts = [int(results[index * 4 + 2]) for index in range(len(keys))]
        if any(count - 1 >= self.max_failures for count in attempt.counts):
            attempt.refused = True
            attempt.give_back()
        return attempt

    def failed(
        self, call_sid: str, account_ids: Sequence[int], caller: str | None, mode: str
    ) -> bool:
        """Count one wrong entry against each account, or the calling number when there is
        no account (full mode), and audit it once; True when it reached the limit."""
        return self.attempt(account_ids, caller).wrong(call_sid, mode)


@dataclass
class Attempt:
    """One digit entry reserved in the counters (the engine's DigitAttempt)."""

    limits: DigitFailures
    ids: list[int]
    caller: str | None
    keys: list[str]
    member: str
    counts: list[int] = field(default_factory=list)  # each counter, this entry included
    refused: bool = False

    def give_back(self) -> None:
        """Take the reservation out of every counter (it was no failure)."""
        if not self.keys:
            return
        keys, member = list(self.keys), self.member

        def take_out(pipe: redis.client.Pipeline) -> None:
            for key in keys:
                pipe.zrem(key, member)

        if self.limits.defer is not None:
            # Held a few milliseconds longer, the reservation only errs on the safe
            # side: an entry racing this one counts it. This request's own later
            # counts send it first (`waiting`).
            self.limits.waiting.append((keys, member))
            self.limits.defer(take_out)
            return
        with unavailable_as_storage_error():
            pipe = self.limits.redis.pipeline(transaction=False)
            take_out(pipe)
            pipe.execute()

    def matched(self) -> None:
        """A right (or ambiguous) entry is no failure."""
        self.give_back()

    def wrong(self, call_sid: str, mode: str) -> bool:
        """The entry stays counted; audit it once. True when it reached the limit."""
        limits, ids, counts = self.limits, self.ids, self.counts
        reached = any(count >= limits.max_failures for count in counts)
        details: dict[str, Any] = {
            "mode": mode,
            "caller": mask(self.caller),
            "counted": "accounts" if ids else "caller" if self.keys else "nothing",
            "count": max(counts) if counts else None,
            "limit": limits.max_failures,
        }
        if len(ids) > 1:
            details["accounts"] = ids
            details["counts"] = {str(i): count for i, count in zip(ids, counts, strict=True)}
        with db.unavailable_as_storage_error():
            audit.record(
                limits.session,
                LOCKED if reached else FAILED,
                actor="caller",
                call_sid=call_sid,
                account_id=ids[0] if len(ids) == 1 else None,
                details=details,
            )
        if reached:
            log.warning(
                "call %s: account digits locked (%s wrong entries in 24 h, %s)",
                call_sid,
                details["count"],
                details["counted"],
            )
        return reached
