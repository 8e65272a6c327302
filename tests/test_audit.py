"""The audit writer: idempotent on its dedupe key, and never lost to a vanished account."""

from __future__ import annotations

from flask import Flask
from kit import JANE_PHONE, add_account
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.storage import audit, db
from ivr.storage.models import AuditEvent


def events(db_session: Session, action: str) -> list[AuditEvent]:
    return list(db_session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_dedupe_key_is_recorded_once(db_session: Session) -> None:
    assert audit.record(db_session, "call.ended", actor="twilio", dedupe_key="k1") is True
    assert audit.record(db_session, "call.ended", actor="twilio", dedupe_key="k1") is False
    assert len(events(db_session, "call.ended")) == 1


def test_an_account_that_no_longer_exists_is_dropped_not_the_record(
    app: Flask, db_session: Session
) -> None:
    """A queued job's audit may name an account erased meanwhile: the record is kept,
    without the link, and is not mistaken for a duplicate."""
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    gone = jane + 1000
    assert audit.record(db_session, "job.failed", actor="jobs", account_id=gone, dedupe_key="j1")
    assert audit.record(db_session, "job.failed", actor="jobs", account_id=gone) is True
    assert audit.record(db_session, "job.failed", actor="jobs", account_id=jane, dedupe_key="j2")
    assert [e.account_id for e in events(db_session, "job.failed")] == [None, None, jane]
    assert (
        audit.record(db_session, "job.failed", actor="jobs", account_id=gone, dedupe_key="j1")
        is False
    )


def test_what_the_caller_changed_is_committed_with_a_record_whose_account_is_gone(
    db_session: Session,
) -> None:
    db_session.add(AuditEvent(action="agent_user.disabled", actor="cli"))  # a change in flight
    assert audit.record(db_session, "job.failed", actor="jobs", account_id=999_999)
    db_session.rollback()  # nothing left uncommitted: both were written
    assert len(events(db_session, "agent_user.disabled")) == 1
    assert len(events(db_session, "job.failed")) == 1


def test_a_record_alone_whose_account_is_gone_is_kept_without_the_link(
    app: Flask, db_session: Session
) -> None:
    """The one-statement writer (webhooks' own events) retries without the account when
    the account was erased meanwhile, and still tells a duplicate by its dedupe key."""
    gone = add_account(app, "Jane Doe", JANE_PHONE, "10004321") + 1000
    with app.app_context():
        engine = db.engine()
        kept = audit.record_alone(
            engine, "call.ended", actor="twilio", account_id=gone, details={"status": "x"},
            dedupe_key="alone-1",
        )  # fmt: skip
        again = audit.record_alone(
            engine, "call.ended", actor="twilio", account_id=gone, dedupe_key="alone-1"
        )
    assert (kept, again) == (True, False)
    (event,) = events(db_session, "call.ended")
    assert event.account_id is None and event.details == {"status": "x"}
