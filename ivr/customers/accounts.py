"""Looking accounts up and describing them for ops tools (`ivr customers show`).

`account_summary` is the one place that decides what an account looks like as
data; later facts (number history, risk flags) are added here as new keys.
Values are unmasked: this is for operators, never for logs or audit records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.customers.importer import normalise_account_number
from ivr.numberchange.onfile import as_utc, cooling_off_until, history
from ivr.storage.models import Account

DEFAULT_COOLING_OFF = 7 * 86400  # seconds flagged after a number change (security.md)


def find_account(session: Session, account_number: str) -> Account | None:
    """The account with this number (spaces and dashes ignored), or None."""
    number = normalise_account_number(account_number)
    return session.scalars(select(Account).where(Account.number == number)).first()


def account_summary(
    session: Session,
    account: Account,
    *,
    cooling_off_seconds: int = DEFAULT_COOLING_OFF,
    now: datetime | None = None,
    pending: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The account as JSON-ready data: owner, phone, sharers, number history and flags.

    `pending` is the number change in progress, if any, as its owner describes it;
    it is passed in because it lives outside the database (see ivr.numberchange.service).
    """
    until = cooling_off_until(account.phone_changed_at, cooling_off_seconds, now or _now())
    flags = ["number_changed_recently"] if until is not None else []
    others = session.scalars(
        select(Account.number)
        .where(Account.phone_id == account.phone_id, Account.id != account.id)
        .order_by(Account.number)
    ).all()
    return {
        "account_number": account.number,
        "name": account.customer.name,
        "email": account.customer.email,
        "phone": account.phone.e164,
        "customer_id": account.customer_id,
        "created_at": _iso_utc(account.created_at),
        "other_accounts_on_phone": list(others),
        "phone_history": [
            {
                "old": change.old_e164,
                "new": change.new_e164,
                "changed_at": _iso_utc(change.changed_at),
                "call_sid": change.call_sid,
                "mode": change.mode,
            }
            for change in history(session, account.id)
        ],
        "flags": flags,
        "number_changed_until": _iso_utc(until) if until is not None else None,
        "pending_change": pending,
    }


def _now() -> datetime:
    return datetime.now(UTC)


def _iso_utc(moment: datetime) -> str:
    # SQLite hands timezone-aware columns back naive (they were stored as UTC);
    # PostgreSQL hands them back in the session's time zone. Show UTC either way.
    return as_utc(moment).isoformat()
