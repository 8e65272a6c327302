"""Customer CSV rows: reading the file and validating every row, with no database.

The file format is `name,phone,account_number,email`. Every problem is reported
with its file, physical line and field. A phone number must be one the number-change
rules could accept: never a premium-rate, shared-cost, UAN, pager or voicemail
number, and, when the import is given the configured rules, of an allowed country
and line type, because the number on file is where one-time codes go.
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

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from ivr.errors import IvrError
from ivr.numberchange.rules import NumberRules
from ivr.phone import LINE_TYPES, WHY_NEVER_ALLOWED

COLUMNS = ("name", "phone", "account_number", "email")
EXPECTED_HEADER = ",".join(COLUMNS)
NAME_MAX = 200
EMAIL_MAX = 320
ACCOUNT_DIGITS_MIN = 4
ACCOUNT_DIGITS_MAX = 32
# How often a long stage reports progress, in rows.
PROGRESS_EVERY = 1000

# ASCII digits only: str.isdigit() would also accept superscripts and other scripts' digits.
_DIGITS_RE = re.compile(r"[0-9]+")
_ACCOUNT_SEPARATORS = str.maketrans("", "", " -")
_LINE_TYPE_NAMES = {number_type: name for name, number_type in LINE_TYPES.items()}

# A raw row: its 1-based physical line number and its cells, in COLUMNS order.
Record = tuple[int, Sequence[str]]
# Told how far a stage of an import has got: (stage, done, total). The stages, in order:
# "checking" (rows), "finding accounts" (account numbers), "matching" (lookups of the
# customers and phones new accounts may join) and "writing" (rows written to any table).
Progress = Callable[[str, int, int], None]
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


class CustomerImportError(IvrError):
    """An import was refused as a whole; nothing was written. Carries every problem."""

    def __init__(self, problems: Sequence[RowProblem]):
        self.problems = list(problems)
        summary = "\n".join(str(problem) for problem in self.problems)
        super().__init__(f"{len(self.problems)} problem(s), nothing imported:\n{summary}")


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
    records: Iterable[Record],
    *,
    source: str,
    default_region: str,
    rules: NumberRules | None = None,
    progress: Progress | None = None,
) -> tuple[list[CustomerRow], list[RowProblem]]:
    """Check every record; return the good rows and the problems of the bad ones.

    Phones of a never-allowed line type are always refused; `rules`, when given, also
    refuse countries and line types the configuration does not allow.
    """
    records = list(records)
    rows: list[CustomerRow] = []
    problems: list[RowProblem] = []
    # account number -> (line, comparable data) of its first occurrence in this source
    first_seen: dict[str, tuple[int, tuple[str, ...]]] = {}
    for done, (line, cells) in enumerate(records):
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress("checking", done, len(records))
        report = _RowReport(source, line)
        row = _validate_row(line, cells, default_region, rules, first_seen, report)
        problems.extend(report.problems)
        if row is not None and not report.problems:
            rows.append(row)
    if progress is not None:
        progress("checking", len(records), len(records))
    return rows, problems


def _validate_row(
    line: int,
    cells: Sequence[str],
    default_region: str,
    rules: NumberRules | None,
    first_seen: dict[str, tuple[int, tuple[str, ...]]],
    problem: _Report,
) -> CustomerRow | None:
    if len(cells) != len(COLUMNS):
        problem("row", f"expected {len(COLUMNS)} cells ({EXPECTED_HEADER}), found {len(cells)}")
        return None
    raw_name, raw_phone, raw_account, raw_email = (cell.strip() for cell in cells)
    name = _check_name(raw_name, problem)
    phone = _check_phone(raw_phone, default_region, rules, problem)
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


def _check_phone(
    value: str, default_region: str, rules: NumberRules | None, problem: _Report
) -> str | None:
    if not value:
        problem("phone", "must not be empty")
        return None
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        number = None
    # phonenumbers' is_valid_number(n) is number_type(n) != UNKNOWN; asking for the type
    # alone halves the cost of checking a phone, the bulk of an import's time.
    number_type = PhoneNumberType.UNKNOWN if number is None else phonenumbers.number_type(number)
    if number is None or number_type == PhoneNumberType.UNKNOWN:
        problem("phone", f"{value!r} is not a valid phone number for region {default_region}")
        return None
    kind = _LINE_TYPE_NAMES[number_type]
    if kind in WHY_NEVER_ALLOWED:
        problem("phone", f"{value!r} is a {kind} number ({WHY_NEVER_ALLOWED[kind]})")
        return None
    if rules is not None:
        country = phonenumbers.region_code_for_number(number)
        if country not in rules.allowed_countries:
            allowed = ", ".join(sorted(rules.allowed_countries))
            problem(
                "phone",
                f"{value!r} is a number of {country}; IVR_ALLOWED_COUNTRIES allows {allowed}",
            )
            return None
        if number_type not in rules.allowed_types:
            allowed = ", ".join(sorted(rules.allowed_line_types))
            problem(
                "phone", f"{value!r} is a {kind} number; IVR_ALLOWED_LINE_TYPES allows {allowed}"
            )
            return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


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
