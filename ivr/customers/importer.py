"""Customer CSV import: strict parsing, validation of every row, one all-or-nothing upsert.

The file format is `name,phone,account_number,email`. Every row is checked and
every problem reported with its file, physical line and field; nothing is committed
unless every row is good (or the caller asked to skip the bad ones). Rows are
upserted by account number; several accounts may share one phone number (a family
line) and one customer. Re-running the same file changes nothing: a row's name and
email are its customer's, so rows of one file that share a customer must agree.

No Flask here: the CLI, the demo seed and tests all call the same functions with a
SQLAlchemy session and a default region for national-format phone numbers.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivr.errors import IvrError
from ivr.phone import to_e164
from ivr.storage import audit
from ivr.storage.models import Account, Customer, PhoneNumber

COLUMNS = ("name", "phone", "account_number", "email")
EXPECTED_HEADER = ",".join(COLUMNS)
NAME_MAX = 200
EMAIL_MAX = 320
ACCOUNT_DIGITS_MIN = 4
ACCOUNT_DIGITS_MAX = 32
AUDIT_ACTION = "customers.import"

# ASCII digits only: str.isdigit() would also accept superscripts and other scripts' digits.
_DIGITS_RE = re.compile(r"[0-9]+")
_ACCOUNT_SEPARATORS = str.maketrans("", "", " -")

# A raw row: its 1-based physical line number and its cells, in COLUMNS order.
Record = tuple[int, Sequence[str]]
# Collects one problem of the row being validated: (field, message).
_Report = Callable[[str, str], None]


@dataclass(frozen=True)
class RowProblem:
    """One problem in an import source: where it is (file, line, field) and why."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        location = f"{self.file}:{self.line}" if self.line else self.file
        return f"{location}: {self.field}: {self.message}"


@dataclass
class _RowReport:
    """The problems of one row, collected by the field checks."""

    source: str
    line: int
    problems: list[RowProblem] = field(default_factory=list)

    def __call__(self, field_name: str, message: str) -> None:
        self.problems.append(RowProblem(self.source, self.line, field_name, message))


@dataclass(frozen=True)
class CustomerRow:
    """One validated row: phone in E.164, account number as bare digits."""

    line: int
    name: str
    phone: str
    account_number: str
    email: str | None


@dataclass
class ImportResult:
    """What an import did, counted per row; `skipped` holds the problems of skipped rows."""

    file: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rows: list[CustomerRow] = field(default_factory=list)
    skipped: list[RowProblem] = field(default_factory=list)

    @property
    def skipped_rows(self) -> int:
        """How many rows were left out (a row may have several problems)."""
        return len({problem.line for problem in self.skipped})

    @property
    def imported_rows(self) -> int:
        """How many rows were applied (created, updated or already up to date)."""
        return self.created + self.updated + self.unchanged

    def counts(self) -> dict[str, int]:
        """The counts alone: safe for audit records (no phone or account numbers)."""
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped_rows,
        }

    def summary(self) -> str:
        """One line for humans: `imported customers.csv: 3 created, 0 updated, 1 unchanged`."""
        text = (
            f"imported {self.file}: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged"
        )
        if self.skipped:
            text += f", {self.skipped_rows} skipped"
        return text


class CustomerImportError(IvrError):
    """An import was refused as a whole; nothing was written. Carries every problem."""

    def __init__(self, problems: Sequence[RowProblem]):
        self.problems = list(problems)
        summary = "\n".join(str(problem) for problem in self.problems)
        super().__init__(f"{len(self.problems)} problem(s), nothing imported:\n{summary}")


def import_csv(
    session: Session,
    path: Path,
    default_region: str,
    *,
    skip_invalid: bool = False,
    actor: str = "cli",
) -> ImportResult:
    """Import a customers CSV file; raise CustomerImportError unless every row is good."""
    return import_records(
        session,
        read_csv(path),
        source=path.name,
        default_region=default_region,
        skip_invalid=skip_invalid,
        actor=actor,
    )


