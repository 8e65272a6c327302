"""TOTP, the staff second factor (RFC 6238 through pyotp): secrets, the provisioning
URI and its terminal QR code, and checking a code once.

A code is accepted from the current 30-second step or one either side
(`valid_window=1`, for clock drift), compared in constant time, and only if its step is
later than the last step accepted for that user: pyotp has no replay protection, so
the step is compared-and-set in the database (one UPDATE), which also settles two
sign-ins racing with one code. Secrets are never logged, and are stored sealed
(`ivr.staff.sealing`) under a key derived from IVR_SECRET_KEY.
"""

from __future__ import annotations

import hmac
import io
import logging
import re

import pyotp
import segno
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from ivr.staff import sealing
from ivr.storage.models import AgentUser

log = logging.getLogger(__name__)

ISSUER = "ivr"
DIGITS = 6
VALID_WINDOW = 1  # steps accepted either side of now
CODE = re.compile(r"[0-9]{6}", re.ASCII)


def new_secret() -> str:
    """A fresh base32 secret (160 bits, from the OS CSPRNG)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str) -> str:
    """The otpauth:// URI authenticator apps read (issuer "ivr", the username)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def terminal_qr(uri: str) -> str:
    """The URI as a QR code drawn with terminal block characters."""
    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def normalise(entered: str) -> str:
    """What was typed, without spaces (apps show "123 456")."""
    return "".join(entered.split())


def seal(secret_key: str, secret: str) -> str:
    """The secret as stored in `agent_users.totp_secret`."""
    return sealing.seal(secret_key, secret)


def check(session: Session, user: AgentUser, entered: str, now: float, secret_key: str) -> str:
    """Check a code of `user` at `now`: "ok" (and the step is now used), "wrong",
    "reused" (right code, step already used), "not_enrolled", or "unreadable" (the
    secret was sealed under another IVR_SECRET_KEY: `ivr users totp-reset` fixes it)."""
    if not user.totp_secret:
        return "not_enrolled"
    code = normalise(entered)
    if not CODE.fullmatch(code):
        return "wrong"
    try:
        secret = sealing.unseal(secret_key, user.totp_secret)
    except sealing.Unreadable:
        log.error(
            "the TOTP secret of staff user %s cannot be read with this IVR_SECRET_KEY;"
            " run `ivr users totp-reset %s`",
            user.username,
            user.username,
        )
        return "unreadable"
    totp = pyotp.TOTP(secret, digits=DIGITS)
    current = int(now // totp.interval)
    matched = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            matched = step  # no early exit: every step costs the same
    if matched is None:
        return "wrong"
    claimed = session.execute(
        update(AgentUser)
        .where(AgentUser.id == user.id)
        .where(or_(AgentUser.totp_last_step.is_(None), AgentUser.totp_last_step < matched))
        .values(totp_last_step=matched)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return "ok" if claimed.rowcount == 1 else "reused"  # type: ignore[attr-defined]
