"""Recovery codes: the way in when the authenticator is lost.

`COUNT` codes are made when TOTP is set up or reset, shown once, and stored only as
an HMAC-SHA256 keyed with the app secret (IVR_SECRET_KEY) and bound to the user; each
signs in once (marked used in one conditional UPDATE, so two racing uses cannot both
pass). Rotating IVR_SECRET_KEY invalidates them: reset TOTP afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ivr.storage.models import StaffRecoveryCode

COUNT = 10
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
LENGTH = 10  # about 49 bits each


def _digest(secret_key: str, user_id: int, code: str) -> str:
    message = f"staff-recovery:{user_id}:{code}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def normalise(entered: str) -> str:
    """A code as typed, in the stored form: lower case, no spaces or dashes."""
    return "".join(ch for ch in entered.lower() if ch not in " -\t")


def replace(session: Session, secret_key: str, user_id: int) -> list[str]:
    """New recovery codes for a user (old ones deleted; not committed); returns them
    for showing once, as "xxxxx-xxxxx"."""
    session.execute(delete(StaffRecoveryCode).where(StaffRecoveryCode.user_id == user_id))
    shown = []
    for _ in range(COUNT):
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        session.add(
            StaffRecoveryCode(user_id=user_id, code_hash=_digest(secret_key, user_id, code))
        )
        shown.append(f"{code[:5]}-{code[5:]}")
    return shown


def use(session: Session, secret_key: str, user_id: int, entered: str) -> bool:
    """Sign in with a recovery code: True (and it is used up, committed) when it is one
    of the user's unused codes."""
    wanted = _digest(secret_key, user_id, normalise(entered)).encode()
    rows = session.execute(
        select(StaffRecoveryCode.id, StaffRecoveryCode.code_hash)
        .where(StaffRecoveryCode.user_id == user_id)
        .where(StaffRecoveryCode.used_at.is_(None))
    ).all()
    found = None
    for row_id, code_hash in rows:
        if hmac.compare_digest(code_hash.encode(), wanted):
            found = row_id
    if found is None:
        return False
    claimed = session.execute(
        update(StaffRecoveryCode)
        .where(StaffRecoveryCode.id == found)
        .where(StaffRecoveryCode.used_at.is_(None))
        .values(used_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return claimed.rowcount == 1  # type: ignore[attr-defined]


def remaining(session: Session, user_id: int) -> int:
    """How many unused recovery codes a user has left."""
    rows = session.scalars(
        select(StaffRecoveryCode.id)
        .where(StaffRecoveryCode.user_id == user_id)
        .where(StaffRecoveryCode.used_at.is_(None))
    ).all()
    return len(rows)
