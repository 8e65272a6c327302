"""Upserting validated customer rows in batches: a few statements per thousand rows.

`plan_rows` loads what the rows can touch (their accounts, and the customers and phone
numbers a new account may join) with a few `IN (...)` queries per batch, then decides
every row in file order in memory, keeping what it knows up to date as it goes, so the
outcome is the one of applying the rows one by one. `write_plan` then writes the new
and changed rows with one executemany statement per table and batch. Nothing here
commits: the importer does, once, so an import is all or nothing.

The rules: a row is the account with its account number. A new account joins the
customer with the same email (case-insensitive; the oldest such customer), or, when
the row has no email, the customer with the same name on the same phone. A row's name
and email become its customer's, so rows of one customer in a file must agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import ColumnElement, String, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute, Session

from ivr.customers.rows import CustomerRow, Progress, RowProblem
from ivr.storage.models import Account, Customer, PhoneNumber

# Rows per statement and values per IN list: far below PostgreSQL's 65,535 parameters,
# and small enough for each statement to finish well inside IVR_STORAGE_TIMEOUT.
BATCH = 1000

_T = TypeVar("_T")

# Single-table lookups by unique or primary key: a join of a thousand accounts with their
# customers and phones made PostgreSQL scan both tables whole, for every batch.
_ACCOUNTS = select(Account.id, Account.number, Account.customer_id, Account.phone_id)
_CUSTOMERS = select(Customer.id, Customer.name, Customer.email)
_PHONES = select(PhoneNumber.id, PhoneNumber.e164)


@dataclass(eq=False, slots=True)
class _Customer:
    id: int | None  # None until written
    order: tuple[int, int]  # (0, id); customers new in this import sort after, (1, n)
    name: str
    email: str | None
    changed: bool = False  # an existing customer whose name or email the import changes


@dataclass(eq=False, slots=True)
class _Account:
    id: int | None  # None until written
    number: str
    customer: _Customer
    phone: str  # E.164
    changed: bool = False  # an existing account the import moves to another phone


class _Known:
    """The database as far as the rows can see it, updated as each row is decided."""

    def __init__(self) -> None:
        self.accounts: dict[str, _Account] = {}
        self.customers: dict[int, _Customer] = {}
        self.phone_ids: dict[str, int] = {}
        self.phones: dict[int, str] = {}  # E.164 by id
        # Everyone who had the key at some point; match() checks they still do.
        self._by_email: defaultdict[str, list[_Customer]] = defaultdict(list)
        self._by_phone: defaultdict[str, list[_Account]] = defaultdict(list)
        self._new_customers = 0

    def add_accounts(self, found: Iterable[tuple[int, str, int, int]]) -> None:
        """Accounts as _ACCOUNTS selects them; their customers and phones must be known."""
        for account_id, number, customer_id, phone_id in found:
            if number not in self.accounts:
                e164 = self.phones[phone_id]
                account = _Account(account_id, number, self.customers[customer_id], e164)
                self.accounts[number] = account
                self._by_phone[e164].append(account)

    def add_customers(self, found: Iterable[tuple[int, str, str | None]]) -> None:
        for customer_id, name, email in found:
            if customer_id not in self.customers:
                customer = _Customer(customer_id, (0, customer_id), name, email)
                self.customers[customer_id] = customer
                if email:
                    self._by_email[email.lower()].append(customer)

    def add_phones(self, found: Iterable[tuple[int, str]]) -> None:
        for phone_id, e164 in found:
            self.phone_ids[e164] = phone_id
            self.phones[phone_id] = e164

    def match(self, row: CustomerRow) -> _Customer | None:
        """The customer a new account joins: same email, else same name on the same phone."""
        if row.email:
            key = row.email.lower()
            found = [c for c in self._by_email[key] if c.email and c.email.lower() == key]
        else:
            found = [
                account.customer
                for account in self._by_phone[row.phone]
                if account.phone == row.phone and account.customer.name == row.name
            ]
        return min(found, key=lambda customer: customer.order, default=None)

    def new_customer(self, row: CustomerRow) -> _Customer:
        self._new_customers += 1
        customer = _Customer(None, (1, self._new_customers), row.name, row.email)
        if row.email:
            self._by_email[row.email.lower()].append(customer)
        return customer

    def rename(self, customer: _Customer, row: CustomerRow) -> None:
        customer.name, customer.email = row.name, row.email
        if row.email:
            self._by_email[row.email.lower()].append(customer)

    def new_account(self, row: CustomerRow, customer: _Customer) -> _Account:
        account = _Account(None, row.account_number, customer, row.phone)
        self.accounts[row.account_number] = account
        self._by_phone[row.phone].append(account)
        return account

    def move(self, account: _Account, phone: str) -> None:
        account.phone = phone
        self._by_phone[phone].append(account)


@dataclass
class Plan:
    """What an import will write, and what it counted and refused on the way."""

    known: _Known
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rows: list[CustomerRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    new_customers: list[_Customer] = field(default_factory=list)
    changed_customers: list[_Customer] = field(default_factory=list)
    new_accounts: list[_Account] = field(default_factory=list)
    changed_accounts: list[_Account] = field(default_factory=list)

    @property
    def new_phones(self) -> list[str]:
        """Numbers that new or moved accounts use and that have no row yet."""
        used = (account.phone for account in [*self.new_accounts, *self.changed_accounts])
        return list(dict.fromkeys(e164 for e164 in used if e164 not in self.known.phone_ids))


def plan_rows(
    session: Session,
    rows: Sequence[CustomerRow],
    *,
    source: str,
    progress: Progress | None = None,
) -> Plan:
    """Decide every row in file order; report rows that contradict an earlier row's customer."""
    plan = Plan(_load(session, rows, progress))
    known = plan.known
    # The first row of this import that decided a customer's name and email.
    claims: dict[_Customer, CustomerRow] = {}
    for row in rows:
        account = known.accounts.get(row.account_number)
        customer = account.customer if account is not None else known.match(row)

        if customer is not None and customer in claims:
            earlier = claims[customer]
            if (earlier.name, earlier.email) != (row.name, row.email):
                differs = "name" if earlier.name != row.name else "email"
                message = (
                    f"this row's customer is the one on line {earlier.line}, "
                    f"which gives a different {differs}"
                )
                plan.problems.append(RowProblem(source, row.line, differs, message))
                continue

        if customer is None:
            customer = known.new_customer(row)
            plan.new_customers.append(customer)
        # The row's name and email win even for a customer matched by email or by name and
        # phone; anything else would make the next run of the same file update them.
        changed = customer.name != row.name or customer.email != row.email
        if changed:
            known.rename(customer, row)
            if customer.id is not None and not customer.changed:
                customer.changed = True
                plan.changed_customers.append(customer)

        if account is None:
            plan.new_accounts.append(known.new_account(row, customer))
            plan.created += 1
        else:
            if account.phone != row.phone:
                changed = True
                known.move(account, row.phone)
                if account.id is not None and not account.changed:
                    account.changed = True
                    plan.changed_accounts.append(account)
            if changed:
                plan.updated += 1
            else:
                plan.unchanged += 1
        claims[customer] = row
        plan.rows.append(row)
    return plan


