"""`ivr customers import|show`, the importer behind them, the demo seed and the factories.

Commands run through the real CLI on the test database; what they wrote is read
back afterwards, row counts through a connection of their own so that only
committed data counts.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from factories import change_phone, make_account
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivr.customers.accounts import account_summary, find_account
from ivr.customers.importer import CustomerImportError, import_csv
from ivr.customers.seed import DEMO_CUSTOMERS, seed_demo
from ivr.errors import StorageUnavailable
from ivr.numberchange.pending import PendingChange, save_pending
from ivr.storage import db as ivr_db
from ivr.storage.models import Account, AuditEvent, Customer, PhoneNumber

HEADER = "name,phone,account_number,email\n"
JANE = "Jane Doe,(415) 555-0100,10004321,jane@example.com\n"
JOHN = "John Roe,415-555-0111,2000-5678,\n"

# What tests/data/customers.csv holds, normalised: account -> (name, phone, email).
EXPECTED = {
    "10004321": ("Jane Doe", "+14155550100", "jane@example.com"),
    "20005678": ("John Roe", "+14155550111", None),
    "30001111": ("Ana Lopez", "+14155550122", "ana@example.com"),
    "30002222": ("Luis Lopez", "+14155550122", None),
}


def row_counts(app: Flask) -> dict[str, int]:
    """Committed rows per table, read on a fresh connection."""
    with app.app_context(), ivr_db.engine().connect() as connection:
        return {
            model.__tablename__: connection.scalar(select(func.count()).select_from(model)) or 0
            for model in (Customer, PhoneNumber, Account, AuditEvent)
        }


def accounts_in_db(session: Session) -> dict[str, tuple[str, str, str | None]]:
    """Every account as account number -> (name, phone, email)."""
    session.expire_all()
    return {
        account.number: (account.customer.name, account.phone.e164, account.customer.email)
        for account in session.scalars(select(Account))
    }


def updated_stamps(session: Session) -> dict[str, object]:
    """Each account's updated_at as stored (reloaded, so a no-op write would show)."""
    session.expire_all()
    return {account.number: account.updated_at for account in session.scalars(select(Account))}


