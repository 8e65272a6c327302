"""`ivr customers import` at scale and on the number rules: batched statements (counted,
not timed), a re-import that writes nothing, the phones refused as numbers on file,
and the progress shown on a terminal.

The everyday behaviour of the command (normalising, matching, errors, --skip-invalid)
is in test_customers_cli.py, whose helpers these tests share.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import phonenumbers
import pytest
from factories import make_account
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from test_customers_cli import (
    EXPECTED,
    HEADER,
    JANE,
    accounts_in_db,
    row_counts,
    run_import,
    updated_stamps,
    write_csv,
)

from ivr.customers import upsert
from ivr.customers.accounts import find_account
from ivr.customers.importer import CustomerImportError, import_csv
from ivr.phone import LINE_TYPES, NEVER_ALLOWED, WHY_NEVER_ALLOWED
from ivr.storage import db as ivr_db
from ivr.storage.models import Customer

# Regions whose metadata has example numbers of the kinds a phone on file may never be.
EXAMPLE_REGIONS = ("US", "GB", "DE", "FR", "AU", "CA")


def generated_rows(count: int, start: int = 0) -> str:
    """`count` valid rows with distinct accounts; every 10th shares the previous phone."""
    lines = []
    for i in range(start, start + count):
        phone = i - 1 if i % 10 == 9 else i
        email = "" if i % 10 == 9 else f"Customer{i}@Example.com"
        lines.append(
            f"Customer {i},+1415{201 + phone // 10000}{phone % 10000:04d},{9_000_000 + i},{email}\n"
        )
    return "".join(lines)


class Statements:
    """The SQL the app's engine sends while `recording` (before_cursor_execute)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def writes(self) -> list[str]:
        return [" ".join(s.split()[:3]) for s in self.sent if s.split()[0] in WRITES]

    def reads(self) -> list[str]:
        return [s for s in self.sent if s.lstrip().upper().startswith("SELECT")]


WRITES = {"INSERT", "UPDATE", "DELETE"}


@pytest.fixture
def statements(app: Flask) -> Iterator[Statements]:
    recorded = Statements()

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        recorded.sent.append(statement.strip())

    with app.app_context():
        engine = ivr_db.engine()
    event.listen(engine, "before_cursor_execute", record)
    yield recorded
    event.remove(engine, "before_cursor_execute", record)


# --- batches, and a re-import that writes nothing ------------------------------------------


def test_a_reimport_of_an_unchanged_file_writes_nothing_but_its_audit_record(
    runner: FlaskCliRunner,
    app: Flask,
    db_session: Session,
    tmp_path: Path,
    statements: Statements,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upsert, "BATCH", 20)
    path = write_csv(tmp_path, HEADER + generated_rows(95))
    first = run_import(runner, path)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "imported customers.csv: 95 created, 0 updated, 0 unchanged"
    stamps = updated_stamps(db_session)
    counts = row_counts(app)
    statements.sent.clear()

    again = run_import(runner, path)

    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "imported customers.csv: 0 created, 0 updated, 95 unchanged"
    assert statements.writes() == ["INSERT INTO audit_events"]
    # Per batch of account numbers: the accounts, their customers, their phones; nothing else.
    assert len(statements.reads()) == 3 * math.ceil(95 / 20)
    assert row_counts(app) == {**counts, "audit_events": counts["audit_events"] + 1}
    assert updated_stamps(db_session) == stamps


def test_statements_are_batched_not_per_row(
    runner: FlaskCliRunner, tmp_path: Path, statements: Statements, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upsert, "BATCH", 20)
    rows = 95

    result = run_import(runner, write_csv(tmp_path, HEADER + generated_rows(rows)))

    assert result.exit_code == 0, result.output
    batches = math.ceil(rows / 20)
    # Lookups: accounts, customers by email, phone rows (none of them is there yet).
    assert len(statements.reads()) <= 3 * batches
    # Writes: phones, customers and accounts, a statement per batch (executemany), + audit.
    writes = statements.writes()
    assert writes.count("INSERT INTO phone_numbers") <= batches
    assert writes.count("INSERT INTO customers") <= batches
    assert writes.count("INSERT INTO accounts") <= batches
    assert writes[-1] == "INSERT INTO audit_events"
    assert len(statements.sent) < rows