def _load(session: Session, rows: Sequence[CustomerRow], progress: Progress | None) -> _Known:
    """Load the accounts the rows name, and whatever a new account among them may join."""
    known = _Known()
    numbers = _unique(row.account_number for row in rows)
    stage = _Stage(progress, "finding accounts", len(numbers))
    for batch in _batches(numbers):
        _load_accounts(session, known, _one_of(session, Account.number, batch))
        stage.advance(len(batch))

    new = [row for row in rows if row.account_number not in known.accounts]
    emails = _unique(row.email.lower() for row in new if row.email)
    phones = _unique(row.phone for row in rows if row.phone not in known.phone_ids)
    shared = _unique(row.phone for row in new if not row.email)
    stage = _Stage(progress, "matching", len(emails) + len(phones) + len(shared))
    for batch in _batches(emails):
        where = _one_of(session, func.lower(Customer.email, type_=String), batch)
        known.add_customers(session.execute(_CUSTOMERS.where(where)))
        stage.advance(len(batch))
    for batch in _batches(phones):
        known.add_phones(session.execute(_PHONES.where(_one_of(session, PhoneNumber.e164, batch))))
        stage.advance(len(batch))
    # Every account on the phones of new rows without an email: a family line to join.
    for batch in _batches(shared):
        phone_ids = [known.phone_ids[e164] for e164 in batch if e164 in known.phone_ids]
        if phone_ids:
            _load_accounts(session, known, _one_of(session, Account.phone_id, phone_ids))
        stage.advance(len(batch))
    return known