def write_csv(tmp_path: Path, text: str, name: str = "customers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run_import(runner: FlaskCliRunner, path: Path, *options: str) -> Result:
    return runner.invoke(args=["customers", "import", str(path), *options])


# --- import: the good path ---------------------------------------------------------------


def test_import_normalises_phones_and_shares_one_phone_row(
    runner: FlaskCliRunner, app: Flask, db_session: Session, data_dir: Path
) -> None:
    assert "(415) 555-0100" in (data_dir / "customers.csv").read_text()  # national formats

    result = run_import(runner, data_dir / "customers.csv")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "imported customers.csv: 4 created, 0 updated, 0 unchanged"
    assert result.stderr == ""
    assert accounts_in_db(db_session) == EXPECTED
    # Ana and Luis share one phone: one PhoneNumber row, two accounts, two customers.
    assert row_counts(app) == {
        "customers": 4,
        "phone_numbers": 3,
        "accounts": 4,
        "audit_events": 1,
    }
    family = db_session.scalars(select(PhoneNumber).where(PhoneNumber.e164 == "+14155550122")).one()
    assert sorted(account.number for account in family.accounts) == ["30001111", "30002222"]


def test_import_tolerates_bom_whitespace_and_blank_lines(
    runner: FlaskCliRunner, db_session: Session, tmp_path: Path
) -> None:
    text = (
        "\ufeff name , phone,account_number , email \r\n"
        "  Jane Doe , (415) 555-0100 ,  1000 4321 , jane@example.com \r\n"
        "\r\n"
        ",,,\r\n"
    )
    path = tmp_path / "bom.csv"
    path.write_bytes(text.encode("utf-8"))

    result = run_import(runner, path)

    assert result.exit_code == 0, result.output
    assert "1 created" in result.stdout
    assert accounts_in_db(db_session) == {
        "10004321": ("Jane Doe", "+14155550100", "jane@example.com")
    }


def test_second_run_of_the_same_file_changes_nothing(
    runner: FlaskCliRunner, app: Flask, db_session: Session, data_dir: Path
) -> None:
    assert run_import(runner, data_dir / "customers.csv").exit_code == 0
    counts = row_counts(app)
    stamps = updated_stamps(db_session)

    again = run_import(runner, data_dir / "customers.csv")

    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == "imported customers.csv: 0 created, 0 updated, 4 unchanged"
    assert row_counts(app) == {**counts, "audit_events": counts["audit_events"] + 1}
    assert accounts_in_db(db_session) == EXPECTED
    assert updated_stamps(db_session) == stamps


def test_import_updates_the_phone_name_and_email_of_an_existing_account(
    runner: FlaskCliRunner, app: Flask, db_session: Session, data_dir: Path, tmp_path: Path
) -> None:
    assert run_import(runner, data_dir / "customers.csv").exit_code == 0
    changed = write_csv(
        tmp_path,
        HEADER + "Jane Q. Doe,(415) 555-0199,10004321,jane.doe@example.com\n" + JOHN,
    )

    result = run_import(runner, changed)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "imported customers.csv: 0 created, 1 updated, 1 unchanged"
    accounts = accounts_in_db(db_session)
    assert accounts["10004321"] == ("Jane Q. Doe", "+14155550199", "jane.doe@example.com")
    assert accounts["20005678"] == EXPECTED["20005678"]
    assert row_counts(app)["customers"] == 4  # updated in place, not a new customer


def test_new_account_joins_the_customer_with_the_same_email(
    runner: FlaskCliRunner, db_session: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        HEADER + JANE + "Jane Doe,4155550188,10009999,JANE@example.com\n",
    )
    # Same customer, emails differing in case: the file contradicts itself.
    with pytest.raises(CustomerImportError, match=r"customers\.csv:3: email: .* line 2"):
        import_csv(db_session, path, "US")

    path.write_text(HEADER + JANE + "Jane Doe,4155550188,10009999,jane@example.com\n")
    result = import_csv(db_session, path, "US")

    assert (result.created, result.updated, result.unchanged) == (2, 0, 0)
    jane, second = (find_account(db_session, n) for n in ("10004321", "10009999"))
    assert jane is not None and second is not None
    assert jane.customer_id == second.customer_id
    assert jane.phone_id != second.phone_id


def test_new_account_without_email_joins_the_same_name_on_the_same_phone(
    db_session: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        HEADER + JOHN + "John Roe,+14155550111,20009999,\n" + "John Roe,4155550100,20001111,\n",
    )

    import_csv(db_session, path, "US")

    john, same_phone, other_phone = (
        find_account(db_session, n) for n in ("20005678", "20009999", "20001111")
    )
    assert john is not None and same_phone is not None and other_phone is not None
    assert same_phone.customer_id == john.customer_id
    assert other_phone.customer_id != john.customer_id


def test_rows_of_one_customer_that_disagree_are_refused(
    db_session: Session, tmp_path: Path
) -> None:
    # Matched by name and phone, the second row would clear the first row's email, and
    # every later run would flip it back: refused rather than made non-idempotent.
    path = write_csv(tmp_path, HEADER + JANE + "Jane Doe,(415) 555-0100,10009999,\n")

    with pytest.raises(
        CustomerImportError,
        match=r"customers\.csv:3: email: this row's customer is the one on line 2",
    ):
        import_csv(db_session, path, "US")
    assert db_session.scalars(select(Account)).all() == []


def test_identical_duplicate_rows_are_accepted(db_session: Session, tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER + JANE + JANE.replace("(415) 555-0100", "+14155550100"))

    result = import_csv(db_session, path, "US")

    assert (result.created, result.unchanged) == (1, 1)
    assert len(db_session.scalars(select(Account)).all()) == 1


# --- import: bad input --------------------------------------------------------------------

BAD_FILES = [
    pytest.param(
        HEADER + JANE + "Bad Phone,+1 555,40004444,\n",
        "customers.csv:3: phone: '+1 555' is not a valid phone number for region US",
        id="bad-phone",
    ),
    pytest.param(
        HEADER + ",(415) 555-0133,40005555,\n" + JANE,
        "customers.csv:2: name: must not be empty",
        id="empty-name",
    ),
    pytest.param(
        HEADER + JANE + JOHN + "Bad Account,(415) 555-0144,12AB34,\n",
        "customers.csv:4: account_number: '12AB34' must contain only digits",
        id="non-digit-account",
    ),
    pytest.param(
        HEADER + JANE + "Short Account,(415) 555-0144,123,\n",
        "customers.csv:3: account_number: '123' has 3 digits",
        id="short-account",
    ),
    pytest.param(
        HEADER + JOHN + JANE.replace("jane@example.com", "jane@example"),
        "customers.csv:3: email: 'jane@example' is not a valid email address",
        id="bad-email",
    ),
    pytest.param(
        HEADER + JANE + JOHN + "Someone Else,(415) 555-0177,10004321,\n",
        "customers.csv:4: account_number: '10004321' is already on line 2 with different data",
        id="duplicate-account",
    ),
    pytest.param(
        HEADER + JANE + "Too,Many,Cells,In,This,Row\n",
        "customers.csv:3: row: expected 4 cells",
        id="wrong-cell-count",
    ),
    pytest.param(
        # A quoted cell spanning lines 2-3: the next record starts on physical line 4.
        HEADER + '"Jane\nDoe",(415) 555-0100,10004321,\n' + "Bad Phone,12,40004444,\n",
        "customers.csv:4: phone: '12' is not a valid phone number for region US",
        id="line-number-after-multiline-cell",
    ),
    pytest.param(
        "name,phone,account,email\n" + JANE,
        "customers.csv:1: header: expected 'name,phone,account_number,email', "
        "found 'name,phone,account,email'",
        id="wrong-header",
    ),
    pytest.param(
        "name,phone,account_number\n" + "Jane Doe,(415) 555-0100,10004321\n",
        "customers.csv:1: header: expected 'name,phone,account_number,email'",
        id="missing-column",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_file_is_refused_whole_with_line_and_field(
    runner: FlaskCliRunner, app: Flask, tmp_path: Path, text: str, expected: str
) -> None:
    result = run_import(runner, write_csv(tmp_path, text))

    assert result.exit_code == 1
    assert expected in result.stderr
    assert "nothing imported from customers.csv" in result.stderr
    assert result.stdout == ""
    assert row_counts(app) == {"customers": 0, "phone_numbers": 0, "accounts": 0, "audit_events": 0}


def test_a_bad_row_rolls_back_the_updates_of_good_rows(
    runner: FlaskCliRunner, app: Flask, db_session: Session, data_dir: Path, tmp_path: Path
) -> None:
    assert run_import(runner, data_dir / "customers.csv").exit_code == 0
    counts = row_counts(app)
    mixed = write_csv(
        tmp_path,
        HEADER
        + "Jane Doe,(415) 555-0199,10004321,jane@example.com\n"  # a valid update…
        + "New Person,(415) 555-0166,50001234,new@example.com\n"  # …a valid new account…
        + "Bad Phone,+1 555,40004444,\n",  # …and one bad row
    )

    result = run_import(runner, mixed)

    assert result.exit_code == 1
    assert "customers.csv:4: phone:" in result.stderr
    assert row_counts(app) == counts
    assert accounts_in_db(db_session) == EXPECTED


def test_every_problem_is_reported_in_one_run(runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        HEADER
        + ",12,AB,not-an-email\n"
        + JANE
        + "Jane Again,(415) 555-0100,10004321,jane@example.com\n",
    )

    result = run_import(runner, path)

    assert result.exit_code == 1
    problems = result.stderr.splitlines()[:-1]
    assert [line.split(": ")[:2] for line in problems] == [
        ["customers.csv:2", "name"],
        ["customers.csv:2", "phone"],
        ["customers.csv:2", "account_number"],
        ["customers.csv:2", "email"],
        ["customers.csv:4", "account_number"],
    ]
    assert result.stderr.splitlines()[-1] == "nothing imported from customers.csv: 5 problem(s)"


def test_a_record_spanning_lines_is_reported_on_its_first_line(
    db_session: Session, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, HEADER + JOHN + '"Jane\nDoe",(415) 555-0100,10004321,\n' + JANE)

    with pytest.raises(CustomerImportError) as refused:
        import_csv(db_session, path, "US")

    assert [str(problem) for problem in refused.value.problems] == [
        "customers.csv:3: name: must not contain line breaks or other control characters",
        "customers.csv:5: account_number: '10004321' is already on line 3 with different data",
    ]


def test_file_that_is_not_utf8_names_the_line(db_session: Session, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + JANE + "José Pérez,4155550133,40005555,\n").encode("latin-1"))

    with pytest.raises(CustomerImportError, match=r"latin1\.csv:3: file: is not UTF-8 text"):
        import_csv(db_session, path, "US")


def test_empty_file_names_the_expected_header(db_session: Session, tmp_path: Path) -> None:
    with pytest.raises(
        CustomerImportError,
        match=r"empty\.csv: header: the file is empty; expected 'name,phone,account_number,email'",
    ):
        import_csv(db_session, write_csv(tmp_path, "", name="empty.csv"), "US")


def test_missing_file_is_clicks_usage_error(runner: FlaskCliRunner, tmp_path: Path) -> None:
    result = run_import(runner, tmp_path / "nope.csv")

    assert result.exit_code == 2
    assert "does not exist" in result.stderr


# --- import: --skip-invalid ---------------------------------------------------------------


def test_skip_invalid_imports_good_rows_and_lists_bad_ones(
    runner: FlaskCliRunner, app: Flask, db_session: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        HEADER + JANE + "Bad Phone,+1 555,40004444,\n" + JOHN + "Bad Mail,4155550155,40006666,x@\n",
    )

    result = run_import(runner, path, "--skip-invalid")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "imported customers.csv: 2 created, 0 updated, 0 unchanged, 2 skipped"
    )
    assert result.stderr.splitlines() == [
        "skipped customers.csv:3: phone: '+1 555' is not a valid phone number for region US",
        "skipped customers.csv:5: email: 'x@' is not a valid email address",
    ]
    assert set(accounts_in_db(db_session)) == {"10004321", "20005678"}
    audit = db_session.scalars(select(AuditEvent)).one()
    assert audit.details == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "skipped": 2,
        "file": "customers.csv",
    }


