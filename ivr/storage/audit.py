"""Writes audit records; the only module that does.

Callers pass already-masked details: an audit row must never hold a full phone
number, a code, keypad digits or more than the last four digits of an account.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.storage.models import Account, AuditEvent

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
    """Append an audit event and commit; False when `dedupe_key` was already recorded.

    An `account_id` whose account no longer exists (erased since the call, or before a
    queued job ran) is dropped rather than failing the write: the record matters more
    than its link, and telling that failure from a duplicate needs a second look.
    """
    event = AuditEvent(
        action=action,
        actor=actor,
        call_sid=call_sid,
        account_id=account_id,
        details=details or {},
        dedupe_key=dedupe_key,
    )
    try:
        with db.begin_nested():
            db.add(event)
        db.commit()
    except IntegrityError:
        # Only the savepoint is undone so far: what the caller changed with this record
        # (e.g. an account disabled) is still there to be committed with the retry below.
        if dedupe_key is not None and _recorded(db, dedupe_key):
            db.rollback()
            log.info("audit %s already recorded (call %s); duplicate ignored", action, call_sid)
            return False
        if account_id is None or db.get(Account, account_id) is not None:
            db.rollback()
            raise
        log.info("audit %s: account %s no longer exists; recorded without it", action, account_id)
        return record(
            db,
            action,
            actor=actor,
            call_sid=call_sid,
            details=details,
            dedupe_key=dedupe_key,
        )
    return True


def add_unless_recorded(
    db: Session,
    action: str,
    *,
    actor: str,
    dedupe_key: str,
    call_sid: str | None = None,
    account_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """Add an audit event to the caller's transaction (committed with what it writes),
    unless `dedupe_key` is recorded already; False then."""
    if _recorded(db, dedupe_key):
        return False
    db.add(
        AuditEvent(
            action=action,
            actor=actor,
            call_sid=call_sid,
            account_id=account_id,
            details=details or {},
            dedupe_key=dedupe_key,
        )
    )
    return True


def record_alone(
    engine: Engine,
    action: str,
    *,
    actor: str,
    call_sid: str | None = None,
    account_id: int | None = None,
    details: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Append an audit event on its own, in ONE statement in autocommit (no BEGIN,
    savepoint or COMMIT around it); False when `dedupe_key` was already recorded.

    For a record that goes with nothing else the request writes (a webhook's own
    event): `INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING id`, which tells a
    duplicate by the missing row. An account erased meanwhile drops the link, as in
    `record`.
    """
    values: dict[str, Any] = {
        "action": action,
        "actor": actor,
        "call_sid": call_sid,
        "account_id": account_id,
        "details": details or {},
        "dedupe_key": dedupe_key,
    }
    statement = _ALONE[engine.dialect.name == "postgresql"]
    try:
        with engine.connect() as connection:
            writing = connection.execution_options(isolation_level="AUTOCOMMIT")
            written = writing.execute(statement, values).first() is not None
    except IntegrityError:
        if account_id is None:
            raise
        log.info("audit %s: account %s no longer exists; recorded without it", action, account_id)
        return record_alone(
            engine,
            action,
            actor=actor,
            call_sid=call_sid,
            details=details,
            dedupe_key=dedupe_key,
        )
    if not written:
        log.info("audit %s already recorded (call %s); duplicate ignored", action, call_sid)
    return written


def _recorded(db: Session, dedupe_key: str) -> bool:
    return (
        db.scalars(select(AuditEvent.id).where(AuditEvent.dedupe_key == dedupe_key)).first()
        is not None
    )


# `record_alone`'s statement, built once per dialect (building it per call cost more CPU
# than the insert): the values come as parameters, `at` from the column's default.
_ALONE = {
    postgres: (postgresql.insert if postgres else sqlite.insert)(AuditEvent)
    .on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(AuditEvent.id)
    for postgres in (True, False)
}
