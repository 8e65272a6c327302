"""The call context an agent is shown, and the short-lived signed token that carries it.

`build_context` turns the call state (and the account it is about) into JSON-ready
facts for the agent's screen pop; `ContextSigner` signs them into a URL-safe token
small enough for TaskRouter attributes (1024 characters) or a SIP header
(`X-IVR-Context`), and loads it back only while it is fresh.

What the context never holds: a code, keypad digits, a full account number or a
full phone number. The token is signed, not encrypted: anyone who sees it (a SIP
proxy, TaskRouter, a log line) can base64-decode what is inside, so everything in
it must be fit for an agent's desk and nothing in it may be a secret. The signature
only proves that this service wrote it, recently.

No Flask here: the voice views sign tokens, the agent API and page load them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from ivr.errors import IvrError
from ivr.flow.engine import AccountView
from ivr.flow.state import CallState
from ivr.phone import mask, mask_account

# Bumped when a field changes meaning, so a desktop can tell which shape it holds.
CONTEXT_SCHEMA = 1

# Only this signer's tokens load here: a Flask session cookie, a password-reset link
# or any other itsdangerous token made with the same secret key carries another salt.
SALT = "ivr.agent-context"

DEFAULT_MAX_AGE = 300  # seconds: the issue asks for "minutes"


class ContextError(IvrError):
    """A context token could not be loaded."""


class ContextInvalid(ContextError):
    """Tampered with, signed with another key or salt, or not a token at all."""


class ContextExpired(ContextError):
    """Genuine, but older than the signer's max_age (or dated in the future)."""

    def __init__(self, message: str, call_sid: str | None = None):
        super().__init__(message)
        self.call_sid = call_sid  # from the genuine payload, for the audit record


def build_context(
    state: CallState,
    account: AccountView | None,
    *,
    flow_version: str,
    now: float,
    cooling_off_flagged: bool = False,
) -> dict[str, Any]:
    """The facts an agent sees about a transferred call, as JSON-ready data.

    `account` is the account the call is about (state.account_id), `now` the time of
    issue (epoch seconds), `cooling_off_flagged` whether that account is still in the
    cooling-off period after a number change (the caller of this function knows the
    setting and the clock; the call state only carries the flag when the flow checked).
    """
    verified = state.verification == "code" and account is not None
    flags = list(state.flags)
    if cooling_off_flagged and "number_changed_recently" not in flags:
        flags.append("number_changed_recently")
    if state.failure == "locked" and "locked" not in flags:
        flags.append("locked")
    return {
        "schema": CONTEXT_SCHEMA,
        # Which call: ties the screen pop to the leg the agent answered, and lets the
        # agent page find the server-side state (never carried here) by CallSid.
        "call_sid": state.call_sid,
        # Who: the name only after full verification (digits and a code), as the whisper
        # says it; before that, a name would be a guess the agent might repeat aloud.
        "customer": account.name if verified and account is not None else None,
        # Which account the call was about, last four digits only: enough to find it on
        # the agent's screen, too little to be used anywhere as an account number.
        # Present even when unverified (the agent still checks it); "verification" says
        # how far to trust it.
        "account": mask_account(account.number) if account is not None else None,
        # How it was proven: none, digits (guessable, caller ID spoofable) or code.
        "verification": state.verification,
        # Each step passed and when, so the agent can judge how fresh the proof is.
        "methods": [{"method": method, "at": _iso_utc(at)} for method, at in state.methods],
        # What to weigh before trusting it: caller ID mismatch, a recent number change,
        # a code sent to that new number, a lockout.
        "flags": flags,
        # Why verification did not succeed (locked, digits_failed, ...), if it did not.
        "failure": state.failure,
        # Why the IVR handed the call over (caller_request, verification_failed, ...).
        "transfer_reason": state.transfer_reason,
        # Which flow (and version of it) took the call: for support and for audits.
        "flow": state.flow,
        "flow_version": flow_version,
        # The number calling, masked like every log line: spotting a mismatch needs no more.
        "caller": mask(state.caller),
        # When these facts were true; the token's own timestamp decides expiry.
        "issued_at": _iso_utc(now),
    }


def _iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class _ClockedSigner(TimestampSigner):
    """itsdangerous' TimestampSigner reading an injected clock.

    `get_timestamp` is the documented hook for the signing time; overriding it lets
    tests (and the agent page's own tests) sign and load at chosen moments.
    """

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class ContextSigner:
    """Signs context dicts into short-lived URL-safe tokens and loads them back."""

    def __init__(
        self,
        secret: str,
        max_age: int = DEFAULT_MAX_AGE,
        *,
        clock: Callable[[], float] = time.time,
    ):
        if not secret:
            raise ValueError("a context signer needs a secret key")
        if max_age <= 0:
            raise ValueError("max_age must be a positive number of seconds")
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(
            secret,
            salt=SALT,
            signer=_ClockedSigner,
            # HMAC-SHA256 with an HMAC-derived key, rather than the library's SHA-1 default.
            signer_kwargs={
                "clock": clock,
                "key_derivation": "hmac",
                "digest_method": hashlib.sha256,
            },
        )

    def sign(self, context: dict[str, Any]) -> str:
        """A URL-safe token carrying `context` (compact JSON, compressed when shorter)."""
        token = self._serializer.dumps(context)
        assert isinstance(token, str)
        return token

    def load(self, token: str) -> dict[str, Any]:
        """The context in `token`; ContextExpired or ContextInvalid when it cannot be trusted."""
        try:
            context = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired as exc:
            raise ContextExpired(str(exc), call_sid=self._call_sid(exc)) from None
        except BadSignature as exc:
            # Tampered, another key or salt, malformed, or a payload that is not JSON.
            raise ContextInvalid(type(exc).__name__) from None
        if not isinstance(context, dict):
            raise ContextInvalid("the token does not carry a context")
        return context

    def _call_sid(self, exc: SignatureExpired) -> str | None:
        """The CallSid of an expired token: its signature checked out, only its age did not."""
        if exc.payload is None:
            return None
        try:
            payload = self._serializer.load_payload(exc.payload)
        except BadSignature:
            return None
        call_sid = payload.get("call_sid") if isinstance(payload, dict) else None
        return call_sid if isinstance(call_sid, str) else None


def token_fingerprint(token: str) -> str:
    """A short hash of a token for audit records: tells tokens apart, reveals nothing."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]