def test_changed_rows_are_written_in_batches(
    runner: FlaskCliRunner,
    app: Flask,
    db_session: Session,
    tmp_path: Path,
    statements: Statements,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upsert, "BATCH", 20)
    path = write_csv(tmp_path, HEADER + generated_rows(60))
    assert run_import(runner, path).exit_code == 0
    text = (
        path.read_text()
        .replace("Customer 1,", "Customer One,")
        .replace(",+14152010005,", ",+14152019995,")
    )
    statements.sent.clear()

    result = run_import(runner, write_csv(tmp_path, text))

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "imported customers.csv: 0 created, 2 updated, 58 unchanged"
    assert statements.writes() == [
        "INSERT INTO phone_numbers",
        "UPDATE customers SET",
        "UPDATE accounts SET",
        "INSERT INTO audit_events",
    ]
    accounts = accounts_in_db(db_session)
    assert accounts["9000001"][0] == "Customer One"
    assert accounts["9000005"][1] == "+14152019995"


MATCHING = (
    # An existing customer (by email, any case), a family member on an existing phone,
    # an update that moves an account, and a row that matches a customer an earlier row
    # of this file renamed.
    HEADER
    + "Jane Doe,(415) 555-0100,10009999,JANE@example.com\n"
    + "John Roe,415-555-0111,20009999,\n"
    + "Ana Lopez,+1 415 555 0199,30001111,ana@example.com\n"
    + "Luis Lopez,415.555.0122,30002222,luis@example.com\n"
    + "Luis Lopez,415.555.0177,30003333,luis@example.com\n"
)


@pytest.mark.parametrize("batch", [1, 2, 1000])
def test_matching_does_not_depend_on_the_batch_size(
    db_session: Session, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(upsert, "BATCH", batch)
    import_csv(db_session, data_dir / "customers.csv", "US")

    result = import_csv(db_session, write_csv(tmp_path, MATCHING), "US")

    assert (result.created, result.updated, result.unchanged) == (3, 2, 0)
    accounts = accounts_in_db(db_session)
    assert accounts["10009999"] == ("Jane Doe", "+14155550100", "JANE@example.com")
    assert accounts["10004321"] == ("Jane Doe", "+14155550100", "JANE@example.com")
    assert accounts["20009999"] == EXPECTED["20005678"]
    assert accounts["30001111"] == ("Ana Lopez", "+14155550199", "ana@example.com")
    assert accounts["30002222"] == ("Luis Lopez", "+14155550122", "luis@example.com")
    assert accounts["30003333"] == ("Luis Lopez", "+14155550177", "luis@example.com")

    def owner(number: str) -> int:
        account = find_account(db_session, number)
        assert account is not None
        return account.customer_id

    assert owner("10009999") == owner("10004321")  # matched by email, case aside
    assert owner("20009999") == owner("20005678")  # same name on the same phone
    assert owner("30003333") == owner("30002222")  # by the email an earlier row gave Luis
    assert row_counts_of(db_session) == 4  # no new customer


def row_counts_of(session: Session) -> int:
    return len(session.scalars(select(Customer)).all())


def test_rows_that_disagree_about_an_existing_customer_are_refused(
    db_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upsert, "BATCH", 1)
    make_account(db_session, "Jane Doe", "+14155550100", "10004321", "jane@example.com")
    path = write_csv(
        tmp_path,
        HEADER
        + "Jane Doe,(415) 555-0100,10004321,jane.doe@example.com\n"
        + "Jane Doe,(415) 555-0133,10009999,jane@example.com\n"
        + "Janet Doe,(415) 555-0144,10008888,JANE.DOE@example.com\n",
    )

    with pytest.raises(CustomerImportError) as refused:
        import_csv(db_session, path, "US")

    assert [str(problem) for problem in refused.value.problems] == [
        "customers.csv:4: name: this row's customer is the one on line 2, "
        "which gives a different name",
    ]
    # Line 3's email no longer matches Jane once line 2 changed it: a new customer.


def test_objects_the_session_holds_see_the_import(db_session: Session, tmp_path: Path) -> None:
    jane = make_account(db_session, "Jane Doe", "+14155550100", "10004321", "jane@example.com")
    assert jane.phone.e164 == "+14155550100"

    import_csv(db_session, write_csv(tmp_path, HEADER + JANE.replace("0100", "0199")), "US")

    assert jane.phone.e164 == "+14155550199"


# --- phones a caller could never change their number to ------------------------------------


def refused_examples() -> list[tuple[str, str]]:
    """(kind, number in E.164) for every never-allowed kind phonenumbers has an example of."""
    found = []
    for kind in sorted(NEVER_ALLOWED):
        for region in EXAMPLE_REGIONS:
            number = phonenumbers.example_number_for_type(region, LINE_TYPES[kind])
            if number is not None and phonenumbers.number_type(number) == LINE_TYPES[kind]:
                found.append((kind, phonenumbers.format_number(number, 0)))
                break
    return found


def test_every_refusable_kind_has_an_example() -> None:
    # "unknown" is never a valid number, so it is refused as invalid instead.
    assert {kind for kind, _ in refused_examples()} == NEVER_ALLOWED - {"unknown"}


@pytest.mark.parametrize(("kind", "e164"), refused_examples())
def test_a_never_allowed_phone_is_refused_naming_file_line_and_field(
    runner: FlaskCliRunner, app: Flask, tmp_path: Path, kind: str, e164: str
) -> None:
    written = phonenumbers.format_number(phonenumbers.parse(e164), 1)  # +44 76 4012 3456
    path = write_csv(tmp_path, HEADER + JANE + f"Some One,{written},40004444,\n")

    result = run_import(runner, path)

    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"customers.csv:3: phone: {written!r} is a {kind} number ({WHY_NEVER_ALLOWED[kind]})"
    )
    assert row_counts(app)["accounts"] == 0


