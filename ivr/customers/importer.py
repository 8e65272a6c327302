"""Customer CSV import: strict parsing, validation of every row, one all-or-nothing upsert.

The file format is `name,phone,account_number,email`. Every row is checked and
every problem reported with its file, physical line and field; nothing is committed
unless every row is good (or the caller asked to skip the bad ones). Rows are
upserted by account number; several accounts may share one phone number (a family
line) and one customer. Re-running the same file changes nothing: a row's name and
email are its customer's, so rows of one file that share a customer must agree.

`rows` reads and validates (including the line types a phone on file may not have),
`upsert` matches and writes in batches; this module runs them in one transaction and
audits the import. No Flask here: the CLI, the demo seed and tests all call the same
functions with a SQLAlchemy session and a default region for national-format numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from ivr.customers.rows import (
    COLUMNS,
    EXPECTED_HEADER,
    CustomerImportError,
    CustomerRow,
    Progress,
    Record,
    RowProblem,
    is_plausible_email,
    normalise_account_number,
    read_csv,
    validate_records,
)
from ivr.customers.upsert import plan_rows, write_plan
from ivr.numberchange.rules import NumberRules
from ivr.storage import audit

__all__ = [
    "AUDIT_ACTION",
    "COLUMNS",
    "EXPECTED_HEADER",
    "CustomerImportError",
    "CustomerRow",
    "ImportResult",
    "Progress",
    "Record",
    "RowProblem",
    "import_csv",
    "import_records",
    "is_plausible_email",
    "normalise_account_number",
    "read_csv",
    "validate_records",
]

AUDIT_ACTION = "customers.import"


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


def import_csv(
    session: Session,
    path: Path,
    default_region: str,
    *,
    skip_invalid: bool = False,
    actor: str = "cli",
    rules: NumberRules | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a customers CSV file; raise CustomerImportError unless every row is good."""
    return import_records(
        session,
        read_csv(path),
        source=path.name,
        default_region=default_region,
        skip_invalid=skip_invalid,
        actor=actor,
        rules=rules,
        progress=progress,
    )


def import_records(
    session: Session,
    records: Iterable[Record],
    *,
    source: str,
    default_region: str,
    skip_invalid: bool = False,
    actor: str = "cli",
    rules: NumberRules | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Validate and upsert raw records in one transaction, audited once; all or nothing.

    With `skip_invalid` the good rows are imported and the bad ones reported in
    `ImportResult.skipped`; without it any problem rolls everything back and raises.
    Phones of a never-allowed line type are always refused; `rules` (the number-change
    rules of the configuration) also refuse other countries and line types. The session
    is committed on success and rolled back on any failure.
    """
    rows, problems = validate_records(
        records, source=source, default_region=default_region, rules=rules, progress=progress
    )
    result = ImportResult(file=source)
    try:
        # The good rows are matched even when some are already known to be bad, so that
        # one run also reports the conflicts only the database can reveal.
        plan = plan_rows(session, rows, source=source, progress=progress)
        problems.extend(plan.problems)
        problems.sort(key=lambda p: p.line or 0)
        if problems and not skip_invalid:
            raise CustomerImportError(problems)
        write_plan(session, plan, progress=progress)
        result.created, result.updated, result.unchanged = (
            plan.created,
            plan.updated,
            plan.unchanged,
        )
        result.rows = plan.rows
        result.skipped = problems
        audit.record(
            session, AUDIT_ACTION, actor=actor, details={**result.counts(), "file": source}
        )
    except BaseException:
        session.rollback()
        raise
    # The rows were written by bulk statements: objects the session already holds would
    # otherwise keep their old values (the app's sessions do not expire on commit).
    session.expire_all()
    return result