def test_skip_invalid_with_no_good_row_fails(
    runner: FlaskCliRunner, app: Flask, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, HEADER + "Bad Phone,+1 555,40004444,\n")

    result = run_import(runner, path, "--skip-invalid")

    assert result.exit_code == 1
    assert "skipped customers.csv:2: phone:" in result.stderr
    assert row_counts(app)["accounts"] == 0


# --- audit ----------------------------------------------------------------------------------


def test_import_is_audited_once_without_numbers(
    runner: FlaskCliRunner, db_session: Session, data_dir: Path
) -> None:
    assert run_import(runner, data_dir / "customers.csv").exit_code == 0

    event = db_session.scalars(select(AuditEvent)).one()
    assert (event.action, event.actor, event.account_id) == ("customers.import", "cli", None)
    assert event.details == {
        "created": 4,
        "updated": 0,
        "unchanged": 0,
        "skipped": 0,
        "file": "customers.csv",
    }
    text = json.dumps(event.details)
    for account_number, (_name, phone, _email) in EXPECTED.items():
        assert account_number not in text
        assert phone.lstrip("+") not in text
        assert account_number[-4:] not in text
    assert re.search(r"\d{4,}", text) is None


# --- show -----------------------------------------------------------------------------------


def test_show_prints_the_account(runner: FlaskCliRunner, data_dir: Path) -> None:
    assert run_import(runner, data_dir / "customers.csv").exit_code == 0

    jane = runner.invoke(args=["customers", "show", "10004321"])
    ana = runner.invoke(args=["customers", "show", "3000-1111"])
    john = runner.invoke(args=["customers", "show", "20005678"])

    assert jane.exit_code == 0, jane.output
    fields = dict(re.findall(r"^([^:]+):\s+(.*)$", jane.stdout, re.MULTILINE))
    assert fields.pop("created").startswith(datetime.now(UTC).strftime("%Y-"))
    assert fields == {
        "account": "10004321",
        "name": "Jane Doe",
        "email": "jane@example.com",
        "phone": "+14155550100",
        "other accounts on this phone": "none",
        "flags": "none",
        "pending change": "none",
        "phone history": "none",
    }
    assert re.search(r"^other accounts on this phone:\s+30002222$", ana.stdout, re.MULTILINE)
    assert re.search(r"^email:\s+none$", john.stdout, re.MULTILINE)