def read_csv(path: Path) -> list[Record]:
    """Read a CSV file into (line, cells) records after checking its header."""
    name = path.name
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CustomerImportError(
            [RowProblem(name, line, "file", f"is not UTF-8 text ({exc.reason})")]
        ) from exc

    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[Record] = []
    try:
        header = next(reader, None)
        _check_header(name, header)
        # A quoted cell may span lines: a record starts on the line after the previous one ended.
        last_line = reader.line_num
        for cells in reader:
            start = last_line + 1
            last_line = reader.line_num
            if all(not cell.strip() for cell in cells):
                continue  # blank lines and spreadsheet ",,," rows carry nothing
            records.append((start, cells))
    except csv.Error as exc:
        raise CustomerImportError(
            [RowProblem(name, reader.line_num or None, "file", f"is not valid CSV ({exc})")]
        ) from exc
    return records


def _check_header(file: str, header: list[str] | None) -> None:
    if header is None:
        raise CustomerImportError(
            [RowProblem(file, None, "header", f"the file is empty; expected {EXPECTED_HEADER!r}")]
        )
    found = [cell.strip() for cell in header]
    if tuple(found) != COLUMNS:
        raise CustomerImportError(
            [
                RowProblem(
                    file,
                    1,
                    "header",
                    f"expected {EXPECTED_HEADER!r}, found {','.join(found)!r}",
                )
            ]
        )


def validate_records(
    records: Iterable[Record], *, source: str, default_region: str
) -> tuple[list[CustomerRow], list[RowProblem]]:
    """Check every record; return the good rows and the problems of the bad ones."""
    rows: list[CustomerRow] = []
    problems: list[RowProblem] = []
    # account number -> (line, comparable data) of its first occurrence in this source
    first_seen: dict[str, tuple[int, tuple[str, ...]]] = {}
    for line, cells in records:
        report = _RowReport(source, line)
        row = _validate_row(line, cells, default_region, first_seen, report)
        problems.extend(report.problems)
        if row is not None and not report.problems:
            rows.append(row)
    return rows, problems


def _validate_row(
    line: int,
    cells: Sequence[str],
    default_region: str,
    first_seen: dict[str, tuple[int, tuple[str, ...]]],
    problem: _Report,
) -> CustomerRow | None:
    if len(cells) != len(COLUMNS):
        problem("row", f"expected {len(COLUMNS)} cells ({EXPECTED_HEADER}), found {len(cells)}")
        return None
    raw_name, raw_phone, raw_account, raw_email = (cell.strip() for cell in cells)
    name = _check_name(raw_name, problem)
    phone = _check_phone(raw_phone, default_region, problem)
    account_number = _check_account_number(raw_account, problem)
    email = _check_email(raw_email, problem)

    if account_number is not None:
        # Compare normalised values where they exist, so "(415) 555-0100" equals "+14155550100".
        data = (name or raw_name, phone or raw_phone, email or raw_email)
        earlier = first_seen.setdefault(account_number, (line, data))
        if earlier[1] != data:
            problem(
                "account_number",
                f"{account_number!r} is already on line {earlier[0]} with different data",
            )
    if name is None or phone is None or account_number is None:
        return None
    return CustomerRow(line, name, phone, account_number, email)


def _check_name(value: str, problem: _Report) -> str | None:
    if not value:
        problem("name", "must not be empty")
        return None
    if len(value) > NAME_MAX:
        problem("name", f"is {len(value)} characters long; at most {NAME_MAX} are allowed")
        return None
    # Names are whispered to agents and shown on screens: a quoted line break is a mistake.
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        problem("name", "must not contain line breaks or other control characters")
        return None
    return value


def _check_phone(value: str, default_region: str, problem: _Report) -> str | None:
    if not value:
        problem("phone", "must not be empty")
        return None
    e164 = to_e164(value, default_region)
    if e164 is None:
        problem("phone", f"{value!r} is not a valid phone number for region {default_region}")
    return e164


def normalise_account_number(value: str) -> str:
    """Strip the spaces and dashes people type into account numbers."""
    return value.strip().translate(_ACCOUNT_SEPARATORS)


def _check_account_number(value: str, problem: _Report) -> str | None:
    digits = normalise_account_number(value)
    if not digits:
        problem("account_number", "must not be empty")
        return None
    if not _DIGITS_RE.fullmatch(digits):
        problem("account_number", f"{value!r} must contain only digits (spaces and dashes aside)")
        return None
    if not ACCOUNT_DIGITS_MIN <= len(digits) <= ACCOUNT_DIGITS_MAX:
        problem(
            "account_number",
            f"{value!r} has {len(digits)} digits; "
            f"{ACCOUNT_DIGITS_MIN} to {ACCOUNT_DIGITS_MAX} are required",
        )
        return None
    return digits


