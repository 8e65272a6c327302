"""Writes audit records; the only module that does.

Callers pass already-masked details: an audit row must never hold a full phone
number, a code, keypad digits or more than the last four digits of an account.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.storage.models import AuditEvent

log = logging.getLogger(__name__)


def record(
    db: Session,
    action: str,
    *,
    actor: str,
    call_sid: str | None = None,
    account_id: int | None = None,
    details: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Append an audit event and commit; False when `dedupe_key` was already recorded."""
    event = AuditEvent(
        action=action,
        actor=actor,
        call_sid=call_sid,
        account_id=account_id,
        details=details or {},
        dedupe_key=dedupe_key,
    )
    if dedupe_key is None:
        db.add(event)
        db.commit()
        return True
    try:
        with db.begin_nested():
            db.add(event)
        db.commit()
    except IntegrityError:
        db.rollback()
        log.info("audit %s already recorded (call %s); duplicate ignored", action, call_sid)
        return False
    return True