def test_show_json(runner: FlaskCliRunner, db_session: Session, data_dir: Path) -> None:
    assert run_import(runner, data_dir / "customers.csv").exit_code == 0

    result = runner.invoke(args=["customers", "show", "30002222", "--json"])

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    luis = find_account(db_session, "30002222")
    assert luis is not None
    created = datetime.fromisoformat(shown.pop("created_at"))
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert shown == {
        "account_number": "30002222",
        "name": "Luis Lopez",
        "email": None,
        "phone": "+14155550122",
        "customer_id": luis.customer_id,
        "other_accounts_on_phone": ["30001111"],
        "phone_history": [],
        "flags": [],
        "number_changed_until": None,
        "pending_change": None,
    }


def test_show_unknown_account_fails(runner: FlaskCliRunner, data_dir: Path) -> None:
    assert run_import(runner, data_dir / "customers.csv").exit_code == 0

    result = runner.invoke(args=["customers", "show", "99999999", "--json"])

    assert result.exit_code == 1
    assert "no account '99999999'" in result.stderr
    assert result.stdout == ""


def test_account_summary_of_factory_accounts(db_session: Session) -> None:
    ana = make_account(db_session, "Ana Lopez", "+14155550122", "30001111", "ana@example.com")
    luis = make_account(db_session, "Luis Lopez", "+14155550122", "30002222")
    lone = make_account(db_session, "Jane Doe", "+14155550100", "10004321")

    assert ana.phone_id == luis.phone_id != lone.phone_id
    assert account_summary(db_session, ana)["other_accounts_on_phone"] == ["30002222"]
    assert account_summary(db_session, lone)["other_accounts_on_phone"] == []
    assert len(db_session.scalars(select(PhoneNumber)).all()) == 2


