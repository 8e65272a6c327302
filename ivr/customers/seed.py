"""Demo customers for development and the call simulator, loaded through the CSV importer.

The numbers are in the 555-0100…0199 range reserved for fiction, yet valid for
`phonenumbers`. The Lopez family shares one phone, so the demo also shows a
family line (several accounts on one caller ID).

`reset_demo` puts them back as new, so the README's example calls (which change
numbers, spend code sends and may lock an account out) can be run in any order.
"""

from __future__ import annotations

import redis
from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from ivr.customers.importer import CustomerRow, import_records
from ivr.storage import keys
from ivr.storage.kv import unavailable_as_storage_error
from ivr.storage.models import Account, PhoneChange, PhoneNumber

# (name, phone, account_number, email) — the same columns as the CSV file.
DEMO_CUSTOMERS: tuple[tuple[str, str, str, str], ...] = (
    ("Jane Doe", "+14155550100", "10004321", "jane@example.com"),
    ("John Roe", "+14155550111", "20005678", ""),
    ("Ana Lopez", "+14155550122", "30001111", "ana@example.com"),
    ("Luis Lopez", "+14155550122", "30002222", ""),
)

DEMO_SOURCE = "demo customers"


def seed_demo(session: Session, default_region: str) -> list[CustomerRow]:
    """Upsert the demo customers (idempotent, audited, commits); return their rows."""
    result = import_records(
        session,
        enumerate(DEMO_CUSTOMERS, start=1),
        source=DEMO_SOURCE,
        default_region=default_region,
        actor="demo",
    )
    return result.rows


def reset_demo(session: Session, client: redis.Redis, default_region: str) -> list[CustomerRow]:
    """Put every demo customer back as new: the phone, name and email of DEMO_CUSTOMERS,
    no number history, no "number changed" flag, and in Redis no pending change, code,
    send count or lockout. Audit records stay: they are the history of what happened."""
    numbers = [account_number for _, _, account_number, _ in DEMO_CUSTOMERS]
    ids = list(session.scalars(select(Account.id).where(Account.number.in_(numbers))))
    moved_to = set(
        session.scalars(select(PhoneChange.new_e164).where(PhoneChange.account_id.in_(ids)))
    )
    session.execute(delete(PhoneChange).where(PhoneChange.account_id.in_(ids)))
    session.execute(update(Account).where(Account.id.in_(ids)).values(phone_changed_at=None))
    rows = seed_demo(session, default_region)  # commits, with the numbers back in place
    # Numbers the demo accounts moved to and no account holds any more.
    orphaned = delete(PhoneNumber).where(
        PhoneNumber.e164.in_(moved_to), ~exists().where(Account.phone_id == PhoneNumber.id)
    )
    session.execute(orphaned)
    session.commit()
    ids = list(session.scalars(select(Account.id).where(Account.number.in_(numbers))))
    with unavailable_as_storage_error():
        for account_id in ids:
            stale = list(client.scan_iter(match=keys.account_pattern(account_id)))
            if stale:
                client.delete(*stale)
    return rows