def _check_email(value: str, problem: _Report) -> str | None:
    if not value:
        return None
    if len(value) > EMAIL_MAX:
        problem("email", f"is {len(value)} characters long; at most {EMAIL_MAX} are allowed")
        return None
    if not is_plausible_email(value):
        problem("email", f"{value!r} is not a valid email address")
        return None
    return value


def is_plausible_email(value: str) -> bool:
    """One @, a non-empty local part, a dotted domain, no spaces and no display name."""
    if parseaddr(value) != ("", value) or any(ch.isspace() for ch in value):
        return False
    local, at, domain = value.partition("@")
    if not at or not local or "@" in domain:
        return False
    labels = domain.split(".")
    return len(labels) > 1 and all(labels)


def import_records(
    session: Session,
    records: Iterable[Record],
    *,
    source: str,
    default_region: str,
    skip_invalid: bool = False,
    actor: str = "cli",
) -> ImportResult:
    """Validate and upsert raw records in one transaction, audited once; all or nothing.

    With `skip_invalid` the good rows are imported and the bad ones reported in
    `ImportResult.skipped`; without it any problem rolls everything back and raises.
    The session is committed on success and rolled back on any failure.
    """
    rows, problems = validate_records(records, source=source, default_region=default_region)
    result = ImportResult(file=source)
    try:
        # Even when some rows are already known to be bad, apply the good ones (then roll
        # back) so that one run also reports the conflicts only the database can reveal.
        problems.extend(_apply(session, rows, result))
        problems.sort(key=lambda p: p.line or 0)
        if problems and not skip_invalid:
            raise CustomerImportError(problems)
        result.skipped = problems
        audit.record(
            session, AUDIT_ACTION, actor=actor, details={**result.counts(), "file": source}
        )
    except BaseException:
        session.rollback()
        raise
    return result


def _apply(session: Session, rows: Sequence[CustomerRow], result: ImportResult) -> list[RowProblem]:
    """Upsert rows in file order; return rows that contradict an earlier row's customer."""
    problems: list[RowProblem] = []
    phones: dict[str, PhoneNumber] = {}
    # customer id -> the first row of this import that decided its name and email
    claims: dict[int, CustomerRow] = {}
    for row in rows:
        account = session.scalars(
            select(Account).where(Account.number == row.account_number)
        ).first()
        customer = account.customer if account is not None else _match_customer(session, row)

        if customer is not None and customer.id in claims:
            earlier = claims[customer.id]
            if (earlier.name, earlier.email) != (row.name, row.email):
                differs = "name" if earlier.name != row.name else "email"
                problems.append(
                    RowProblem(
                        result.file,
                        row.line,
                        differs,
                        f"this row's customer is the one on line {earlier.line}, "
                        f"which gives a different {differs}",
                    )
                )
                continue

        phone = phones.get(row.phone) or _phone_row(session, row.phone)
        phones[row.phone] = phone
        if customer is None:
            customer = Customer(name=row.name, email=row.email)
            session.add(customer)
        # The row's name and email win even for a customer matched by email or by name and
        # phone; anything else would make the next run of the same file update them.
        changed = customer.name != row.name or customer.email != row.email
        customer.name = row.name
        customer.email = row.email

        if account is None:
            session.add(Account(number=row.account_number, customer=customer, phone=phone))
            result.created += 1
        else:
            changed = changed or account.phone_id != phone.id
            account.phone = phone
            if changed:
                result.updated += 1
            else:
                result.unchanged += 1
        session.flush()  # later rows must find this row's customer, phone and account
        claims[customer.id] = row
        result.rows.append(row)
    return problems


def _match_customer(session: Session, row: CustomerRow) -> Customer | None:
    """The existing customer a new account belongs to: by email, else by name and phone."""
    if row.email:
        query = select(Customer).where(func.lower(Customer.email) == row.email.lower())
    else:
        query = (
            select(Customer)
            .join(Customer.accounts)
            .join(Account.phone)
            .where(Customer.name == row.name, PhoneNumber.e164 == row.phone)
        )
    return session.scalars(query.order_by(Customer.id).limit(1)).first()


def _phone_row(session: Session, e164: str) -> PhoneNumber:
    phone = session.scalars(select(PhoneNumber).where(PhoneNumber.e164 == e164)).first()
    if phone is None:
        phone = PhoneNumber(e164=e164)
        session.add(phone)
        session.flush()
    return phone
