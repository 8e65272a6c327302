"""Factories for customers, phone numbers, accounts and number changes in tests.

Each helper commits, because webhook requests and CLI commands read through their
own sessions and must see the rows. Phone numbers are shared rows, as in the
service: a second account on the same phone reuses the first one's PhoneNumber.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.numberchange.onfile import CALLBACK_ON_LINE, Changed, apply_change
from ivr.storage.models import Account, Customer, PhoneNumber


def make_phone(session: Session, e164: str = "+14155550100") -> PhoneNumber:
    """The PhoneNumber row for `e164`, created when it does not exist yet."""
    phone = session.scalars(select(PhoneNumber).where(PhoneNumber.e164 == e164)).first()
    if phone is None:
        phone = PhoneNumber(e164=e164)
        session.add(phone)
        session.commit()
    return phone


def make_customer(session: Session, name: str = "Jane Doe", email: str | None = None) -> Customer:
    """A new customer with no accounts yet."""
    customer = Customer(name=name, email=email)
    session.add(customer)
    session.commit()
    return customer


def make_account(
    session: Session,
    name: str = "Jane Doe",
    phone: str = "+14155550100",
    account_number: str = "10004321",
    email: str | None = None,
    *,
    customer: Customer | None = None,
) -> Account:
    """An account on `phone` (E.164), for `customer` or a new customer named `name`."""
    owner = customer if customer is not None else Customer(name=name, email=email)
    account = Account(number=account_number, customer=owner, phone=make_phone(session, phone))
    session.add(account)
    session.commit()
    return account


def change_phone(
    session: Session,
    account: Account,
    new: str,
    *,
    now: datetime | None = None,
    mode: str = CALLBACK_ON_LINE,
    call_sid: str | None = "CA" + "c" * 32,
) -> Changed:
    """Move `account` to the number `new` as a confirmed change does (history, audit, flag)."""
    result = apply_change(
        session,
        account_id=account.id,
        expected_old=account.phone.e164,
        new=new,
        call_sid=call_sid,
        mode=mode,
        now=now or datetime.now(UTC),
    )
    assert isinstance(result, Changed), result
    return result
