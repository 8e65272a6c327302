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
from ivr.models import Account


def find_account(session: Session, account_number: str) -> Account | None:
    """The account with this number (spaces and dashes ignored), or None."""
    number = normalise_account_number(account_number)
    return session.scalars(select(Account).where(Account.number == number)).first()


def account_summary(session: Session, account: Account) -> dict[str, Any]:
    """The account as JSON-ready data: owner, phone in E.164, accounts sharing the phone."""
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
    }


def _iso_utc(moment: datetime) -> str:
    # SQLite hands timezone-aware columns back naive (they were stored as UTC);
    # PostgreSQL hands them back in the session's time zone. Show UTC either way.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()
