"""Changing an account's number on file: one atomic, race-safe write, plus cooling-off maths.

Proving ownership of the new number (the code call-back) happens elsewhere; by the
time `apply_change` runs the caller is verified and owns `new`. What is left is
the database side, where two things can race: two confirmations for the same
account (both verified against the same old number), and two accounts claiming
the same new number. The first is settled by a compare-and-set on the account's
phone, the second by locking the new number's row; either way the loser gets a
`Conflict` and nothing of its attempt is kept.

No Flask here: callers pass a Session, so the service runs in webhooks, CLI
commands and tests alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, Select, bindparam, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from ivr.phone import mask
from ivr.storage.db import unavailable_as_storage_error
from ivr.storage.models import Account, AuditEvent, Customer, PhoneChange, PhoneNumber

log = logging.getLogger(__name__)

AUDIT_ACTION = "number.changed"

# How ownership of the new number was proven (stored in PhoneChange.mode).
CALLBACK_ON_LINE = "callback_on_line"
CALLBACK_AFTER_CALL = "callback_after_call"

ConflictReason = Literal["taken", "already_changed", "no_account"]


@dataclass(frozen=True)
class Changed:
    """The number on file is now `new`; `old` was replaced at `changed_at`. `email` is
    the account's mailbox on file in the same transaction (for the change notice)."""

    old: str
    new: str
    changed_at: datetime
    email: str | None = None


@dataclass(frozen=True)
class Conflict:
    """Nothing changed, because of `reason`.

    taken: `new` is on file for another account (probably a recycled number: agent
    review); already_changed: the account's number is no longer the one the caller
    was verified against (e.g. a concurrent confirmation won); no_account: no such
    account.
    """

    reason: ConflictReason


def number_on_other_account(session: Session, e164: str, account_id: int) -> bool:
    """True when `e164` is on file for an account other than `account_id`."""
    with unavailable_as_storage_error():
        return bool(session.scalar(_ON_OTHER_ACCOUNT, {"e164": e164, "account_id": account_id}))


def number_on_other_account_now(engine: Engine, e164: str, account_id: int) -> bool:
    """The same question as a single statement in autocommit (no BEGIN/ROLLBACK around
    it): for the early checks a call makes before it asks for a code. The change itself
    asks again inside its transaction, with the new number's row locked."""
    with unavailable_as_storage_error(), engine.connect() as connection:
        reading = connection.execution_options(isolation_level="AUTOCOMMIT")
        params = {"e164": e164, "account_id": account_id}
        return bool(reading.scalar(_ON_OTHER_ACCOUNT, params))


# Built once, with parameters: constructing the statement per call cost more CPU than
# PostgreSQL takes to answer it.
_ON_OTHER_ACCOUNT: Select[tuple[bool]] = select(
    exists()
    .where(Account.phone_id == PhoneNumber.id)
    .where(PhoneNumber.e164 == bindparam("e164"), Account.id != bindparam("account_id"))
)


