"""`ivr customers …` commands: import a customers CSV, show one account, export or erase
one customer's data (ivr.customers.privacy_cli)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from tqdm import tqdm

from ivr.customers.accounts import account_summary, find_account
from ivr.customers.importer import CustomerImportError, import_csv
from ivr.customers.privacy_cli import erase_command, export_command
from ivr.errors import StorageUnavailable
from ivr.numberchange.pending import pending_change_for
from ivr.numberchange.rules import NumberRules
from ivr.storage import db

# What each stage of an import counts, for its progress bar.
_PROGRESS_UNITS = {
    "checking": "row",
    "finding accounts": "account",
    "matching": "lookup",
    "writing": "row",
}


@click.group("customers")
def customers() -> None:
    """Import and inspect customers and their accounts; export or erase a customer's data."""


customers.add_command(export_command)
customers.add_command(erase_command)


@customers.command("import")
@click.argument(
    "csv_file",
    metavar="FILE.csv",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the valid rows and list the invalid ones, instead of importing nothing.",
)
@with_appcontext
def import_command(csv_file: Path, skip_invalid: bool) -> None:
    """Create or update customers and accounts from a CSV file.

    The header must be exactly name,phone,account_number,email (email may be
    empty). Rows are matched by account number; running a file twice changes
    nothing. A phone must be one a caller could change their number to: never
    premium rate, shared cost, UAN, pager or voicemail, and of a country and line
    type that IVR_ALLOWED_COUNTRIES and IVR_ALLOWED_LINE_TYPES allow. The import is
    one transaction: any invalid row stops it and nothing is written, unless
    --skip-invalid is given; an interrupted import wrote nothing, so just run it
    again. On a terminal a progress bar shows on stderr.
    """
    settings = current_app.config["IVR_SETTINGS"]
    try:
        with _progress_bars() as progress:
            result = import_csv(
                db.session(),
                csv_file,
                settings.default_region,
                skip_invalid=skip_invalid,
                rules=NumberRules.from_settings(settings),
                progress=progress,
            )
    except CustomerImportError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(
            f"nothing imported from {csv_file.name}: {len(exc.problems)} problem(s)", err=True
        )
        click.get_current_context().exit(1)
    click.echo(result.summary())
    for problem in result.skipped:
        click.echo(f"skipped {problem}", err=True)
    if result.skipped and result.imported_rows == 0:
        click.get_current_context().exit(1)


@contextmanager
def _progress_bars() -> Iterator[_ProgressBars | None]:
    """Progress bars when stderr is a terminal; None (no output at all) in pipes, CI, tests."""
    if not _stderr_is_terminal():
        yield None
        return
    bars = _ProgressBars()
    try:
        yield bars
    finally:
        bars.close()  # before anything else is printed


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class _ProgressBars:
    """One progress bar on stderr per stage of an import (see ivr.customers.rows.Progress)."""

    def __init__(self) -> None:
        self._stage = ""
        self._bar: tqdm[Any] | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if total == 0:
            return  # e.g. nothing to write: no empty bar
        if self._bar is None or stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(
                desc=stage,
                total=total,
                unit=_PROGRESS_UNITS.get(stage, "it"),
                file=sys.stderr,
                leave=False,  # the summary line says what was done
                dynamic_ncols=True,
            )
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@customers.command("show")
@click.argument("account_number")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@with_appcontext
def show_command(account_number: str, as_json: bool) -> None:
    """Show an account: customer, email, phone on file (E.164), number history and flags."""
    session = db.session()
    account = find_account(session, account_number)
    if account is None:
        click.echo(f"no account {account_number!r}", err=True)
        click.get_current_context().exit(1)
    settings = current_app.config["IVR_SETTINGS"]
    summary = account_summary(
        session,
        account,
        cooling_off_seconds=settings.number_change_cooling_off,
        pending=_pending_change(account.id),
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    others = ", ".join(summary["other_accounts_on_phone"]) or "none"
    history = summary["phone_history"]
    lines = [
        ("account", summary["account_number"]),
        ("name", summary["name"]),
        ("email", summary["email"] or "none"),
        ("phone", summary["phone"]),
        ("created", summary["created_at"]),
        ("other accounts on this phone", others),
        ("flags", _flags_text(summary)),
        ("pending change", _pending_text(summary["pending_change"])),
        ("phone history", f"{len(history)} change(s)" if history else "none"),
    ]
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        click.echo(f"{label + ':':<{width + 1}} {value}")
    for change in history:
        click.echo(
            f"  {_minute_utc(change['changed_at'])}  {change['old']} → {change['new']}"
            f"  ({change['mode']})"
        )


def _flags_text(summary: dict[str, Any]) -> str:
    texts = []
    for flag in summary["flags"]:
        if flag == "number_changed_recently" and summary["number_changed_until"]:
            until = _minute_utc(summary["number_changed_until"])
            texts.append(f"number changed recently (until {until})")
        else:
            texts.append(flag.replace("_", " "))
    return ", ".join(texts) or "none"


def _pending_change(account_id: int) -> dict[str, Any] | None:
    """The pending change from Redis; the account is still shown when Redis is down."""
    try:
        return pending_change_for(account_id)
    except StorageUnavailable as exc:
        click.echo(f"warning: pending change unknown ({exc})", err=True)
        return {"unknown": "Redis is unavailable"}


def _pending_text(pending: dict[str, Any] | None) -> str:
    if not pending:
        return "none"
    return ", ".join(f"{key} {value}" for key, value in pending.items())


def _minute_utc(iso_utc: str) -> str:
    return f"{datetime.fromisoformat(iso_utc):%Y-%m-%d %H:%M} UTC"