def _load_accounts(session: Session, known: _Known, where: ColumnElement[bool]) -> None:
    """Load the accounts `where` selects, with the customers and phones not known yet."""
    found = session.execute(_ACCOUNTS.where(where)).all()
    customers = _unique(c for _, _, c, _ in found if c not in known.customers)
    phones = _unique(p for _, _, _, p in found if p not in known.phones)
    for batch in _batches(customers):
        known.add_customers(session.execute(_CUSTOMERS.where(_one_of(session, Customer.id, batch))))
    for batch in _batches(phones):
        known.add_phones(session.execute(_PHONES.where(_one_of(session, PhoneNumber.id, batch))))
    known.add_accounts(found)


def write_plan(session: Session, plan: Plan, *, progress: Progress | None = None) -> None:
    """Write the plan's new and changed rows: one executemany per table and batch."""
    phone_ids = plan.known.phone_ids
    new_phones = plan.new_phones
    parts: list[Sequence[object]] = [
        new_phones,
        plan.new_customers,
        plan.changed_customers,
        plan.new_accounts,
        plan.changed_accounts,
    ]
    stage = _Stage(progress, "writing", sum(len(part) for part in parts))
    for phones in _batches(new_phones):
        stmt = insert(PhoneNumber).returning(PhoneNumber.e164, PhoneNumber.id)
        for e164, phone_id in session.execute(stmt, [{"e164": e164} for e164 in phones]):
            phone_ids[e164] = phone_id
        stage.advance(len(phones))
    for customers in _batches(plan.new_customers):
        _insert_customers(session, customers)
        stage.advance(len(customers))
    for customers in _batches(plan.changed_customers):
        values = [{"id": c.id, "name": c.name, "email": c.email} for c in customers]
        session.execute(update(Customer), values)
        stage.advance(len(customers))
    for accounts in _batches(plan.new_accounts):
        values = [
            {"number": a.number, "customer_id": a.customer.id, "phone_id": phone_ids[a.phone]}
            for a in accounts
        ]
        session.execute(insert(Account), values)
        stage.advance(len(accounts))
    for accounts in _batches(plan.changed_accounts):
        values = [{"id": a.id, "phone_id": phone_ids[a.phone]} for a in accounts]
        session.execute(update(Account), values)
        stage.advance(len(accounts))


def _insert_customers(session: Session, customers: Sequence[_Customer]) -> None:
    """Insert new customers in one statement and give each its id.

    The ids come back from RETURNING in no promised order (SQLAlchemy would fall back to
    one statement per row on SQLite to promise one), so they are matched by name and
    email. New customers alike in both differ only in their ids (and creation times
    microseconds apart): within such a group, ids go in ascending order to the
    customers in file order.
    """
    values = [{"name": c.name, "email": c.email} for c in customers]
    stmt = insert(Customer).returning(Customer.id, Customer.name, Customer.email)
    # render_nulls: one statement for all rows, with or without an email.
    returned = session.execute(stmt, values, execution_options={"render_nulls": True})
    ids: defaultdict[tuple[str, str | None], list[int]] = defaultdict(list)
    for customer_id, name, email in returned:
        ids[name, email].append(customer_id)
    for group in ids.values():
        group.sort(reverse=True)
    for customer in customers:
        customer.id = ids[customer.name, customer.email].pop()


def _one_of(
    session: Session, column: ColumnElement[_T] | QueryableAttribute[_T], values: Sequence[_T]
) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(:values)`, one array parameter.

    A thousand parameters cost more than the lookup itself there: the driver parses them
    and the server plans them on every statement.
    """
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


class _Stage:
    """Tells `progress` how far one stage has got (nothing when there is no `progress`)."""

    def __init__(self, progress: Progress | None, name: str, total: int) -> None:
        self._progress, self._name, self._total, self._done = progress, name, total, 0
        self.advance(0)

    def advance(self, count: int) -> None:
        self._done += count
        if self._progress is not None:
            self._progress(self._name, self._done, self._total)


def _unique(values: Iterable[_T]) -> list[_T]:
    return list(dict.fromkeys(values))


def _batches(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]