def apply_change(
    session: Session,
    *,
    account_id: int,
    expected_old: str,
    new: str,
    call_sid: str | None,
    mode: str,
    now: datetime,
) -> Changed | Conflict:
    """Replace the account's number `expected_old` by `new` in one transaction, audited.

    The session's transaction is committed on success and rolled back on a
    conflict or any error, so call it with no unrelated changes pending.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if new == expected_old:
        raise ValueError("the new number is the one on file")
    if not 0 < len(mode) <= 32:
        raise ValueError(f"mode must be 1 to 32 characters, not {mode!r}")
    try:
        with unavailable_as_storage_error():
            outcome = _apply(
                session,
                account_id=account_id,
                expected_old=expected_old,
                new=new,
                call_sid=call_sid,
                mode=mode,
                now=now,
            )
            if isinstance(outcome, Conflict):
                session.rollback()
            else:
                session.commit()
    except BaseException:
        session.rollback()
        raise
    if isinstance(outcome, Conflict):
        log.warning(
            "call %s: number change on account %s refused (%s)",
            call_sid,
            account_id,
            outcome.reason,
        )
    else:
        # The update bypassed the ORM and sessions are made with expire_on_commit=False:
        # objects loaded before (the account, both numbers' account lists) are stale.
        session.expire_all()
        log.info(
            "call %s: number on account %s changed from %s to %s (%s)",
            call_sid,
            account_id,
            mask(expected_old),
            mask(new),
            mode,
        )
    return outcome


def _apply(
    session: Session,
    *,
    account_id: int,
    expected_old: str,
    new: str,
    call_sid: str | None,
    mode: str,
    now: datetime,
) -> Changed | Conflict:
    """The change in four statements when it goes through: claim and lock the new
    number's row, swap the account's number (checked in the same UPDATE), then the
    history and audit rows. A refusal costs a few more, to say why."""
    new_phone_id = _lock_phone(session, new)
    # Compare-and-set, checked under the lock of `new`'s row: only if the number on file
    # is still the one the caller was verified against, and `new` is on no other
    # account. A concurrent confirmation that committed first makes this match no row
    # (PostgreSQL re-checks the condition after waiting for that row's lock); a
    # concurrent change to the same new number on another account has either committed
    # (and is seen: this statement starts after the lock is ours) or waits for us.
    other = aliased(Account)
    verified_against = (
        select(PhoneNumber.id).where(PhoneNumber.e164 == expected_old).scalar_subquery()
    )
    taken_elsewhere = exists().where(other.phone_id == new_phone_id, other.id != account_id)
    mailbox = select(Customer.email).where(Customer.id == Account.customer_id).scalar_subquery()
    swapped = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.phone_id == verified_against,
            ~taken_elsewhere,
        )
        .values(phone_id=new_phone_id, phone_changed_at=now, updated_at=now)
        .returning(mailbox)
        .execution_options(synchronize_session=False)
    ).first()
    if swapped is None:
        return _refusal(session, account_id, expected_old, new)

    # Plain INSERTs in the same transaction (the ORM's unit of work cost more CPU than
    # the change). The audit row is written here rather than through
    # ivr.storage.audit.record, which commits on its own: it must commit or roll back
    # together with the change it describes.
    session.execute(
        insert(PhoneChange).values(
            account_id=account_id,
            old_e164=expected_old,
            new_e164=new,
            changed_at=now,
            call_sid=call_sid,
            mode=mode,
        )
    )
    session.execute(
        insert(AuditEvent).values(
            at=now,
            action=AUDIT_ACTION,
            actor="caller",
            call_sid=call_sid,
            account_id=account_id,
            details={"old": mask(expected_old), "new": mask(new), "mode": mode},
        )
    )
    return Changed(old=expected_old, new=new, changed_at=now, email=swapped[0])


def _refusal(session: Session, account_id: int, expected_old: str, new: str) -> Conflict:
    """Why the swap matched no row, in the order the checks matter to the caller."""
    on_file = session.scalar(
        select(PhoneNumber.e164)
        .join(Account, Account.phone_id == PhoneNumber.id)
        .where(Account.id == account_id)
    )
    if on_file is None:
        return Conflict("no_account")
    if on_file != expected_old:
        return Conflict("already_changed")
    if number_on_other_account(session, new, account_id):
        return Conflict("taken")
    return Conflict("already_changed")  # changed and changed back meanwhile


def _lock_phone(session: Session, e164: str) -> int:
    """The id of `e164`'s PhoneNumber row, created if need be, locked until commit.

    One statement: INSERT … ON CONFLICT DO UPDATE … RETURNING id. The update (of the
    number to itself) locks an existing row until commit, as the insert locks a new
    one, so changes to the same new number are serialised on PostgreSQL; a concurrent
    insert of the same number makes this wait for the other transaction, then lock
    that row. (Not a savepoint and a re-select: with pysqlite a SAVEPOINT that opens
    the transaction is committed by its RELEASE, which would commit the new number's
    row even when the change is then refused. SQLite has no row locks; the insert
    holds its database-wide write lock.)
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        into: Any = postgresql.insert(PhoneNumber)
    elif dialect == "sqlite":
        into = sqlite.insert(PhoneNumber)
    else:
        raise NotImplementedError(f"number changes need PostgreSQL or SQLite, not {dialect}")
    claim = into.values(e164=e164)
    claim = claim.on_conflict_do_update(
        index_elements=[PhoneNumber.e164], set_={"e164": claim.excluded.e164}
    ).returning(PhoneNumber.id)
    phone_id = session.scalar(claim)
    if phone_id is None:  # cannot happen: the row is inserted or updated
        raise RuntimeError(f"phone number {mask(e164)} could not be claimed")
    return int(phone_id)


def history(session: Session, account_id: int) -> list[PhoneChange]:
    """The account's number changes, newest first."""
    query = (
        select(PhoneChange)
        .where(PhoneChange.account_id == account_id)
        .order_by(PhoneChange.changed_at.desc(), PhoneChange.id.desc())
    )
    with unavailable_as_storage_error():
        return list(session.scalars(query))


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; naive values (as SQLite returns them) are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def cooling_off_until(
    phone_changed_at: datetime | None, cooling_off_seconds: int, now: datetime
) -> datetime | None:
    """When the cooling-off after the last number change ends (UTC), or None if it is over."""
    if phone_changed_at is None or cooling_off_seconds <= 0:
        return None
    until = as_utc(phone_changed_at) + timedelta(seconds=cooling_off_seconds)
    return until if as_utc(now) < until else None


def changed_recently(
    phone_changed_at: datetime | None, cooling_off_seconds: int, now: datetime
) -> bool:
    """True while the account is in the cooling-off period after a number change."""
    return cooling_off_until(phone_changed_at, cooling_off_seconds, now) is not None
