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

Sending, checking and revealing a code are each one Lua script (ivr.verification.scripts):
one Redis round trip, atomic like the WATCH/MULTI they replace.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from ivr.config import Settings
from ivr.storage import keys
from ivr.storage.kv import unavailable_as_storage_error
from ivr.verification import scripts

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


# Where new codes come from: None (always, in the service) means `secrets`. The call
# simulator's sandbox sets a repeatable source for the calls it replays, so that a code
# shown to the tester is still the right one when the call is played again.
CodeSource = Callable[[int], str]  # the number of digits -> the code
_code_source: ContextVar[CodeSource | None] = ContextVar("ivr_code_source", default=None)


@contextmanager
def codes_from(source: CodeSource) -> Iterator[None]:
    """Make the codes issued in this context (this thread) with `source` instead of
    `secrets`: for the simulator's sandbox only, never the service's own calls."""
    token = _code_source.set(source)
    try:
        yield
    finally:
        _code_source.reset(token)


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
        self._send = client.register_script(scripts.SEND)
        self._check = client.register_script(scripts.CHECK)
        self._reveal = client.register_script(scripts.REVEAL)

    # ------------------------------------------------------------ issuing

    def issue(self, account_id: int, purpose: str, bound_to: str) -> Issued | Refused:
        """A fresh code replacing any earlier one, unless the account is limited or locked."""
        now = self.clock()
        code = self._new_code()
        fields: dict[str, float | int | str] = {
            "mac": self._mac(account_id, purpose, bound_to, code),
            "wrong": 0,
            "expires": now + self.policy.ttl,  # the TTL only cleans up
        }
        refused = self._count_send(account_id, purpose, now, fields, self.policy.ttl)
        if refused is not None:
            return refused
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
        fields: dict[str, float | int | str] = {
            "ticket": ticket,
            "wrong": 0,
            "expires": now + lifetime,
        }
        return self._count_send(account_id, purpose, now, fields, lifetime)

    def reveal(self, account_id: int, purpose: str, ticket: str, bound_to: str) -> Issued | Refused:
        """Make the reserved code now, once: Refused("replaced") if a newer send, a use,
        an expiry or an earlier reveal got there first; Refused("locked") in a lockout."""
        now = self.clock()
        code = self._new_code()
        mac = self._mac(account_id, purpose, bound_to, code)
        ttl = self.policy.ttl
        with unavailable_as_storage_error():
            outcome = scripts.text(
                self._reveal(
                    keys=[keys.lockout(account_id), keys.code(account_id, purpose)],
                    args=[repr(now), ticket, mac, repr(now + ttl), ttl],
                )
            )
        if outcome == "locked":
            return Refused("locked")
        if outcome != "ok":  # a newer send, a use, an expiry or an earlier reveal
            return Refused("replaced")
        return Issued(code, ttl)

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

    def _count_send(
        self,
        account_id: int,
        purpose: str,
        now: float,
        fields: dict[str, float | int | str],
        ttl: int,
    ) -> Refused | None:
        """Refuse during a lockout or over the send limits; otherwise count this send and
        store the code's `fields` in place of any earlier code (a resend kills it)."""
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        policy = self.policy
        pairs: list[str | int] = []
        for name, value in fields.items():
            pairs += [name, repr(value) if isinstance(value, float) else value]
        with unavailable_as_storage_error():
            outcome = scripts.text(
                self._send(
                    keys=[
                        keys.lockout(account_id),
                        keys.code_sends(account_id, purpose),
                        keys.code_sends_today(account_id, purpose, day),
                        keys.code(account_id, purpose),
                    ],
                    args=[
                        repr(now),
                        repr(now - policy.send_window),
                        policy.sends_per_window,
                        policy.sends_per_day,
                        policy.send_window,
                        f"{now}:{secrets.token_hex(4)}",
                        ttl,
                        *pairs,
                    ],
                )
            )
        if outcome == "locked":
            return Refused("locked")
        if outcome != "ok":
            log.warning("account %s: %s code sends limited", account_id, purpose)
            return Refused("rate_limited")
        return None

    def _new_code(self) -> str:
        source = _code_source.get()
        if source is not None:
            return source(self.policy.length)
        return f"{secrets.randbelow(10**self.policy.length):0{self.policy.length}d}"

    # ------------------------------------------------------------ checking

    def check(self, account_id: int, purpose: str, bound_to: str, entered: str) -> str:
        """OK (and the code is used up), WRONG, EXPIRED (none live) or LOCKED.

        One script: a matching code is deleted with the account's failures and sends
        (of concurrent correct entries only one wins, and a code replaced by a resend
        in between is not used up by the old one); a wrong entry counts against the
        code (dead after its limit) and the account (locked out after its limit).
        A reservation no call has read out yet takes any entry as a wrong guess.
        """
        now = self.clock()
        digits = entered if entered.isascii() and entered.isdigit() else ""
        candidate = self._mac(account_id, purpose, bound_to, digits)
        policy = self.policy
        with unavailable_as_storage_error():
            outcome, detail = (
                scripts.text(part)
                for part in self._check(
                    keys=[
                        keys.lockout(account_id),
                        keys.code(account_id, purpose),
                        keys.account_failures(account_id),
                        keys.code_sends(account_id, purpose),
                    ],
                    args=[
                        repr(now),
                        candidate,
                        policy.max_wrong_per_code,
                        policy.ttl + policy.ring_allowance,
                        policy.failures_before_lockout,
                        policy.lockout_seconds,
                    ],
                )
            )
        if outcome == OK:
            # The script compared blinded digests; this says the same in constant time.
            return OK if hmac.compare_digest(candidate, detail) else EXPIRED
        if outcome == LOCKED and detail:
            log.warning(
                "account %s locked out of code verification for %s s after %s failures",
                account_id,
                policy.lockout_seconds,
                detail,
            )
        return outcome if outcome in (WRONG, LOCKED) else EXPIRED

    def is_locked(self, account_id: int) -> bool:
        """Whether the account is in a lockout now."""
        with unavailable_as_storage_error():
            return _still(self.redis.get(keys.lockout(account_id)), self.clock())

    def _mac(self, account_id: int, purpose: str, bound_to: str, code: str) -> str:
        """The keyed hash that is all we store: bound to account, purpose and call."""
        message = f"{account_id}:{purpose}:{bound_to}:{code}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def _still(deadline: bytes | str | None, now: float) -> bool:
    """Whether a stored deadline (seconds since the epoch) is still ahead of `now`."""
    if deadline is None:
        return False
    try:
        return float(deadline) > now
    except ValueError:
        return False