# --- show: number changes ----------------------------------------------------------------

NEW = "+14155550199"


def show_fields(result: Result) -> dict[str, str]:
    """The label: value lines of `ivr customers show` (history lines have no label)."""
    assert result.exit_code == 0, result.output
    return dict(re.findall(r"^(\w[^:]*):[ \t]+(.*)$", result.stdout, re.MULTILINE))


def test_show_after_a_number_change(runner: FlaskCliRunner, db_session: Session) -> None:
    jane = make_account(db_session, phone="+14155550100", account_number="10004321")
    changed_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    change_phone(db_session, jane, NEW, now=changed_at, call_sid="CA" + "b" * 32)
    until = changed_at + timedelta(days=7)

    text = runner.invoke(args=["customers", "show", "10004321"])
    shown = runner.invoke(args=["customers", "show", "10004321", "--json"])

    fields = show_fields(text)
    assert fields["phone"] == NEW
    assert fields["flags"] == f"number changed recently (until {until:%Y-%m-%d %H:%M} UTC)"
    assert fields["pending change"] == "none"
    assert fields["phone history"] == "1 change(s)"
    assert text.stdout.splitlines()[-1] == (
        f"  {changed_at:%Y-%m-%d %H:%M} UTC  +14155550100 → {NEW}  (callback_on_line)"
    )
    summary = json.loads(shown.stdout)
    assert summary["phone"] == NEW
    assert summary["phone_history"] == [
        {
            "old": "+14155550100",
            "new": NEW,
            "changed_at": changed_at.isoformat(),
            "call_sid": "CA" + "b" * 32,
            "mode": "callback_on_line",
        }
    ]
    assert summary["flags"] == ["number_changed_recently"]
    assert summary["number_changed_until"] == until.isoformat()
    assert summary["pending_change"] is None


def test_show_after_the_cooling_off_has_no_flag_but_keeps_the_history(
    runner: FlaskCliRunner, db_session: Session
) -> None:
    jane = make_account(db_session, phone="+14155550100", account_number="10004321")
    change_phone(db_session, jane, NEW, now=datetime.now(UTC) - timedelta(days=7, minutes=1))

    text = runner.invoke(args=["customers", "show", "10004321"])
    shown = json.loads(runner.invoke(args=["customers", "show", "10004321", "--json"]).stdout)

    fields = show_fields(text)
    assert (fields["phone"], fields["flags"], fields["phone history"]) == (
        NEW,
        "none",
        "1 change(s)",
    )
    assert (shown["flags"], shown["number_changed_until"]) == ([], None)
    assert [(c["old"], c["new"]) for c in shown["phone_history"]] == [("+14155550100", NEW)]


def test_summary_flags_the_number_change_for_the_cooling_off_period_only(
    db_session: Session,
) -> None:
    jane = make_account(db_session, phone="+14155550100")
    changed_at = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    change_phone(db_session, jane, NEW, now=changed_at)
    week = timedelta(days=7)

    def summary(now: datetime, **options: Any) -> dict[str, Any]:
        return account_summary(db_session, jane, now=now, **options)

    assert summary(changed_at)["flags"] == ["number_changed_recently"]
    last_second = summary(changed_at + week - timedelta(seconds=1))
    assert last_second["flags"] == ["number_changed_recently"]
    assert last_second["number_changed_until"] == "2026-11-28T10:00:00+00:00"
    over = summary(changed_at + week)
    assert (over["flags"], over["number_changed_until"]) == ([], None)
    assert over["phone_history"][0]["changed_at"] == "2026-11-21T10:00:00+00:00"
    shorter = summary(changed_at + timedelta(hours=2), cooling_off_seconds=3600)
    assert shorter["flags"] == []