def test_premium_rate_in_the_default_regions_own_format(
    runner: FlaskCliRunner, app: Flask, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, HEADER + JANE + "Pay Per Call,(900) 234-5678,40004444,\n")

    result = run_import(runner, path, "--skip-invalid")

    assert result.exit_code == 0
    assert result.stdout.strip().endswith("1 created, 0 updated, 0 unchanged, 1 skipped")
    assert result.stderr.splitlines() == [
        "skipped customers.csv:3: phone: '(900) 234-5678' is a premium_rate number "
        f"({WHY_NEVER_ALLOWED['premium_rate']})"
    ]


def test_the_importer_refuses_never_allowed_kinds_without_any_configuration(
    db_session: Session, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, HEADER + "Pay Per Call,+1 900 234 5678,40004444,\n")

    with pytest.raises(CustomerImportError, match=r"customers\.csv:2: phone: .* premium_rate"):
        import_csv(db_session, path, "US")


CONFIGURED = [
    pytest.param(
        "(800) 234-5678",
        {"IVR_ALLOWED_LINE_TYPES": "mobile,fixed_line,fixed_line_or_mobile,toll_free"},
        "'(800) 234-5678' is a toll_free number; "
        "IVR_ALLOWED_LINE_TYPES allows fixed_line, fixed_line_or_mobile, mobile",
        id="line-type",
    ),
    pytest.param(
        "+44 7400 123456",
        {"IVR_ALLOWED_COUNTRIES": "US,GB"},
        "'+44 7400 123456' is a number of GB; IVR_ALLOWED_COUNTRIES allows US",
        id="country",
    ),
]


@pytest.mark.parametrize(("written", "allowing", "refusal"), CONFIGURED)
def test_the_configured_countries_and_line_types_apply_to_imports(
    make_app,
    tmp_path: Path,
    written: str,
    allowing: dict[str, str],
    refusal: str,  # type: ignore[no-untyped-def]
) -> None:
    path = write_csv(tmp_path, HEADER + f"Far Away,{written},40004444,\n")

    refused = run_import(make_app().test_cli_runner(), path)
    allowed = run_import(make_app(**allowing).test_cli_runner(), path)

    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[0] == f"customers.csv:2: phone: {refusal}"
    assert allowed.exit_code == 0, allowed.output
    assert "1 created" in allowed.stdout


# --- progress -------------------------------------------------------------------------------


def test_progress_is_reported_stage_by_stage(
    db_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upsert, "BATCH", 20)
    seen: list[tuple[str, int, int]] = []

    import_csv(
        db_session,
        write_csv(tmp_path, HEADER + generated_rows(50)),
        "US",
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )

    stages = [stage for stage, _, _ in seen]
    order = ["checking", "finding accounts", "matching", "writing"]
    assert list(dict.fromkeys(stages)) == order
    for stage in order:
        steps = [(done, total) for s, done, total in seen if s == stage]
        assert [done for done, _ in steps] == sorted(done for done, _ in steps)
        assert len({total for _, total in steps}) == 1  # a bar never changes its length
        assert steps[-1][0] == steps[-1][1] > 0
    assert ("checking", 50, 50) in seen


def test_no_progress_bar_unless_stderr_is_a_terminal(
    runner: FlaskCliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path, HEADER + generated_rows(30))
    piped = run_import(runner, path)
    assert piped.stderr == ""

    monkeypatch.setattr("ivr.customers.cli._stderr_is_terminal", lambda: True)
    terminal = run_import(runner, path)

    assert terminal.exit_code == 0, terminal.output
    assert terminal.stdout.strip() == "imported customers.csv: 0 created, 0 updated, 30 unchanged"
    assert "checking" in terminal.stderr and "finding accounts" in terminal.stderr
