"""Changing the number on file (ivr.numberchange.onfile) and migration 0002 behind it.

Outcomes are read back on a connection of their own, so only committed rows count.
The races run real threads against the test database: on PostgreSQL (CI) they
exercise its row locks, on SQLite its database-wide write lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from factories import make_account, make_phone
from flask import Flask
from schema import assert_schema_matches_models
from sqlalchemy.orm import Session, sessionmaker

import ivr.numberchange.onfile as phonechange
from ivr.customers.directory import SqlDirectory
from ivr.numberchange.onfile import (
    AUDIT_ACTION,
    CALLBACK_AFTER_CALL,
    CALLBACK_ON_LINE,
    Changed,
    Conflict,
    apply_change,
    changed_recently,
    cooling_off_until,
    history,
    number_on_other_account,
)
from ivr.storage import db as ivr_db
from ivr.storage.db import make_engine
from ivr.storage.migrate import alembic_config, upgrade
from ivr.storage.models import Account, AuditEvent, PhoneChange, PhoneNumber

OLD = "+14155550100"
NEW = "+14155550199"
OTHER = "+14155550111"
CALL_SID = "CA" + "a" * 32
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def committed(app: Flask) -> dict[str, Any]:
    """What the database holds, read on a fresh connection: the facts a change touches."""
    with app.app_context(), ivr_db.engine().connect() as connection:
        accounts = connection.execute(
            sa.select(Account.number, PhoneNumber.e164, Account.phone_changed_at)
            .join(PhoneNumber, Account.phone_id == PhoneNumber.id)
            .order_by(Account.number)
        ).all()
        return {
            "phones": {number: e164 for number, e164, _ in accounts},
            "changed_at": {
                number: None if at is None else phonechange.as_utc(at) for number, _, at in accounts
            },
            "numbers": set(connection.scalars(sa.select(PhoneNumber.e164))),
            "changes": connection.execute(
                sa.select(PhoneChange.old_e164, PhoneChange.new_e164).order_by(PhoneChange.id)
            ).all(),
            "audit": connection.scalars(sa.select(AuditEvent.action)).all(),
        }


def change(session: Session, account: Account, new: str = NEW, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "account_id": account.id,
        "expected_old": OLD,
        "new": new,
        "call_sid": CALL_SID,
        "mode": CALLBACK_ON_LINE,
        "now": NOW,
    }
    arguments.update(overrides)
    return apply_change(session, **arguments)


# --- the good path --------------------------------------------------------------------------


def test_change_moves_the_account_and_records_history_flag_and_audit(
    app: Flask, db_session: Session
) -> None:
    jane = make_account(db_session, phone=OLD, account_number="10004321")

    result = change(db_session, jane)

    assert result == Changed(old=OLD, new=NEW, changed_at=NOW)
    state = committed(app)
    assert state["phones"] == {"10004321": NEW}
    assert state["changed_at"] == {"10004321": NOW}
    assert state["changes"] == [(OLD, NEW)]
    assert state["numbers"] == {OLD, NEW}  # the old row stays: the history names it
    # The session's own view is fresh although the update bypassed the ORM.
    assert jane.phone.e164 == NEW
    [row] = history(db_session, jane.id)
    assert (row.old_e164, row.new_e164, row.call_sid, row.mode) == (
        OLD,
        NEW,
        CALL_SID,
        CALLBACK_ON_LINE,
    )
    assert phonechange.as_utc(row.changed_at) == NOW


def test_change_is_audited_with_masked_numbers_only(app: Flask, db_session: Session) -> None:
    jane = make_account(db_session, phone=OLD)

    change(db_session, jane, mode=CALLBACK_AFTER_CALL)

    event = db_session.scalars(sa.select(AuditEvent)).one()
    assert (event.action, event.actor, event.call_sid, event.account_id) == (
        AUDIT_ACTION,
        "caller",
        CALL_SID,
        jane.id,
    )
    assert event.details == {
        "old": "+1415•••0100",
        "new": "+1415•••0199",
        "mode": CALLBACK_AFTER_CALL,
    }
    text = json.dumps(event.details, ensure_ascii=False)
    for full in (OLD, NEW):
        assert full not in text
        assert full.lstrip("+") not in text
        assert full[-7:] not in text  # not even the local number


def test_history_is_newest_first(db_session: Session) -> None:
    jane = make_account(db_session, phone=OLD)
    change(db_session, jane, now=NOW)
    change(db_session, jane, expected_old=NEW, new=OTHER, now=NOW + timedelta(days=30))

    assert [(row.old_e164, row.new_e164) for row in history(db_session, jane.id)] == [
        (NEW, OTHER),
        (OLD, NEW),
    ]
    db_session.refresh(jane)
    assert [c.new_e164 for c in jane.phone_changes] == [NEW, OTHER]  # relationship: oldest first


def test_changing_back_reuses_the_old_numbers_row(app: Flask, db_session: Session) -> None:
    jane = make_account(db_session, phone=OLD)
    change(db_session, jane, now=NOW)

    result = change(db_session, jane, expected_old=NEW, new=OLD, now=NOW + timedelta(days=9))

    assert isinstance(result, Changed)
    state = committed(app)
    assert state["phones"] == {jane.number: OLD}
    assert state["numbers"] == {OLD, NEW}


def test_the_directory_reports_when_the_number_changed(db_session: Session) -> None:
    jane = make_account(db_session, phone=OLD)
    directory = SqlDirectory(db_session)
    assert directory.accounts_by_ids([jane.id])[0].phone_changed_at is None

    change(db_session, jane)

    [view] = directory.accounts_for_phone(NEW)
    assert (view.id, view.phone, view.phone_changed_at) == (jane.id, NEW, NOW.timestamp())
    assert directory.accounts_for_phone(OLD) == []


# --- refusals -------------------------------------------------------------------------------


def test_a_number_on_another_account_is_taken(app: Flask, db_session: Session) -> None:
    jane = make_account(db_session, phone=OLD, account_number="10004321")
    make_account(db_session, "John Roe", NEW, "20005678")
    before = committed(app)

    assert change(db_session, jane) == Conflict("taken")
    assert committed(app) == before


def test_a_shared_numbers_other_holder_makes_it_taken(db_session: Session) -> None:
    # A family line: the number is on Ana's and Luis's accounts; moving Jane onto it
    # needs an agent, even though one of them is on it already.
    jane = make_account(db_session, phone=OLD, account_number="10004321")
    make_account(db_session, "Ana Lopez", NEW, "30001111")
    make_account(db_session, "Luis Lopez", NEW, "30002222")

    assert change(db_session, jane) == Conflict("taken")


def test_a_number_that_changed_since_verification_is_already_changed(
    app: Flask, db_session: Session
) -> None:
    jane = make_account(db_session, phone=OTHER)
    before = committed(app)

    assert change(db_session, jane, expected_old=OLD) == Conflict("already_changed")
    assert committed(app) == before


def test_an_unknown_account_is_no_account(app: Flask, db_session: Session) -> None:
    make_account(db_session, phone=OLD)
    before = committed(app)

    assert change(db_session, Account(id=999_999)) == Conflict("no_account")
    assert committed(app) == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"now": NOW.replace(tzinfo=None)}, "timezone-aware"),
        ({"new": OLD}, "the new number is the one on file"),
        ({"mode": "x" * 33}, "mode must be 1 to 32 characters"),
        ({"mode": ""}, "mode must be 1 to 32 characters"),
    ],
)
def test_bad_arguments_are_refused_before_any_write(
    app: Flask, db_session: Session, overrides: dict[str, Any], message: str
) -> None:
    jane = make_account(db_session, phone=OLD)
    before = committed(app)

    with pytest.raises(ValueError, match=message):
        change(db_session, jane, **overrides)
    assert committed(app) == before


def test_number_on_other_account(db_session: Session) -> None:
    jane = make_account(db_session, phone=OLD, account_number="10004321")
    john = make_account(db_session, "John Roe", OTHER, "20005678")
    make_phone(db_session, NEW)  # on file for nobody (e.g. left behind by a change)

    assert number_on_other_account(db_session, OTHER, jane.id)
    assert not number_on_other_account(db_session, OTHER, john.id)
    assert not number_on_other_account(db_session, OLD, jane.id)
    assert not number_on_other_account(db_session, NEW, jane.id)
    assert not number_on_other_account(db_session, "+14155550177", jane.id)


# --- all or nothing -------------------------------------------------------------------------


def test_a_failure_after_the_update_leaves_nothing_half_changed(
    app: Flask, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    jane = make_account(db_session, phone=OLD)
    before = committed(app)

    def broken_mask(_e164: str | None) -> str:
        raise RuntimeError("audit details could not be built")

    # mask() runs after the compare-and-set and the history row, for the audit event.
    monkeypatch.setattr(phonechange, "mask", broken_mask)
    with pytest.raises(RuntimeError, match="audit details"):
        change(db_session, jane)

    assert committed(app) == before  # old number, no history, no audit, no new number row
    monkeypatch.undo()
    assert jane.phone.e164 == OLD  # the session was rolled back and is usable
    assert isinstance(change(db_session, jane), Changed)


# --- races ----------------------------------------------------------------------------------


@pytest.fixture
def engine(app: Flask, database_url: str) -> Iterator[sa.Engine]:
    """A second engine on the test database with a generous lock wait, for the threads."""
    engine = make_engine(database_url, 10.0)
    yield engine
    engine.dispose()


def run_together(
    engine: sa.Engine, *attempts: Callable[[Session], Changed | Conflict]
) -> list[Changed | Conflict]:
    """Run each attempt in its own thread and session, released at the same moment."""
    sessions = sessionmaker(engine, expire_on_commit=False)
    start = threading.Barrier(len(attempts), timeout=10)

    def run(attempt: Callable[[Session], Changed | Conflict]) -> Changed | Conflict:
        with sessions() as session:
            start.wait()
            return attempt(session)

    with ThreadPoolExecutor(len(attempts)) as pool:
        futures = [pool.submit(run, attempt) for attempt in attempts]
        return [future.result(timeout=30) for future in futures]


@pytest.mark.parametrize("meet", ["at_start", "at_compare_and_set"])
def test_two_concurrent_confirmations_one_wins(
    app: Flask,
    db_session: Session,
    engine: sa.Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    meet: str,
) -> None:
    if meet == "at_compare_and_set":
        # Both threads have read the old number before either updates the account: the
        # compare-and-set alone must settle it.
        checked = threading.Barrier(2, timeout=10)
        original_lock = phonechange._lock_phone
        if database_url.startswith("sqlite"):
            # SQLite lets one writer in at a time, so the latest point both can reach is
            # just before claiming the new number (the first write).
            def wait_then_lock(session: Session, e164: str) -> int:
                checked.wait()
                return original_lock(session, e164)

            monkeypatch.setattr(phonechange, "_lock_phone", wait_then_lock)
        else:
            # PostgreSQL lets both claim their (different) new numbers too; then both
            # swap, and the compare-and-set alone must settle it.
            def lock_then_wait(session: Session, e164: str) -> int:
                phone_id = original_lock(session, e164)
                checked.wait()
                return phone_id

            monkeypatch.setattr(phonechange, "_lock_phone", lock_then_wait)
    jane = make_account(db_session, phone=OLD)

    results = run_together(
        engine,
        lambda session: change(session, jane, new=NEW),
        lambda session: change(session, jane, new=OTHER),
    )

    changed = [r for r in results if isinstance(r, Changed)]
    assert len(changed) == 1, results
    assert [r for r in results if isinstance(r, Conflict)] == [Conflict("already_changed")]
    winner = changed[0].new
    state = committed(app)
    assert state["phones"] == {jane.number: winner}
    assert state["changes"] == [(OLD, winner)]
    assert state["audit"] == [AUDIT_ACTION]
    assert state["numbers"] == {OLD, winner}  # the loser's new number row was rolled back


@pytest.mark.parametrize("new_row", ["created_by_both", "already_there"])
def test_two_accounts_claiming_one_new_number_at_once(
    app: Flask, db_session: Session, engine: sa.Engine, new_row: str
) -> None:
    jane = make_account(db_session, phone=OLD, account_number="10004321")
    john = make_account(db_session, "John Roe", OTHER, "20005678")
    if new_row == "already_there":
        make_phone(db_session, NEW)

    results = run_together(
        engine,
        lambda session: change(session, jane, new=NEW),
        lambda session: change(session, john, expected_old=OTHER, new=NEW),
    )

    assert sorted(type(r).__name__ for r in results) == ["Changed", "Conflict"], results
    assert Conflict("taken") in results
    phones = committed(app)["phones"]
    assert sorted(phones.values()).count(NEW) == 1


# --- cooling-off ----------------------------------------------------------------------------

WEEK = 7 * 86400


@pytest.mark.parametrize(
    ("changed_at", "now", "until"),
    [
        (None, NOW, None),
        (NOW, NOW, NOW + timedelta(days=7)),
        (NOW, NOW + timedelta(days=7, seconds=-1), NOW + timedelta(days=7)),
        (NOW, NOW + timedelta(days=7), None),
        # SQLite hands the column back naive: it is UTC.
        (NOW.replace(tzinfo=None), NOW + timedelta(days=1), NOW + timedelta(days=7)),
        # PostgreSQL hands it back in the session's time zone.
        (
            NOW.astimezone(timezone(timedelta(hours=-8))),
            NOW + timedelta(days=6, hours=23),
            NOW + timedelta(days=7),
        ),
    ],
)
def test_cooling_off(changed_at: datetime | None, now: datetime, until: datetime | None) -> None:
    assert cooling_off_until(changed_at, WEEK, now) == until
    assert changed_recently(changed_at, WEEK, now) is (until is not None)
    if until is not None:
        assert until.utcoffset() == timedelta(0)


def test_no_cooling_off_when_the_period_is_zero() -> None:
    assert cooling_off_until(NOW, 0, NOW) is None
    assert not changed_recently(NOW, 0, NOW)


# --- migration 0002 -------------------------------------------------------------------------


def test_migration_0002_upgrades_and_downgrades(scratch_database_url: str) -> None:
    url = scratch_database_url
    upgrade(url, "0001")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text("INSERT INTO customers (id, name, created_at) VALUES (1, 'Jane Doe', :at)"),
                {"at": NOW},
            )
            connection.execute(
                sa.text("INSERT INTO phone_numbers (id, e164, created_at) VALUES (1, :e, :at)"),
                {"e": OLD, "at": NOW},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO accounts (id, number, customer_id, phone_id, created_at,"
                    " updated_at) VALUES (1, '10004321', 1, 1, :at, :at)"
                ),
                {"at": NOW},
            )

        upgrade(url, "0002")
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            assert "phone_changes" in inspector.get_table_names()
            assert "phone_changed_at" in {c["name"] for c in inspector.get_columns("accounts")}
            assert [i["column_names"] for i in inspector.get_indexes("phone_changes")] == [
                ["account_id"]
            ]
            assert connection.execute(
                sa.text("SELECT number, phone_changed_at FROM accounts")
            ).all() == [("10004321", None)]
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO phone_changes (account_id, old_e164, new_e164, changed_at, mode)"
                    " VALUES (1, :old, :new, :at, 'callback_on_line')"
                ),
                {"old": OLD, "new": NEW, "at": NOW},
            )

        command.downgrade(alembic_config(url), "0001")
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            assert "phone_changes" not in inspector.get_table_names()
            assert "phone_changed_at" not in {c["name"] for c in inspector.get_columns("accounts")}
            assert connection.execute(sa.text("SELECT number FROM accounts")).all() == [
                ("10004321",)
            ]

        upgrade(url)  # and up again, to the head
        with engine.connect() as connection:
            assert "phone_changes" in sa.inspect(connection).get_table_names()
            # The models and the migrations agree (nothing left for autogenerate to do).
            assert_schema_matches_models(connection)
    finally:
        engine.dispose()