def test_summary_history_is_newest_first(db_session: Session) -> None:
    jane = make_account(db_session, phone="+14155550100")
    first = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    change_phone(db_session, jane, NEW, now=first, mode="callback_after_call")
    change_phone(db_session, jane, "+14155550188", now=first + timedelta(days=40))

    history = account_summary(db_session, jane, now=first)["phone_history"]

    assert [(c["old"], c["new"], c["mode"]) for c in history] == [
        (NEW, "+14155550188", "callback_on_line"),
        ("+14155550100", NEW, "callback_after_call"),
    ]


class _Settings:
    """The app's settings with some attributes overridden (they are a frozen dataclass)."""

    def __init__(self, base: object, **overrides: object):
        self._base = base
        self._overrides = overrides

    def __getattr__(self, name: str) -> object:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._base, name)


def test_show_uses_the_configured_cooling_off(
    runner: FlaskCliRunner, app: Flask, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    jane = make_account(db_session, phone="+14155550100", account_number="10004321")
    change_phone(db_session, jane, NEW, now=datetime.now(UTC) - timedelta(hours=2))
    assert show_fields(runner.invoke(args=["customers", "show", "10004321"]))["flags"] != "none"

    settings = _Settings(app.config["IVR_SETTINGS"], number_change_cooling_off=3600)
    monkeypatch.setitem(app.config, "IVR_SETTINGS", settings)

    assert show_fields(runner.invoke(args=["customers", "show", "10004321"]))["flags"] == "none"


def test_show_includes_the_pending_change(
    app: Flask, runner: FlaskCliRunner, db_session: Session
) -> None:
    jane = make_account(db_session, phone="+14155550100", account_number="10004321")
    pending = PendingChange(
        id="change-1",
        account_id=jane.id,
        call_sid="CA" + "c" * 32,
        old="+14155550100",
        new=NEW,
        mode="callback_on_line",
        language="en-US",
        created=datetime(2026, 11, 21, 10, 0, tzinfo=UTC).timestamp(),
        status="calling",
    )
    with app.app_context():
        save_pending(pending)

    text = runner.invoke(args=["customers", "show", "10004321"])
    shown = json.loads(runner.invoke(args=["customers", "show", "10004321", "--json"]).stdout)

    assert shown["pending_change"] == {
        "new": NEW,
        "mode": "callback_on_line",
        "status": "calling",
        "started_at": "2026-11-21T10:00:00+00:00",
        "call_sid": "CA" + "c" * 32,
    }
    assert show_fields(text)["pending change"] == (
        f"new {NEW}, mode callback_on_line, status calling, "
        f"started_at 2026-11-21T10:00:00+00:00, call_sid {'CA' + 'c' * 32}"
    )


# --- demo seed ------------------------------------------------------------------------------


def test_seed_demo_is_idempotent_and_has_a_family_line(app: Flask, db_session: Session) -> None:
    rows = seed_demo(db_session, "US")
    counts = row_counts(app)
    again = seed_demo(db_session, "GB")  # the demo numbers are international: region is moot

    assert [(r.name, r.phone, r.account_number, r.email or "") for r in rows] == list(
        DEMO_CUSTOMERS
    )
    assert again == rows
    assert row_counts(app) == {**counts, "audit_events": counts["audit_events"] + 1}
    assert counts["accounts"] == 4 and counts["phone_numbers"] == 3
    last = db_session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert last is not None and last.details["unchanged"] == 4


def test_demo_data_shows_like_imported_data(runner: FlaskCliRunner, db_session: Session) -> None:
    seed_demo(db_session, "US")
    result = runner.invoke(args=["customers", "show", "30001111", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["other_accounts_on_phone"] == ["30002222"]


def test_show_still_shows_the_account_when_redis_is_down(
    runner: FlaskCliRunner, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_account(db_session, phone="+14155550100", account_number="10004321")

    def down(account_id: int) -> None:
        raise StorageUnavailable("redis unavailable")

    monkeypatch.setattr("ivr.customers.cli.pending_change_for", down)
    result = runner.invoke(args=["customers", "show", "10004321"])

    assert result.exit_code == 0, result.output
    assert show_fields(result)["phone"] == "+14155550100"
    assert show_fields(result)["pending change"] == "unknown Redis is unavailable"
    assert "warning: pending change unknown (redis unavailable)" in result.stderr
