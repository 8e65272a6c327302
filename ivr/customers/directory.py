"""Account lookups for the engine, over the database (one query each)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, event, select
from sqlalchemy.orm import Session

from ivr.flow.engine import AccountView
from ivr.flow.state import MAX_CANDIDATES
from ivr.numberchange.onfile import as_utc
from ivr.storage.db import read_rows, unavailable_as_storage_error
from ivr.storage.models import Account, Customer, PhoneNumber


class SqlDirectory:
    """The engine's Directory, backed by SQLAlchemy.

    With `autocommit`, lookups run outside the session, without a transaction around
    them (one statement each instead of BEGIN, SELECT, ROLLBACK): for the webhooks,
    which only read accounts here. Not where the session has written an account it then
    reads back (number changes).

    An autocommit directory lives for one request and remembers the accounts it read,
    so the several parts of one step that need the same account (the digits check, then
    the code it sends) read it once. Anything the request's session commits (a number
    change) makes it forget them: a check after a change reads the account again.
    """

    def __init__(self, session: Session, *, autocommit: bool = False):
        self.session = session
        self.autocommit = autocommit
        self._seen: dict[int, AccountView] = {}
        if autocommit:
            event.listen(session, "after_commit", self._forget)

    def _forget(self, _session: Session) -> None:
        self._seen.clear()

    def accounts_for_phone(self, e164: str) -> list[AccountView]:
        return self._views(_BY_PHONE, {"e164": e164})

    def accounts_by_ids(self, ids: Sequence[int]) -> list[AccountView]:
        if not ids:
            return []
        if self.autocommit and all(i in self._seen for i in ids):
            return sorted((self._seen[i] for i in set(ids)), key=lambda view: view.id)
        if len(set(ids)) == 1:  # the usual case: no expanding IN to render each time
            return self._views(_BY_ID, {"id": ids[0]})
        return self._views(_BY_IDS, {"ids": list(ids)})

    def account_by_number(self, number: str) -> AccountView | None:
        views = self._views(_BY_NUMBER, {"number": number})
        return views[0] if views else None

    def _views(self, query: _Lookup, params: dict[str, Any]) -> list[AccountView]:
        with unavailable_as_storage_error():
            if self.autocommit:
                rows = read_rows(query, params)
            else:
                rows = self.session.execute(query, params).all()
        views = [
            AccountView(
                id=r[0],
                number=r[1],
                name=r[2],
                phone=r[3],
                email=r[4],
                phone_changed_at=_epoch(r[5]),
            )
            for r in rows
        ]
        if self.autocommit:
            self._seen.update((view.id, view) for view in views)
        return views


_Lookup = Select[int, str, str, str, str | None, datetime | None]


def _base() -> _Lookup:
    return (
        select(
            Account.id,
            Account.number,
            Customer.name,
            PhoneNumber.e164,
            Customer.email,
            Account.phone_changed_at,
        )
        .join(Customer, Account.customer_id == Customer.id)
        .join(PhoneNumber, Account.phone_id == PhoneNumber.id)
        .order_by(Account.id)
    )


# Built once: constructing a statement costs more CPU than PostgreSQL takes to answer it.
_BY_PHONE = _base().where(PhoneNumber.e164 == bindparam("e164")).limit(MAX_CANDIDATES)
_BY_ID = _base().where(Account.id == bindparam("id"))
_BY_IDS = _base().where(Account.id.in_(bindparam("ids", expanding=True)))
_BY_NUMBER = _base().where(Account.number == bindparam("number"))


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else as_utc(moment).timestamp()
