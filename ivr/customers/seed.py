"""Demo customers for development and the call simulator, loaded through the CSV importer.

The numbers are in the 555-0100…0199 range reserved for fiction, yet valid for
`phonenumbers`. The Lopez family shares one phone, so the demo also shows a
family line (several accounts on one caller ID).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ivr.customers.importer import CustomerRow, import_records

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
